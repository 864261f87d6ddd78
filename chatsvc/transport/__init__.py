"""What chatsvc does with its libraries' internals: python-engineio and aiohttp
(engineio_internals, with polling and slow_consumers), python-socketio's packet
(socketio_packet); a client's garbage counted, not logged (bad_packets)."""
