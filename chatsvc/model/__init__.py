"""The domain model: message ids and the records chat, admin and the stores share.

The lowest layer: it imports nothing of chatsvc but itself (see docs/architecture.md).
"""
