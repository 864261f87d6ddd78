"""The chat domain: rooms, messages, presence and the Socket.IO namespace."""
