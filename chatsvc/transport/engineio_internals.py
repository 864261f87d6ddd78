"""Everything chatsvc does with python-engineio's and aiohttp's internals, in one place.

Pinned: python-engineio 4.15.1, aiohttp 3.14.5 (``PINNED``; pyproject.toml pins the same).
``tests/transport/test_engineio_internals.py`` is the contract: it fails loudly when an
upgrade changes anything listed here. Re-read those sources before bumping either pin.

**Frame once per broadcast.** Stock python-engineio puts each outgoing packet on the
socket's ``asyncio.Queue``; a writer task per websocket wakes up (on CPython 3.11 through
a new task per wait: ``asyncio.wait_for`` in ``AsyncSocket.poll``), encodes the packet and
has aiohttp build the websocket frame. In a room of 1,000 that is 1,000 wake-ups, encodes
and frames per message. :meth:`EngineIOServer.write_frames` instead writes bytes framed once
per broadcast (:func:`frames`) straight to each socket's transport, but only when that
cannot reorder or bypass anything; otherwise the caller falls back to the queue:

- the socket is an upgraded websocket, not upgrading, not closing or closed, and not past
  its ping timeout (``AsyncSocket.send`` would close it);
- its queue is empty *and* its writer is parked (:meth:`LeanQueue.parked`: the on-demand
  writer is not running; python-engineio's writer task waits in ``queue.get()``): nothing
  taken from the queue is still on its way to the transport;
- aiohttp's writer is not closing and negotiated no compression (a compressed frame needs
  the writer's compressor), and the transport is open with less than
  ``WRITE_HIGH_WATER`` bytes buffered (back-pressure: the queue path waits for drain).

What python-socketio sends a single socket (acks above all) takes the same path:
:meth:`EngineIOServer.send` writes it framed at once when ``write_frame`` allows, so an
ack costs no queue round trip, writer task or aiohttp frame builder.

**A client's garbage** (undecodable packets, types a client may not send) is counted
(:class:`~chatsvc.transport.bad_packets.BadPackets`) and dropped before it reaches
python-engineio's ``logger.exception``. **Long-polling POSTs** are answered bounded and at
once (:mod:`chatsvc.transport.polling`; python-engineio's hung forever on an oversize body),
and a socket whose client takes nothing has a bounded queue
(:mod:`chatsvc.transport.slow_consumers`).

**Received packets.** :func:`receive_packet` hands a text MESSAGE holding a Socket.IO
packet straight to python-socketio's handler, as ``AsyncSocket.receive`` and
``AsyncServer._trigger_event`` would when handlers run inline, without the ``Packet``, the
INFO log call and the two closures per message; anything else goes through ``receive``.

**Lean per socket** (:attr:`EngineIOServer.lean`). An idle websocket in stock
python-engineio holds, besides aiohttp's own tasks, a writer task, a task per wait inside it
(``wait_for(queue.get())``), a reader task per received packet (``websocket_wait``), a
ping task sleeping ``ping_interval``, and an ``asyncio.Queue`` with four deques. Here it holds
a :class:`LeanQueue` (nothing allocated while empty), a timer for the next ping, and
:func:`lean_websocket_handler` (the reader in aiohttp's task, the writer a task only while
packets are queued). :func:`release_http_state` drops aiohttp's HTTP parser and raw header
bytes of the upgraded request. python-engineio's code replaced this way is pinned by the
sha256 of its source in the contract test; so is the aiohttp code around what is dropped.

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
- python-engineio, lean sockets: ``BaseSocket.__init__`` getting its queue from
  ``server.create_queue()``; ``AsyncSocket.schedule_ping`` starting
  ``server.start_background_task(self._send_ping)``; ``AsyncSocket.receive`` / ``close``
  (for :func:`receive_packet`: ``AsyncServer.handlers["message"]``, ``async_handlers``,
  ``logger``, and what ``_trigger_event`` does with them),
  ``AsyncSocket.connected``, ``server.reason``; ``WebSocket.handler`` / ``wait`` / ``send``
  / ``close`` of the aiohttp driver, whose ``__call__`` :class:`_TrackedWebSocket` replaces.
- python-engineio, polling: ``Payload.max_decode_packets`` (:func:`accept_polling_batches`),
  read by ``Payload.decode`` from ``AsyncSocket.handle_post_request``.
- python-engineio, POSTs and slow consumers: see :mod:`chatsvc.transport.polling` and
  :mod:`chatsvc.transport.slow_consumers` (mixins of :class:`EngineIOServer`).
- python-engineio, bad packets (:mod:`chatsvc.transport.bad_packets`): the messages its
  ``logger.exception`` calls use for a client's bytes; the stock ``_websocket_handler`` decoding
  what the driver's ``wait`` returns outside its ``try`` (:meth:`_TrackedWebSocket.wait`).
- asyncio: ``asyncio.Queue._getters`` (the futures of waiting ``get()`` calls, when not lean).
- aiohttp, lean sockets: ``RequestHandler._parser`` / ``_payload_parser`` / ``_messages`` (via
  ``request.protocol``), ``BaseRequest._message`` (a ``RawRequestMessage``).
- aiohttp: ``WebSocketResponse._writer``; ``WebSocketWriter.transport`` / ``_closing`` /
  ``compress``; the unmasked frame layout ``WebSocketWriter._write_websocket_frame``
  produces (FIN, opcode, 7/16/64-bit length, payload).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import engineio
from aiohttp import web
from engineio import async_socket
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio.async_drivers import aiohttp as eio_aiohttp

from chatsvc.transport.bad_packets import BadPackets, LibraryLogFilter, decode_or_report
from chatsvc.transport.polling import BoundedPolling
from chatsvc.transport.slow_consumers import SlowConsumers

PINNED = {"python-engineio": "4.15.1", "aiohttp": "3.14.5"}

_log = logging.getLogger(__name__)

#: Bytes a transport may hold unsent before a broadcast takes the queue path instead, whose
#: writer waits for the transport to drain (aiohttp's own writer limit, DEFAULT_CHUNK_SIZE).
WRITE_HIGH_WATER = 64 * 1024

_TEXT, _BINARY = 0x1, 0x2
_FIN = 0x80


#: Packets a long-polling POST may carry. python-engineio refuses more than 16
#: (``Payload.max_decode_packets``) with a ValueError that drops them all unanswered, while
#: socket.io-client batches everything queued since its last POST, bounded only by the
#: handshake's ``maxPayload`` bytes. That byte bound (``CHATSVC_MAX_HTTP_BUFFER_BYTES``) and
#: the per-connection rate limit are what bound a POST's work; this only stops absurd counts.
POLLING_PACKETS_MAX = 512


def accept_polling_batches(limit: int = POLLING_PACKETS_MAX) -> None:
    """Let a polling POST carry up to ``limit`` packets. Process-wide (python-engineio reads a
    class attribute of ``engineio.payload.Payload``), so the app factory calls it once."""
    eio_payload.Payload.max_decode_packets = max(limit, 16)


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


class LeanQueue:
    """An Engine.IO socket's send queue: ``asyncio.Queue``'s unbounded FIFO, ``task_done``
    and ``join``, without its four deques (three, and the ``Event``'s, about 3 KiB per idle
    socket). Nothing is allocated while it is empty and nobody joins it.

    ``get()`` returns a future, not a coroutine, so python-engineio's long-poll
    ``asyncio.wait_for(queue.get(), ...)`` wraps no task around it. A put hands the item
    straight to the oldest waiting getter; a getter that timed out or was cancelled is
    skipped, so nothing put is ever lost.
    """

    __slots__ = ("_finished", "_getters", "_items", "_limit", "_overflow", "_unfinished", "_wake", "_writing")

    maxsize = 0

    def __init__(self, limit: int = 0, overflow: Callable[[LeanQueue], None] | None = None) -> None:
        #: More than this many items waiting (0: no bound) calls ``overflow(self)``, once.
        self._limit = limit
        self._overflow = overflow
        self._items: deque[Any] | None = None
        self._getters: list[asyncio.Future[Any]] | None = None
        self._unfinished = 0
        self._finished: asyncio.Event | None = None
        #: Set by :meth:`attach`: called when an item arrives and no writer is running.
        self._wake: Callable[[], None] | None = None
        self._writing = False

    def qsize(self) -> int:
        items = self._items
        return len(items) if items else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return False

    def parked(self) -> bool:
        """Whoever consumes the queue holds nothing taken from it and waits for more: an
        attached writer that is not running (and nothing queued), or a waiting getter."""
        if self._wake is not None:
            return not self._writing and not self._items
        getters = self._getters
        if not getters:
            return False
        return not getters[-1].done()

    def attach(self, wake: Callable[[], None]) -> None:
        """From now on the consumer is a writer started on demand: ``wake()`` whenever an
        item is queued while it is not running (now, if items are waiting)."""
        self._wake = wake
        if self._items and not self._writing:
            self._writing = True
            wake()

    def detach(self) -> None:
        """The writer is gone for good (its websocket closed or failed): items queued from
        now on stay queued, as behind python-engineio's ended writer task."""
        self._wake = None
        self._writing = False

    def writer_done(self) -> None:
        """The on-demand writer found the queue empty and stopped."""
        self._writing = False

    def put_nowait(self, item: Any) -> None:
        self._unfinished += 1
        getters = self._getters
        while getters:
            waiter = getters.pop(0)
            if not waiter.done():
                waiter.set_result(item)
                return
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        if self._limit and len(self._items) > self._limit and self._overflow is not None:
            overflow, self._overflow = self._overflow, None
            overflow(self)
        wake = self._wake
        if wake is not None and not self._writing:
            self._writing = True
            wake()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def discard(self) -> int:
        """Drop every waiting item (a slow consumer's backlog); return how many."""
        items, self._items = self._items, None
        dropped = len(items) if items else 0
        for _ in range(dropped):
            self.task_done()
        return dropped

    def get_nowait(self) -> Any:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None  # an empty deque still holds a 64-slot block
        return item

    def get(self) -> asyncio.Future[Any]:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._items:
            waiter.set_result(self.get_nowait())
            return waiter
        getters = self._getters
        if getters is None:
            getters = self._getters = []
        elif getters and getters[0].done():
            getters[:] = [g for g in getters if not g.done()]  # timed out or cancelled
        getters.append(waiter)
        return waiter

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._finished is not None:
            finished, self._finished = self._finished, None
            finished.set()

    async def join(self) -> None:
        if self._unfinished:
            if self._finished is None:
                self._finished = asyncio.Event()
            await self._finished.wait()


class _OnDemandWriter:
    """python-engineio's websocket writer (``writer`` in ``AsyncSocket._websocket_handler``,
    with ``AsyncSocket.poll``), as a task that runs only while packets are queued: an idle
    socket holds no writer task, no pending ``queue.get()`` and no timer. Same packets in
    the same order; a ``None`` or a failed send closes the websocket and ends it for good.

    python-engineio's writer also ends (and closes the websocket) when nothing was queued
    for ``ping_interval + ping_timeout``; the pings queued every ``ping_interval`` keep that
    from happening on a live socket, and on a dead one the reader's timeout ends both.
    """

    __slots__ = ("done", "queue", "task", "ws")

    def __init__(self, queue: LeanQueue, ws: eio_aiohttp.WebSocket) -> None:
        self.queue = queue
        self.ws = ws
        self.task: asyncio.Future[None] | None = None
        self.done = False

    def wake(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        queue = self.queue
        try:
            while not queue.empty():
                packets = []
                closing = False
                while not queue.empty():
                    pkt = queue.get_nowait()
                    queue.task_done()
                    if pkt is None:
                        closing = True
                        break
                    packets.append(pkt)
                try:
                    for pkt in packets:
                        await self.ws.send(pkt.encode())
                except Exception:  # as python-engineio: any failure ends the writer
                    closing = True
                if closing:
                    self.done = True
                    queue.detach()
                    await self.ws.close()
                    return
        finally:
            if not self.done:
                queue.writer_done()
                # A finished task keeps its coroutine and its entry in asyncio's task set
                # (about 0.6 KiB) for as long as it is referenced: an idle socket holds none.
                self.task = None

    async def finish(self) -> None:
        """Wait for the writer to have sent what is queued up to the final ``None``."""
        task = self.task
        if task is not None:
            await task


async def lean_websocket_handler(sock: Any, ws: eio_aiohttp.WebSocket) -> None:
    """``AsyncSocket._websocket_handler`` (python-engineio 4.15.1) with the reader waiting in
    the connection's own task under a :class:`_ReadDeadline` instead of in a new task per
    received packet under ``wait_for``, and the writer as :class:`_OnDemandWriter`. Same
    packets, same order, same ends (timeouts, errors, the ``None`` sentinel, the close
    reason)."""
    server = sock.server
    timeout = server.ping_interval + server.ping_timeout

    async def websocket_wait() -> Any:
        data = await ws.wait()
        if data and len(data) > server.max_http_buffer_size:
            raise ValueError("packet is too large")
        return data

    if sock.connected:
        if not await _upgrade(sock, ws, websocket_wait):
            return
    else:
        sock.connected = True
        sock.upgraded = True

    writer = _OnDemandWriter(sock.queue, ws)
    sock.queue.attach(writer.wake)
    deadline = _ReadDeadline(server.read_deadlines, timeout)
    try:
        while True:
            deadline.waiting = True
            try:
                p = await websocket_wait()
            except BaseException:  # the deadline, cancellation, a closed or broken websocket
                break
            finally:
                deadline.waiting = False
            deadline.received()
            if p is None:
                break  # connection closed by client
            try:
                await receive_packet(sock, p)
            except engineio.exceptions.UnknownPacketError:
                server.bad_packets.report(sock, "eio_unexpected", "packet type a client may not send")
            except engineio.exceptions.SocketIsClosedError:
                break
            except Exception:
                server.logger.exception("Unknown receive error")
    finally:
        deadline.done()
        task = asyncio.current_task()
        if deadline.fired and task is not None:
            task.uncancel()  # the deadline's cancel was handled: do not leak it to later awaits
    await sock.queue.put(None)  # unlock the writer task so it can exit
    await writer.finish()
    await sock.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)


async def receive_packet(sock: Any, p: str | bytes) -> None:
    """What the websocket reader does with one received message ``p``: ``AsyncSocket.receive``
    of its Engine.IO packet, raising what that raises.

    A text MESSAGE carrying a Socket.IO packet (``4`` and a digit: nearly every packet a
    client sends) goes straight to the server's ``message`` handler, as ``receive`` ->
    ``_trigger_event`` -> ``run_async_handler`` would hand it (python-engineio 4.15.1) when
    handlers run inline (``async_handlers=False``) and nothing logs at INFO: the same call
    and data (``Packet.decode`` keeps the payload a string when it starts with a digit), any
    failure logged the same way and swallowed, a cancellation swallowed. What it skips, per
    message: the ``Packet``, the INFO log call and its arguments, ``_trigger_event``'s two
    closures and its ``inspect.iscoroutinefunction``.
    """
    if type(p) is str and len(p) > 1 and p[0] == "4" and p[1].isnumeric():
        server = sock.server
        handler = server.inline_message_handler()
        if handler is not None and not server.logger.isEnabledFor(logging.INFO):
            try:
                await handler(sock.sid, p[1:])
            except asyncio.CancelledError:
                pass  # as run_async_handler
            except BaseException:  # as run_async_handler's bare except
                server.logger.exception("message async handler error")
            return
    # python-engineio's reader would log an undecodable packet with a traceback, each time.
    pkt = decode_or_report(sock, p)
    if pkt is not None:
        await sock.receive(pkt)


async def _upgrade(
    sock: Any, ws: eio_aiohttp.WebSocket, websocket_wait: Callable[[], Awaitable[Any]]
) -> bool:
    """The upgrade of a polling socket, as in ``AsyncSocket._websocket_handler``: probe,
    NOOP to end the pending poll, UPGRADE. False: it failed and the handler ends."""
    sock.upgrading = True  # hold packet sends during the upgrade
    try:
        pkt = await websocket_wait()
    except OSError:
        return False
    decoded = decode_or_report(sock, pkt)
    if decoded is None or decoded.packet_type != eio_packet.PING or decoded.data != "probe":
        sock.upgrading = False
        return False
    await ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
    await sock.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end poll
    try:
        pkt = await websocket_wait()
    except OSError:
        sock.upgrading = False
        return False
    decoded = decode_or_report(sock, pkt)
    if decoded is None or decoded.packet_type != eio_packet.UPGRADE:
        sock.upgraded = False
        sock.upgrading = False
        return False
    sock.upgraded = True
    sock.upgrading = False
    return True


class CoarseTimers:
    """Many per-socket timers on few event-loop timers: calls due in the same slot of
    ``resolution`` seconds share one loop timer (a loop timer handle is about 0.5 KiB; an
    entry here is a list slot). ``early``: a call runs up to ``resolution`` before its due
    time, else up to ``resolution`` after it. Not cancellable: callers check their state."""

    __slots__ = ("_early", "_resolution", "_slots")

    def __init__(self, resolution: float, *, early: bool) -> None:
        self._resolution = resolution
        self._early = early
        self._slots: dict[int, list[tuple[Callable[[Any], None], Any]]] = {}

    def call_later(self, delay: float, fn: Callable[[Any], None], arg: Any) -> None:
        loop = asyncio.get_running_loop()
        due = (loop.time() + delay) / self._resolution
        slot = int(due) if self._early else -int(-due // 1)
        calls = self._slots.get(slot)
        if calls is None:
            calls = self._slots[slot] = []
            loop.call_at(slot * self._resolution, self._fire, slot)
        calls.append((fn, arg))

    def _fire(self, slot: int) -> None:
        for fn, arg in self._slots.pop(slot, ()):
            try:
                fn(arg)
            except Exception:  # one failing callback must not drop the others in its slot
                _log.exception("timer callback failed")

    def __len__(self) -> int:
        return sum(len(calls) for calls in self._slots.values())


class _ReadDeadline:
    """The reader's ``ping_interval + ping_timeout`` limit on waiting for a packet, as
    python-engineio's ``wait_for`` gives it, without a loop timer per socket: each received
    packet only moves ``due``; the shared timer re-arms itself for the moved deadline, and
    cancels the reader only if it is still waiting when the deadline passes."""

    __slots__ = ("due", "fired", "task", "timeout", "timers", "waiting")

    def __init__(self, timers: CoarseTimers, timeout: float) -> None:
        self.timers = timers
        self.timeout = timeout
        self.task: asyncio.Task[Any] | None = asyncio.current_task()
        self.due = asyncio.get_running_loop().time() + timeout
        self.waiting = False
        self.fired = False
        timers.call_later(timeout, _check_deadline, self)

    def received(self) -> None:
        self.due = asyncio.get_running_loop().time() + self.timeout

    def done(self) -> None:
        self.task = None


def _check_deadline(deadline: _ReadDeadline) -> None:
    task = deadline.task
    if task is None:
        return  # the reader has ended
    left = deadline.due - asyncio.get_running_loop().time()
    if left > 0 or not deadline.waiting:
        # Moved by a received packet (or the reader is busy with one): look again then.
        deadline.timers.call_later(max(left, 0.0) or deadline.timeout, _check_deadline, deadline)
        return
    deadline.fired = True
    task.cancel()


def _send_ping(sock: Any) -> None:
    """``AsyncSocket._send_ping`` after its sleep, run from a timer: ``send`` would first
    check the ping timeout, which ``schedule_ping`` has just reset (``last_ping = None``)."""
    if not sock.closing and not sock.closed:
        sock.last_ping = time.time()
        sock.queue.put_nowait(eio_packet.Packet(eio_packet.PING))


#: What anything reads from a WSGI-style environ once its Engine.IO session exists:
#: chatsvc's handshake (token, origin), python-socketio (CONNECT of a namespace, the
#: blacklist, the admin UI's client list) and python-engineio's websocket driver.
ENVIRON_KEPT = frozenset(
    {
        "REQUEST_METHOD",
        "PATH_INFO",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "wsgi.url_scheme",
        "aiohttp.request",
        "HTTP_AUTHORIZATION",
        "HTTP_HOST",
        "HTTP_ORIGIN",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_X_FORWARDED_PROTO",
    }
)


def slim_environ(environ: dict[str, Any] | None) -> None:
    """Keep only :data:`ENVIRON_KEPT` of an environ that lives as long as its socket
    (python-socketio keeps the handshake's; the websocket request's is held by the frames
    of python-engineio's handler). In place, and rebuilt: a dict's table never shrinks on
    ``del``, and every header became an ``HTTP_*`` key of it (browsers send a dozen)."""
    if environ is None or environ.keys() <= ENVIRON_KEPT:
        return  # already slim (both callers may see the same dict)
    kept = {key: environ[key] for key in ENVIRON_KEPT if key in environ}
    environ.clear()
    environ.update(kept)


#: What an upgraded connection's ``RequestHandler._messages`` becomes (falsy, length 0).
_NO_MESSAGES: Any = ()


def release_http_state(request: web.Request) -> None:
    """Drop what aiohttp keeps of an upgraded request that nothing reads again, for as long
    as the websocket lives: the HTTP parser (``RequestHandler._parser``; once the upgrade is
    accepted every byte goes to the websocket reader, and ``connection_lost`` drops it
    anyway), its empty queue of parsed requests (``RequestHandler._messages``) and the raw
    header bytes (``request.raw_headers``; ``request.headers`` stays)."""
    protocol = request.protocol
    if protocol is not None and protocol._payload_parser is not None:  # the upgrade was accepted
        protocol._parser = None
        # Its queue of parsed requests: empty from now on (only the parser fills it), and
        # an empty deque still holds a 64-slot block. Read only as ``not``/``len`` after this.
        protocol._messages = _NO_MESSAGES
    request._message = request._message._replace(raw_headers=())


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
            slim_environ(environ)  # the upgrade is done: nothing reads its headers again
        self.environ = environ
        responses = server.websockets
        responses[sock.sid] = response
        try:
            if server.lean:
                await lean_websocket_handler(sock, self)
            else:
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


class EngineIOServer(BoundedPolling, SlowConsumers):
    """python-engineio's server, able to write a pre-framed broadcast to idle websockets,
    and lean per socket (:attr:`lean`)."""

    _async: dict[str, Any]  # python-engineio's async driver table (set in its __init__)

    #: Each socket gets a :class:`LeanQueue`, its ping timer is a timer handle instead of a
    #: task, and websockets run :func:`lean_websocket_handler`. False: python-engineio's own.
    lean = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The aiohttp response of every session on (or upgrading to) websocket.
        self.websockets: dict[str, web.WebSocketResponse] = {}
        # Lean sockets' pings (sent up to 1/20 of the interval early, at most 1 s) and read
        # deadlines (noticed up to as late); python-engineio's are exact to the loop's clock.
        interval, limit = self.ping_interval, self.ping_interval + self.ping_timeout
        self.ping_timers = CoarseTimers(min(1.0, interval / 20), early=True)
        self.read_deadlines = CoarseTimers(min(1.0, limit / 20), early=False)
        #: Accept permessage-deflate when a client offers it (``CHATSVC_WS_COMPRESSION``,
        #: off in chatsvc). Browsers offer it on every websocket; for chat it is the wrong
        #: trade: frames are a few hundred bytes, each compressed socket keeps its own zlib
        #: state (about 100 KiB), and every delivery is compressed once per recipient (a
        #: tenth of the CPU in a busy room, bench/README.md). Node's socket.io declines it by
        #: default; RFC 7692 lets a server decline, and clients then send uncompressed frames.
        self.websocket_compression = True
        self._message_handler_seen: Any = None
        self._message_handler_inline: Callable[[str, str], Awaitable[Any]] | None = None
        # A copy: the driver's module-level dict is shared by every server in the process.
        self._async = {**self._async, "websocket": _TrackedWebSocket}
        #: Where a client's undecodable or unexpected packets are counted and logged once.
        self.bad_packets = BadPackets()
        _install_log_filter(self.logger, self.bad_packets)

    def inline_message_handler(self) -> Callable[[str, str], Awaitable[Any]] | None:
        """The ``message`` handler :func:`receive_packet` may call directly: a coroutine
        function, run inline (``async_handlers`` off). None: go through ``AsyncSocket.receive``.
        """
        handler = self.handlers.get("message")
        if handler is not self._message_handler_seen:
            self._message_handler_seen = handler
            self._message_handler_inline = handler if inspect.iscoroutinefunction(handler) else None
        return None if self.async_handlers else self._message_handler_inline

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        """Each socket's send queue (``BaseSocket.__init__`` calls this with no arguments)."""
        if self.lean and not args and not kwargs:
            return LeanQueue(self.queued_packets_max, self.queue_overflowed)
        return super().create_queue(*args, **kwargs)

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``AsyncSocket.schedule_ping`` starts a task that sleeps ``ping_interval`` and then
        queues a PING: on a lean server that is an entry in :attr:`ping_timers` (a task per
        idle socket otherwise); it returns None then, which ``schedule_ping`` ignores."""
        if self.lean and getattr(target, "__func__", None) is async_socket.AsyncSocket._send_ping:
            self.ping_timers.call_later(self.ping_interval, _send_ping, getattr(target, "__self__", None))
            return None
        return super().start_background_task(target, *args, **kwargs)

    async def send(self, sid: str, data: Any) -> None:
        """``AsyncServer.send`` (what python-socketio sends one socket: acks, CONNECT replies,
        replays): framed and written at once when :meth:`write_frame` may, as a broadcast
        is; otherwise queued as python-engineio does. No writer task per ack."""
        pkt = eio_packet.Packet(eio_packet.MESSAGE, data=data)
        if self.write_frame(sid, frame(pkt.encode()), clock()):
            return
        await self.send_packet(sid, pkt)

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


def _install_log_filter(logger: logging.Logger, bad_packets: BadPackets) -> None:
    """Put a :class:`LibraryLogFilter` reporting to ``bad_packets`` on ``logger`` (python-
    engineio's, shared by every server in the process: the newest server's replaces any
    earlier one, so tests building many servers do not stack filters)."""
    for old in [f for f in logger.filters if isinstance(f, LibraryLogFilter)]:
        logger.removeFilter(old)
    logger.addFilter(LibraryLogFilter(bad_packets))


def clock() -> float:
    """The ``now`` :meth:`EngineIOServer.write_frames` wants (engine.io's ping clock)."""
    return time.time()
