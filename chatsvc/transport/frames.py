"""Frame once per broadcast (fast path ``frame-once``; pinned: python-engineio 4.15.1,
aiohttp 3.14.5, hash-pinned in ``chatsvc.transport.pins``).

Stock python-engineio puts each outgoing packet on the socket's ``asyncio.Queue``; a writer
task per websocket wakes up (on CPython 3.11 through a new task per wait: ``asyncio.wait_for``
in ``AsyncSocket.poll``), encodes the packet and has aiohttp build the websocket frame
(``WebSocketWriter.send_frame``). In a room of 1,000 that is 1,000 wake-ups, encodes and
frames per message. :meth:`FrameOnce.write_frames` instead writes bytes framed once per
broadcast (:func:`frames`) straight to each socket's transport, but only when that cannot
reorder or bypass anything; otherwise the caller falls back to the queue:

- the socket is an upgraded websocket, not upgrading, not closing or closed, and not past
  its ping timeout (``AsyncSocket.send`` would close it);
- its queue is empty *and* its writer is parked (:meth:`LeanQueue.parked`: the on-demand
  writer is not running; python-engineio's writer task waits in ``queue.get()``): nothing
  taken from the queue is still on its way to the transport;
- aiohttp's writer is not closing and negotiated no compression (a compressed frame needs
  the writer's compressor), and the transport is open with less than
  ``WRITE_HIGH_WATER`` bytes buffered (back-pressure: the queue path waits for drain).

What python-socketio sends a single socket (acks above all) takes the same path:
:meth:`FrameOnce.send` writes it framed at once when ``write_frame`` allows.

Internals used: ``AsyncServer.sockets``, ``AsyncSocket.queue`` / ``closed`` / ``closing`` /
``upgraded`` / ``upgrading`` / ``last_ping``; ``asyncio.Queue._getters`` (the futures of
waiting ``get()`` calls, when not lean); aiohttp's ``WebSocketResponse._writer``,
``WebSocketWriter.transport`` / ``_closing`` / ``compress`` and the unmasked frame layout
``WebSocketWriter.send_frame`` produces (FIN, opcode, 7/16/64-bit length, payload).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import Any

import engineio
from aiohttp import web
from engineio import packet as eio_packet

from chatsvc.transport.lean_socket import LeanQueue

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


def clock() -> float:
    """The ``now`` :meth:`FrameOnce.write_frames` wants (engine.io's ping clock)."""
    return time.time()


class FrameOnce(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server, able to write a pre-framed broadcast to idle websockets."""

    #: Off (``FastPaths.frame_once``): every packet takes python-engineio's queue and writer.
    frame_once = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The aiohttp response of every session on (or upgrading to) websocket.
        self.websockets: dict[str, web.WebSocketResponse] = {}

    async def send(self, sid: str, data: Any) -> None:
        """``AsyncServer.send`` (what python-socketio sends one socket: acks, CONNECT replies,
        replays): framed and written at once when :meth:`write_frame` may, as a broadcast
        is; otherwise queued as python-engineio does. No writer task per ack.

        A text MESSAGE encodes as ``"4" + data`` (``Packet.encode``, pinned): framed from
        that, the ``Packet`` is built only when the frame cannot be written."""
        if self.frame_once:
            if type(data) is str:
                encoded = "4" + data
            else:
                encoded = eio_packet.Packet(eio_packet.MESSAGE, data=data).encode()
            if self.write_frame(sid, frame(encoded), clock()):
                return
        await self.send_packet(sid, eio_packet.Packet(eio_packet.MESSAGE, data=data))

    def write_frame(self, eio_sid: str, data: bytes, now: float) -> bool:
        """Write ``data`` (from :func:`frames`) to ``eio_sid``'s transport if that keeps the
        socket's order and flow control (module docstring); False: queue it instead.

        ``now`` is ``time.time()``, read once per broadcast.
        """
        return not self.write_frames((eio_sid,), data, now)

    def write_frames(self, eio_sids: Sequence[str], data: bytes, now: float) -> list[str]:
        """:meth:`write_frame` for each of ``eio_sids`` (one broadcast); returns the sids
        it did not write to, in order, for the caller to queue ``data``'s packets to.

        One loop with the lookups hoisted: in a room of 100 the per-recipient checks were
        a sixth of the broadcast's CPU besides the writes themselves.
        """
        if not self.frame_once:
            return list(eio_sids)  # python-engineio's queue and writer, framed per recipient
        sockets, websockets, ping_timeout = self.sockets, self.websockets, self.ping_timeout
        left: list[str] = []
        for eio_sid in eio_sids:
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed or socket.closing or socket.upgrading or not socket.upgraded:
                left.append(eio_sid)
                continue
            last_ping = socket.last_ping
            if last_ping and now - last_ping > ping_timeout:
                left.append(eio_sid)  # AsyncSocket.send closes it: let it
                continue
            queue = socket.queue
            if isinstance(queue, LeanQueue):
                if queue._items or not queue.parked():
                    left.append(eio_sid)  # the writer holds packets it took, or is not parked yet
                    continue
            elif queue.qsize() or not queue._getters or queue._getters[-1].done():
                left.append(eio_sid)
                continue
            response = websockets.get(eio_sid)
            writer = response._writer if response is not None else None
            if writer is None or writer._closing or writer.compress:
                left.append(eio_sid)
                continue
            transport = writer.transport
            if transport.is_closing() or transport.get_write_buffer_size() >= WRITE_HIGH_WATER:
                left.append(eio_sid)
                continue
            try:
                transport.write(data)
            except Exception:  # a transport failing here fails the queue path too, which handles it
                left.append(eio_sid)
        return left
