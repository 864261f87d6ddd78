"""What chatsvc does with its libraries' internals: python-engineio and aiohttp
(engineio_internals), python-socketio's packet (socketio_packet)."""
