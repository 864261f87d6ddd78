"""chatsvc's Engine.IO server: python-engineio's, with every transport mechanism mixed in
(pinned versions and hashed sources: ``chatsvc.transport.pins``; contract tests in
``tests/transport``).

- bounded long-polling POSTs (:mod:`chatsvc.transport.polling`);
- slow consumers ended (:mod:`chatsvc.transport.slow_consumers`);
- frame once per broadcast (:mod:`chatsvc.transport.frames`, fast path ``frame-once``);
- lean sockets (:mod:`chatsvc.transport.lean_socket` and :mod:`chatsvc.transport.timers`,
  fast paths ``lean-socket`` and ``receive-packet``), the HTTP state an upgraded
  connection no longer needs (:mod:`chatsvc.transport.http_state`), and a websocket's life
  run without python-engineio's handshake frames under it, in one coroutine frame
  (:meth:`EngineIOServer.handle_request`, :func:`lean_websocket_handler`);
- a client's garbage counted, not logged (:mod:`chatsvc.transport.bad_packets`).

Internals used here: ``AsyncServer._async["websocket"]`` (the driver class, replaced per
server instance by a subclass of ``engineio.async_drivers.aiohttp.WebSocket`` that records
``WebSocket._sock``, the ``aiohttp.web.WebSocketResponse``, by session id); the handler it
is constructed with being the bound ``AsyncSocket._websocket_handler``; what
``_handle_connect``, ``AsyncSocket.handle_get_request`` and ``_upgrade_websocket`` do after
the driver returns (hash-pinned: forget a closed socket, nothing else); the stock handler
decoding what the driver's ``wait`` returns outside its ``try``. python-socketio builds an
:class:`EngineIOServer` subclass through ``socketio.AsyncServer._engineio_server_class``
(``chatsvc.transport.sioserver``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

from chatsvc.transport.bad_packets import BadPackets, LibraryLogFilter, decode_or_report
from chatsvc.transport.fast_paths import FastPaths
from chatsvc.transport.frameless import coroutine_handler
from chatsvc.transport.frames import FrameOnce
from chatsvc.transport.http_state import release_http_state, release_websocket_state, slim_environ
from chatsvc.transport.lean_socket import LeanSockets, lean_websocket_handler
from chatsvc.transport.polling import BoundedPolling
from chatsvc.transport.slow_consumers import SlowConsumers


class _TrackedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """python-engineio's aiohttp websocket driver (``WebSocket.__call__``), recording each
    session's response, negotiating compression only if the server allows it, and running
    :func:`lean_websocket_handler` when the server is lean."""

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        server: EngineIOServer = self.server
        handler = self.handler
        sock = handler.__self__  # the AsyncSocket of AsyncSocket._websocket_handler
        request = environ["aiohttp.request"]
        response = self._sock = web.WebSocketResponse(
            max_msg_size=server.max_http_buffer_size, compress=server.websocket_compression
        )
        await response.prepare(request)
        if server.lean:
            release_http_state(request)
            release_websocket_state(response)
            slim_environ(environ)  # the upgrade is done: nothing reads its headers again
        self.environ = environ
        responses = server.websockets
        responses[sock.sid] = response
        if server.lean:
            # The socket's life is run by lean_websocket_handler, once python-engineio's
            # handshake frames below this have returned (EngineIOServer.handle_request).
            server.upgraded[id(response)] = (sock, self)
            return response
        try:
            await handler(self)
        finally:
            if responses.get(sock.sid) is response:
                del responses[sock.sid]
        return response

    async def wait(self) -> Any:
        """The next message, as the driver's ``wait``; for python-engineio's stock handler
        (not lean), skipping (and counting) what is no Engine.IO packet: it decodes outside
        its ``try``, so one undecodable frame ended the connection with a traceback. The
        lean handler checks each packet itself (:func:`receive_packet`)."""
        data = await super().wait()
        if self.server.lean:
            return data
        sock = self.handler.__self__
        while data is not None:
            pkt = decode_or_report(sock, data)
            if pkt is not None and pkt.packet_type not in _NEVER_FROM_CLIENTS:
                return data
            if pkt is not None:  # ignored by the stock handler: counted here, as the lean one does
                sock.server.bad_packets.report(sock, "eio_unexpected", "packet type a client may not send")
            data = await super().wait()
        return data


#: Engine.IO packet types a client never sends (the lean reader counts them in ``receive``'s
#: UnknownPacketError; PING is a client's upgrade probe).
_NEVER_FROM_CLIENTS = (eio_packet.OPEN, eio_packet.NOOP)


class EngineIOServer(BoundedPolling, SlowConsumers, LeanSockets, FrameOnce):
    """python-engineio's server with chatsvc's transport mechanisms (module docstring)."""

    _async: dict[str, Any]  # python-engineio's async driver table (set in its __init__)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Accept permessage-deflate when a client offers it (``CHATSVC_WS_COMPRESSION``,
        #: off in chatsvc). Browsers offer it on every websocket; for chat it is the wrong
        #: trade: frames are a few hundred bytes, each compressed socket keeps its own zlib
        #: state (about 100 KiB), and every delivery is compressed once per recipient (a
        #: tenth of the CPU in a busy room, bench/README.md). Node's socket.io declines it by
        #: default; RFC 7692 lets a server decline, and clients then send uncompressed frames.
        self.websocket_compression = True
        # A copy: the driver's module-level dict is shared by every server in the process.
        self._async = {**self._async, "websocket": _TrackedWebSocket}
        #: Where a client's undecodable or unexpected packets are counted and logged once.
        self.bad_packets = BadPackets()
        _install_log_filter(self.logger, self.bad_packets)
        #: Lean websockets accepted by the driver whose life :meth:`handle_request` runs,
        #: by ``id()`` of their response (an entry lives only while the handshake returns).
        self.upgraded: dict[int, tuple[Any, _TrackedWebSocket]] = {}

    @coroutine_handler
    def handle_request(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """python-engineio's ``handle_request``; on a lean server, for a websocket the lean
        driver accepted, its whole life is then run by :func:`lean_websocket_handler`, not at
        the bottom of python-engineio's handshake.

        Upstream the websocket handler runs inside ``handle_request`` -> ``_handle_connect``
        (or the upgrade branch) -> ``AsyncSocket.handle_get_request`` ->
        ``_upgrade_websocket`` -> the driver's ``__call__``: six coroutine frames (about
        2 KiB) held by every idle connection for its life. A plain function returning the
        coroutine that does the work (``chatsvc.transport.frameless``): no frame of its own
        either."""
        handshake = super().handle_request(*args, **kwargs)
        if not self.lean:
            return handshake
        return lean_websocket_handler(self, handshake)

    def configure(
        self,
        *,
        fast_paths: FastPaths,
        compression: bool,
        queued_packets_max: int,
        observe_bad_packet: Callable[[str], None],
    ) -> None:
        """chatsvc's settings of this server, once, before it serves."""
        self.frame_once = fast_paths.frame_once
        self.lean = fast_paths.lean_socket
        self.fast_receive = fast_paths.receive_packet
        # Declined in the websocket driver (_TrackedWebSocket), not by a middleware hiding
        # the offer: that cloned every upgrade request, and the clone's headers lived as
        # long as the socket.
        self.websocket_compression = compression
        self.queued_packets_max = queued_packets_max
        self.bad_packets.observe = observe_bad_packet


def _install_log_filter(logger: logging.Logger, bad_packets: BadPackets) -> None:
    """Put a :class:`LibraryLogFilter` reporting to ``bad_packets`` on ``logger`` (python-
    engineio's, shared by every server in the process: the newest server's replaces any
    earlier one, so tests building many servers do not stack filters)."""
    for old in [f for f in logger.filters if isinstance(f, LibraryLogFilter)]:
        logger.removeFilter(old)
    logger.addFilter(LibraryLogFilter(bad_packets))
