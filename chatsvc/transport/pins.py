"""The library versions chatsvc's transport was checked against, and the library code it
replaces or relies on, by the sha256 (first 16 hex digits) of its source.

This is the one place pins live. ``tests/transport/test_pins.py`` checks that the installed
versions are these (pyproject.toml pins the same) and that each listed function's source
still hashes to its digest. A mismatch after an upgrade means: re-read the named chatsvc
module against the new source, adapt it, then update the digest here. Never just update it.
"""

from __future__ import annotations

PINNED_VERSIONS = {"python-socketio": "5.18.1", "python-engineio": "4.15.1", "aiohttp": "3.14.5"}

_ENGINE = "chatsvc.transport.engine"
_LEAN = "chatsvc.transport.lean_socket"
_FRAMES = "chatsvc.transport.frames"
_POLLING = "chatsvc.transport.polling"
_HTTP = "chatsvc.transport.http_state"
_SIO = "chatsvc.transport.sioserver"
_EVENTS = "chatsvc.transport.events"
_BROADCAST = "chatsvc.transport.broadcast"
_PACKET = "chatsvc.transport.socketio_packet"
_FRAMELESS = "chatsvc.transport.frameless"

#: ``"module:qualified.name"`` -> (digest, the chatsvc module to re-read if it changed).
PINNED_SOURCES: dict[str, tuple[str, str]] = {
    # python-engineio: the lean socket replaces its handler, queue, writer and ping task.
    "engineio.async_socket:AsyncSocket._websocket_handler": ("27f120df4d717a24", _LEAN),
    "engineio.async_socket:AsyncSocket.poll": ("826f58a9f3606db2", _LEAN),
    "engineio.async_socket:AsyncSocket.schedule_ping": ("fe316639159cd70d", _LEAN),
    "engineio.async_socket:AsyncSocket._send_ping": ("67db82a704ea49d0", _LEAN),
    "engineio.async_socket:AsyncSocket.send": ("0437276ccba7ab09", _FRAMES),
    "engineio.base_socket:BaseSocket.__init__": ("8532b631a4dc815f", _LEAN),
    "engineio.async_server:AsyncServer.create_queue": ("5ff5673a0c017681", _LEAN),
    "engineio.async_server:AsyncServer.start_background_task": ("c873562535a68297", _LEAN),
    "engineio.async_drivers.aiohttp:WebSocket.__call__": ("71f9a94476d737c3", _ENGINE),
    # lean_websocket_handler runs a lean websocket's life after these have returned, doing
    # what they did after the handler (forget a closed socket, EngineIOError -> disconnect);
    # RecoveringServer.request_handler skips python-socketio's handle_request, which only
    # delegates to python-engineio's.
    "engineio.async_server:AsyncServer._handle_connect": ("5bd7edc1d1ae115a", _LEAN),
    "engineio.async_socket:AsyncSocket.handle_get_request": ("05eaae9f0a60d9be", _LEAN),
    "engineio.async_socket:AsyncSocket._upgrade_websocket": ("820b83efe96adb98", _LEAN),
    "socketio.async_server:AsyncServer.handle_request": ("fdf4d1481b6ae726", _SIO),
    "engineio.async_drivers.aiohttp:WebSocket.wait": ("992c370917677d39", _ENGINE),
    # The lean writer sends on and closes aiohttp's response itself, as these forward to it.
    "engineio.async_drivers.aiohttp:WebSocket.send": ("9acf5561b663a59f", _LEAN),
    "engineio.async_drivers.aiohttp:WebSocket.close": ("47a4e4b935d2b019", _LEAN),
    # FrameOnce.send replaces it; python-socketio's _send_packet is its caller.
    "engineio.async_server:AsyncServer.send": ("ff1fdb18f1c30bb3", _FRAMES),
    "engineio.async_server:AsyncServer.send_packet": ("c54317440865030d", _FRAMES),
    # FrameOnce.send frames a text MESSAGE as "4" + data, as these encode it.
    "engineio.packet:Packet.__init__": ("26559aaf4a6f4ddd", _FRAMES),
    "engineio.packet:Packet.encode": ("8f3d5d869711cbb8", _FRAMES),
    "socketio.async_server:AsyncServer._send_packet": ("a00022b42c1c29e9", _SIO),
    # receive_packet does for a Socket.IO MESSAGE what these do with it.
    "engineio.async_socket:AsyncSocket.receive": ("a91ae36ec2fb5340", _LEAN),
    "engineio.async_server:AsyncServer._trigger_event": ("4a09b6e47eb66532", _LEAN),
    "engineio.packet:Packet.decode": ("18e27ff7fd56addd", _LEAN),
    # accept_polling_batches sets the class attribute these read; BoundedPolling replaces
    # handle_request's POST branch (and the hang of its disconnect -> close(wait=True)).
    "engineio.payload:Payload.decode": ("9c7975664d815d3d", _POLLING),
    "engineio.async_socket:AsyncSocket.handle_post_request": ("82dca119a261a959", _POLLING),
    "engineio.async_server:AsyncServer.handle_request": ("1a8c878e35166cfe", _POLLING),
    "engineio.async_server:AsyncServer._make_response": ("5f883ef57e34f34c", _POLLING),
    "engineio.async_server:AsyncServer.disconnect": ("8bb6448caae41ca6", _POLLING),
    "engineio.async_socket:AsyncSocket.close": ("faa2e93902543244", _POLLING),
    # python-socketio: RecoveringServer replaces _handle_eio_message (no binary packets,
    # garbage counted), reading headers as the decoder does (packet_head); wraps
    # _handle_connect (the sid pre_connect takes), _handle_event (declared events) and
    # _trigger_event (lifecycle marks); the event workers sit behind _handle_eio_message
    # (python-engineio's "message" handler) and are cancelled from _handle_eio_disconnect.
    "socketio.async_server:AsyncServer._handle_eio_disconnect": ("9344593148b66fd9", _EVENTS),
    "socketio.base_server:BaseServer.__init__": ("6b998e091b34a563", _EVENTS),
    "socketio.async_server:AsyncServer._handle_eio_message": ("bef50fc0e1635921", _SIO),
    "socketio.async_server:AsyncServer._handle_connect": ("c97c480cf777de36", _SIO),
    "socketio.async_server:AsyncServer._handle_event": ("65178105ef8b593d", _SIO),
    "socketio.async_server:AsyncServer._trigger_event": ("01ba90cfa09ba43e", _SIO),
    "socketio.async_server:AsyncServer._handle_ack": ("b7521c6c30972551", _SIO),
    # RecoveringServer._dispatch does in one call what these do for a namespace handler.
    "socketio.async_server:AsyncServer._handle_event_internal": ("472e8b723a12d507", _SIO),
    "socketio.base_server:BaseServer._get_event_handler": ("e18d9a6570aaaaf4", _SIO),
    "socketio.base_server:BaseServer._get_namespace_handler": ("3672467a1c13f704", _SIO),
    "socketio.base_manager:BaseManager.pre_connect": ("bfdba4c0c8f1bd8a", _SIO),
    "socketio.packet:Packet.decode": ("61ad7904b539f472", _SIO),
    # DirectEmitMixin.emit rewrites AsyncManager.emit (and, off, sends the way it does).
    "socketio.async_manager:AsyncManager.emit": ("01ccd5b82b4f955e", _BROADCAST),
    "socketio.async_server:AsyncServer._send_eio_packet": ("64cf72a2ab7d75b1", _BROADCAST),
    # LeanRoom: DirectEmitMixin.basic_enter_room rewrites this; python-socketio reads a
    # room's members through _fwdm and the inverse of the namespace's own room only.
    # DirectEmitMixin._participants is get_participants' body, returning the pairs instead
    # of yielding them.
    "socketio.base_manager:BaseManager.basic_enter_room": ("3f509586d2d7f47e", _BROADCAST),
    "socketio.base_manager:BaseManager.get_participants": ("7d78ad681c95de5b", _BROADCAST),
    "socketio.base_manager:BaseManager.sid_from_eio_sid": ("15467098a36bcd71", _BROADCAST),
    # SocketIOPacket overrides data_is_binary, which __init__ calls.
    "socketio.packet:Packet.__init__": ("5fe2fa797e082c1d", _PACKET),
    "socketio.packet:Packet.data_is_binary": ("464dded7ae952a64", _PACKET),
    # PacketJSON: what encode passes to dumps, what decode passes to engineio.json.loads.
    "socketio.packet:Packet.encode": ("513c45be75181da2", _PACKET),
    "engineio.json:loads": ("8a4490ed912f80c2", _PACKET),
    # PacketJSON.dumps calls the C encoder as the one-shot branch of this does (stdlib).
    "json.encoder:JSONEncoder.iterencode": ("0a9b6ccb5629e721", _PACKET),
    "engineio.json:_safe_int": ("9cba49b1e53e856b", _PACKET),
    # aiohttp: a route's handler marked a coroutine function is kept as it is (not wrapped
    # in a coroutine of aiohttp's), and what it returns is awaited (coroutine_handler: the
    # drain gate and EngineIOServer.handle_request hold no frame under a websocket).
    "aiohttp.web_urldispatcher:AbstractRoute.__init__": ("60c2aaab83a3757a", _FRAMELESS),
    "aiohttp.web_app:Application._handle": ("1294b2b208b126cb", _FRAMELESS),
    # aiohttp: frames() writes byte for byte what send_frame would (unmasked, uncompressed).
    "aiohttp._websocket.writer:WebSocketWriter.send_frame": ("7ab812cc70561f8e", _FRAMES),
    # aiohttp code reading what release_http_state drops (the parser of an accepted
    # upgrade, its request queue; start() holding the parsed request for the connection).
    "aiohttp.web_protocol:RequestHandler._resume_reading_if_drained": ("27f2a6fbbb3a790e", _HTTP),
    "aiohttp.web_protocol:RequestHandler.data_received": ("1ee57ebe052e6c80", _HTTP),
    "aiohttp.web_protocol:RequestHandler.start": ("2e565fd40c8e04fb", _HTTP),
    "aiohttp.web_protocol:RequestHandler.finish_response": ("b7eb53db8f4b30ca", _HTTP),
    "aiohttp.web_protocol:RequestHandler.connection_lost": ("df2fe6e95fd04c7c", _HTTP),
    # release_websocket_state shares the writer's mask generator, which only these read.
    "aiohttp._websocket.writer:WebSocketWriter.__init__": ("9a91e56ed2c2c11c", _HTTP),
}
