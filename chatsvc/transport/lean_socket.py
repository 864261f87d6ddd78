"""The lean socket: an idle websocket holds as little as it can (pinned: python-engineio
4.15.1; the code replaced is hash-pinned in ``chatsvc.transport.pins``).

An idle websocket in stock python-engineio holds, besides aiohttp's own tasks, a writer task,
a task per wait inside it (``wait_for(queue.get())``), a reader task per received packet
(``websocket_wait``), a ping task sleeping ``ping_interval``, and an ``asyncio.Queue`` with
four deques. Here it holds a :class:`LeanQueue` (nothing allocated while empty), an entry
in a shared timer for the next ping (:mod:`chatsvc.transport.timers`), and
:func:`lean_websocket_handler` (the handshake and then the reader in aiohttp's request task,
one coroutine frame; the writer a task only while packets are queued).
:func:`receive_packet` hands a received Socket.IO packet straight to python-socketio's
handler (fast path ``receive-packet``).

Internals used: ``BaseSocket.__init__`` getting its queue from ``server.create_queue()``;
``AsyncSocket.schedule_ping`` starting ``server.start_background_task(self._send_ping)``;
``AsyncSocket.receive`` / ``close`` / ``connected`` / ``upgraded`` / ``upgrading`` /
``last_ping`` / ``queue``; ``AsyncServer.handlers["message"]``, ``async_handlers``,
``logger``, ``reason`` and what ``_trigger_event`` does with them; ``WebSocket.wait`` /
``send`` / ``close`` of the aiohttp driver. With ``lean-socket`` off (``FastPaths``) every
socket runs python-engineio's own queue, ping task and handler; its queue is still bounded
(:class:`BoundedQueue`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import engineio
from aiohttp import web
from engineio import async_socket
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

from chatsvc.transport.bad_packets import BadPackets, decode_or_report
from chatsvc.transport.timers import CoarseTimers, ReadDeadline, check_deadline


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

    def __init__(self, queue: LeanQueue, ws: web.WebSocketResponse) -> None:
        self.queue = queue
        #: aiohttp's response itself, not python-engineio's driver around it (``send`` and
        #: ``close`` of ``engineio.async_drivers.aiohttp.WebSocket``, hash-pinned, only
        #: forward to it): the driver, its dict and its bound handler are not held.
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
                        message = pkt.encode()
                        if type(message) is bytes:
                            await self.ws.send_bytes(message)
                        else:
                            await self.ws.send_str(message)
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


async def lean_websocket_handler(server: Any, handshake: Awaitable[Any]) -> Any:
    """python-engineio's ``handle_request`` (``handshake``, awaited here) and then, for a
    websocket the lean driver accepted (``server.upgraded``), the websocket's whole life, in
    this one coroutine frame: returns the request's response.

    The life is ``AsyncSocket._websocket_handler`` (python-engineio 4.15.1) with the reader
    waiting in the connection's own task under a :class:`ReadDeadline` instead of in a new
    task per received packet under ``wait_for``, and the writer as :class:`_OnDemandWriter`.
    Same packets, same order, same ends (timeouts, errors, the ``None`` sentinel, the close
    reason). After it, what python-engineio's handshake frames did after their handler
    (hash-pinned: ``_handle_connect`` / the upgrade branch of ``handle_request``): the
    driver forgets its response and the server a closed socket, an ``EngineIOError`` ends
    the socket by ``disconnect`` (the upgrade branch's answer, a 400, cannot be sent on a
    websocket).

    One frame, not a handler awaited by a request coroutine: a websocket's request handler
    is on the stack for the connection's whole life, so each nested coroutine is held by
    every idle connection (about 0.3 KiB each).
    """
    response = await handshake
    # A finished coroutine keeps its size (its frame is part of it): not held for the
    # socket's life.
    del handshake
    if (upgraded := server.upgraded.pop(id(response), None) if server.upgraded else None) is None:
        return response
    # Nothing awaited between the driver's return and here: no cancellation can leave an
    # entry behind.
    sock, ws = upgraded
    sid = sock.sid
    try:
        if (writer := await _open(sock, ws)) is None:
            return response
        del upgraded, ws  # python-engineio's driver: nothing reads it from here on
        deadline = ReadDeadline(server.read_deadlines, server.ping_interval + server.ping_timeout)
        # aiohttp's receive() awaited here directly, not through websocket_wait -> the
        # driver's wait (python-engineio's WebSocket.wait, hash-pinned): three coroutine
        # frames fewer held by every idle socket and built per received frame. The same
        # checks, in order.
        ws_response = writer.ws
        limit = server.max_http_buffer_size
        try:
            while True:
                deadline.waiting = True
                try:
                    p = (await ws_response.receive()).data
                except BaseException:  # the deadline, cancellation, a closed or broken websocket
                    break
                finally:
                    deadline.waiting = False
                if type(p) is not str and not isinstance(p, (str, bytes)):
                    break  # a close, an error or a ping frame: WebSocket.wait raises OSError
                if p and len(p) > limit:
                    break  # websocket_wait's "packet is too large"
                deadline.received()
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
        await _close(sock, writer)
    except engineio.exceptions.EngineIOError:
        if sid in server.sockets:
            await server.disconnect(sid)
    finally:
        _forget(server, sock, sid, response)
    return response


async def _open(sock: Any, ws: eio_aiohttp.WebSocket) -> _OnDemandWriter | None:
    """The start of a lean websocket's life: a new socket is connected, a polling one
    upgraded (:func:`_upgrade`); its writer, attached to its queue. None: the upgrade
    failed and the life ends."""
    if not sock.connected:
        sock.connected = True
        sock.upgraded = True
    # Not a closure here: its function and cells would be held by every idle socket.
    elif not await _upgrade(sock, ws, _websocket_waiter(ws, sock.server.max_http_buffer_size)):
        return None
    writer = _OnDemandWriter(sock.queue, ws._sock)
    sock.queue.attach(writer.wake)
    return writer


async def _close(sock: Any, writer: _OnDemandWriter) -> None:
    """The end of a lean websocket's life, as python-engineio's handler ends it."""
    await sock.queue.put(None)  # unlock the writer task so it can exit
    await writer.finish()
    await sock.close(wait=False, abort=True, reason=sock.server.reason.TRANSPORT_CLOSE)


def _forget(server: Any, sock: Any, sid: str, response: Any) -> None:
    """What python-engineio's handshake frames do once their websocket handler returned: the
    driver forgets its response, the server a closed socket."""
    if server.websockets.get(sid) is response:
        del server.websockets[sid]
    if sock.closed and server.sockets.get(sid) is sock:
        del server.sockets[sid]


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


def _websocket_waiter(ws: eio_aiohttp.WebSocket, limit: int) -> Callable[[], Awaitable[Any]]:
    """``websocket_wait`` of ``AsyncSocket._websocket_handler``: the next message, or
    ValueError past ``limit``."""

    async def websocket_wait() -> Any:
        data = await ws.wait()
        if data and len(data) > limit:
            raise ValueError("packet is too large")
        return data

    return websocket_wait


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


def _send_ping(sock: Any) -> None:
    """``AsyncSocket._send_ping`` after its sleep, run from a timer: ``send`` would first
    check the ping timeout, which ``schedule_ping`` has just reset (``last_ping = None``)."""
    if not sock.closing and not sock.closed:
        sock.last_ping = time.time()
        sock.queue.put_nowait(eio_packet.Packet(eio_packet.PING))


class BoundedQueue(asyncio.Queue):  # type: ignore[type-arg]
    """python-engineio's own ``asyncio.Queue`` (``lean-socket`` off), with the same bound
    as :class:`LeanQueue`: more than ``limit`` items waiting calls ``overflow(self)`` once."""

    def __init__(self, limit: int = 0, overflow: Callable[[Any], None] | None = None) -> None:
        super().__init__()
        self._limit = limit
        self._overflow = overflow

    def put_nowait(self, item: Any) -> None:
        super().put_nowait(item)
        if self._limit and self.qsize() > self._limit and self._overflow is not None:
            overflow, self._overflow = self._overflow, None
            overflow(self)

    def discard(self) -> int:
        """Drop every waiting item (a slow consumer's backlog); return how many."""
        dropped = 0
        while not self.empty():
            self.get_nowait()
            self.task_done()
            dropped += 1
        return dropped


class LeanSockets(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server whose sockets are lean (:attr:`lean`), and whose received
    Socket.IO packets skip ``AsyncSocket.receive`` (:attr:`fast_receive`)."""

    bad_packets: BadPackets
    queued_packets_max: int

    def queue_overflowed(self, queue: Any) -> None:
        """A socket's queue is over its bound (``chatsvc.transport.slow_consumers``)."""
        raise NotImplementedError

    #: Each socket gets a :class:`LeanQueue`, its ping timer is a timer entry instead of a
    #: task, and websockets run :func:`lean_websocket_handler`. False: python-engineio's own.
    lean = True
    #: :func:`receive_packet` may call the ``message`` handler directly.
    fast_receive = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Lean sockets' pings (sent up to 1/20 of the interval early, at most 1 s) and read
        # deadlines (noticed up to as late); python-engineio's are exact to the loop's clock.
        interval, limit = self.ping_interval, self.ping_interval + self.ping_timeout
        self.ping_timers = CoarseTimers(min(1.0, interval / 20), early=True, fn=_send_ping)
        self.read_deadlines = CoarseTimers(min(1.0, limit / 20), early=False, fn=check_deadline)
        self._message_handler_seen: Any = None
        self._message_handler_inline: Callable[[str, str], Awaitable[Any]] | None = None

    def inline_message_handler(self) -> Callable[[str, str], Awaitable[Any]] | None:
        """The ``message`` handler :func:`receive_packet` may call directly: a coroutine
        function, run inline (``async_handlers`` off). None: go through ``AsyncSocket.receive``.
        """
        if not self.fast_receive:
            return None
        handler = self.handlers.get("message")
        if handler is not self._message_handler_seen:
            self._message_handler_seen = handler
            self._message_handler_inline = handler if inspect.iscoroutinefunction(handler) else None
        return None if self.async_handlers else self._message_handler_inline

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        """Each socket's send queue (``BaseSocket.__init__`` calls this with no arguments),
        bounded either way (``chatsvc.transport.slow_consumers``)."""
        if not args and not kwargs:
            if self.lean:
                return LeanQueue(self.queued_packets_max, self.queue_overflowed)
            return BoundedQueue(self.queued_packets_max, self.queue_overflowed)
        return super().create_queue(*args, **kwargs)

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``AsyncSocket.schedule_ping`` starts a task that sleeps ``ping_interval`` and then
        queues a PING: on a lean server that is an entry in :attr:`ping_timers` (a task per
        idle socket otherwise); it returns None then, which ``schedule_ping`` ignores."""
        if self.lean and getattr(target, "__func__", None) is async_socket.AsyncSocket._send_ping:
            self.ping_timers.call_later(self.ping_interval, _send_ping, getattr(target, "__self__", None))
            return None
        return super().start_background_task(target, *args, **kwargs)
