"""Everything chatsvc does with python-engineio's and aiohttp's internals, in one place.

Pinned: python-engineio 4.15.1, aiohttp 3.14.5 (``PINNED``; pyproject.toml pins the same).
``tests/transport/test_engineio_internals.py`` is the contract: it fails loudly when an
upgrade changes anything listed here. Re-read those sources before bumping either pin.

**Frame once per broadcast.** Stock python-engineio puts each outgoing packet on the
socket's ``asyncio.Queue``; a writer task per websocket wakes up (on CPython 3.11 through
a new task per wait: ``asyncio.wait_for`` in ``AsyncSocket.poll``), encodes the packet and
has aiohttp build the websocket frame. In a room of 1,000 that is 1,000 wake-ups, encodes
and frames per message. :meth:`EngineIOServer.write_frame` instead writes bytes framed once
per broadcast (:func:`frames`) straight to the socket's transport, but only when that
cannot reorder or bypass anything; otherwise the caller falls back to the queue:

- the socket is an upgraded websocket, not upgrading, not closing or closed, and not past
  its ping timeout (``AsyncSocket.send`` would close it);
- its queue is empty *and* its writer task is parked in ``queue.get()`` (a getter future is
  waiting): nothing it took from the queue is still on its way to the transport;
- aiohttp's writer is not closing and negotiated no compression (a compressed frame needs
  the writer's compressor), and the transport is open with less than
  ``WRITE_HIGH_WATER`` bytes buffered (back-pressure: the queue path waits for drain).

Internals used, exactly:

- python-engineio: ``AsyncServer._async["websocket"]`` (the driver class, replaced per
  server instance by a subclass of ``engineio.async_drivers.aiohttp.WebSocket`` that
  records ``WebSocket._sock``, the ``aiohttp.web.WebSocketResponse``, by session id);
  the handler it is constructed with being the bound ``AsyncSocket._websocket_handler``;
  ``AsyncServer.sockets``, ``AsyncSocket.queue`` / ``closed`` / ``closing`` /
  ``upgraded`` / ``upgrading`` / ``last_ping``; the websocket writer task being the only
  consumer of ``AsyncSocket.queue`` once upgraded. python-socketio builds an
  :class:`EngineIOServer` subclass through ``socketio.AsyncServer._engineio_server_class``,
  which ``chatsvc.chat.sioserver.RecoveringServer`` overrides (its ``_EngineServer``).
- asyncio: ``asyncio.Queue._getters`` (the futures of waiting ``get()`` calls).
- aiohttp: ``WebSocketResponse._writer``; ``WebSocketWriter.transport`` / ``_closing`` /
  ``compress``; the unmasked frame layout ``WebSocketWriter._write_websocket_frame``
  produces (FIN, opcode, 7/16/64-bit length, payload).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import engineio
from aiohttp import web
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

PINNED = {"python-engineio": "4.15.1", "aiohttp": "3.14.5"}

#: Bytes a transport may hold unsent before a broadcast takes the queue path instead, whose
#: writer waits for the transport to drain (aiohttp's own writer limit, DEFAULT_CHUNK_SIZE).
WRITE_HIGH_WATER = 64 * 1024

_TEXT, _BINARY = 0x1, 0x2
_FIN = 0x80


def frame(payload: str | bytes) -> bytes:
    """One unmasked, uncompressed, final websocket frame, byte for byte what aiohttp's
    ``send_str`` (str) or ``send_bytes`` (bytes) writes for ``payload`` on a server."""
    if isinstance(payload, str):
        data, opcode = payload.encode("utf-8"), _TEXT
    else:
        data, opcode = bytes(payload), _BINARY
    n = len(data)
    if n < 126:
        header = struct.pack("!BB", _FIN | opcode, n)
    elif n < 65536:
        header = struct.pack("!BBH", _FIN | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", _FIN | opcode, 127, n)
    return header + data


def frames(packets: Sequence[eio_packet.Packet]) -> bytes:
    """The websocket frames python-engineio's writer would send for ``packets``, in order."""
    return b"".join(frame(pkt.encode()) for pkt in packets)


class _TrackedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """python-engineio's aiohttp websocket driver, recording each session's response."""

    def __init__(self, handler: Callable[[Any], Awaitable[None]], server: EngineIOServer) -> None:
        sid: str = handler.__self__.sid  # type: ignore[attr-defined]  # AsyncSocket._websocket_handler
        responses = server.websockets

        async def tracked(ws: eio_aiohttp.WebSocket) -> None:
            response = ws._sock
            responses[sid] = response
            try:
                await handler(ws)
            finally:
                if responses.get(sid) is response:
                    del responses[sid]

        super().__init__(tracked, server)


class EngineIOServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server, able to write a pre-framed broadcast to idle websockets."""

    _async: dict[str, Any]  # python-engineio's async driver table (set in its __init__)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The aiohttp response of every session on (or upgrading to) websocket.
        self.websockets: dict[str, web.WebSocketResponse] = {}
        # A copy: the driver's module-level dict is shared by every server in the process.
        self._async = {**self._async, "websocket": _TrackedWebSocket}

    def write_frame(self, eio_sid: str, data: bytes, now: float) -> bool:
        """Write ``data`` (from :func:`frames`) to ``eio_sid``'s transport if that keeps the
        socket's order and flow control (module docstring); False: queue it instead.

        ``now`` is ``time.time()``, read once per broadcast.
        """
        socket = self.sockets.get(eio_sid)
        if socket is None or socket.closed or socket.closing or socket.upgrading or not socket.upgraded:
            return False
        last_ping = socket.last_ping
        if last_ping and now - last_ping > self.ping_timeout:
            return False  # AsyncSocket.send closes it: let it
        queue = socket.queue
        if queue.qsize():
            return False
        getters = queue._getters
        if not getters or getters[-1].done():
            return False  # the writer holds packets it took, or is not parked yet
        response = self.websockets.get(eio_sid)
        writer = response._writer if response is not None else None
        if writer is None or writer._closing or writer.compress:
            return False
        transport = writer.transport
        if transport.is_closing() or transport.get_write_buffer_size() >= WRITE_HIGH_WATER:
            return False
        try:
            transport.write(data)
        except Exception:  # a transport failing here fails the queue path too, which handles it
            return False
        return True


def clock() -> float:
    """The ``now`` :meth:`EngineIOServer.write_frame` wants (engine.io's ping clock)."""
    return time.time()
