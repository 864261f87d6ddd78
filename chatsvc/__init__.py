"""chatsvc: the real-time chat backend of ST00CK."""

__version__ = "0.1.0"
