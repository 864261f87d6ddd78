"""Engine.IO transport details chatsvc relies on (see engineio_internals)."""
