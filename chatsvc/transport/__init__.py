"""Everything chatsvc does with python-socketio's, python-engineio's and aiohttp's internals,
and nothing else: the pins (``pins``), the Engine.IO server and its mechanisms (``engine``:
``frames``, ``lean_socket``, ``timers``, ``http_state``, ``polling``, ``slow_consumers``,
``bad_packets``), the Socket.IO server (``sioserver``), room broadcasts (``broadcast``), the
packet serializer (``socketio_packet``) and the fast-path switches (``fast_paths``)."""
