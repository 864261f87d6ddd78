"""Control traffic never waits behind events: a worker per connection, behind a bounded queue
(pinned: python-socketio 5.18.1, python-engineio 4.15.1; ``chatsvc.transport.pins``).

With ``async_handlers=False`` python-engineio hands every Socket.IO packet to
python-socketio's ``_handle_eio_message`` inline, in the connection's reader (websocket) or
in the request handling a long-polling POST, and the reader reads nothing else until the
handler returns. A PONG that arrived behind a slow ``message`` event (the store down) was
read only after it, past ``ping_interval + ping_timeout``, and a healthy socket was dropped.

Here the reader only queues the packet and goes back to reading: Engine.IO's own packets
(PING, PONG, CLOSE, the upgrade probe and UPGRADE) never reach this queue, python-engineio
and the lean reader handle them at once. One worker task per connection, started when a
packet arrives, hands the packets to python-socketio one after another, in the order
received: a client's burst is still stored, acked and delivered in the order sent. Once
the queue is empty the worker parks for the next packet if it has handled an event
(fast path ``event-worker``: no new task and queue entry per message of a chatting
client) and ends after ``WORKER_LINGER_SECONDS`` to twice that without one; it
ends at once after a CONNECT or anything else, so a connected but silent socket holds no
task (idle memory). With ``event-worker`` off it always ends when the queue is empty.
At most ``pending_events_max`` packets wait; more is refused, never buffered: an event
with an ack id is answered ``rate_limited``, anything else dropped, each counted
(``observe_refused``). When the Engine.IO session ends, its queue is dropped (but for a
Socket.IO DISCONNECT in it, which still says how the client left) and its worker cancelled.

Internals used: ``AsyncServer._handle_eio_message`` (registered as python-engineio's
``message`` handler in python-socketio's ``__init__``: this class's override is what is
registered), ``_handle_eio_disconnect``, ``_send_packet``, ``manager.sid_from_eio_sid`` /
``is_connected``, ``packet_class``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import socketio
from socketio import packet

from chatsvc.errors import RateLimited
from chatsvc.transport.socketio_packet import packet_head
from chatsvc.transport.timers import CoarseTimers

log = logging.getLogger(__name__)

#: How long a worker that handled an event stays parked for the connection's next packet
#: (fast path ``event-worker``): it ends after between one and two of these without one.
WORKER_LINGER_SECONDS = 5.0


def _ignore(_: str) -> None:
    """The default :attr:`EventWorkers.observe_refused`."""


class _Pending:
    """One connection's queued packets and its worker (None while it has none)."""

    __slots__ = ("armed", "items", "lingers", "task", "touched", "wake", "watchers")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.task: asyncio.Task[None] | None = None
        #: Set while the worker is parked (fast path ``event-worker``): resolved True when a
        #: packet arrives for it, False when it has lingered long enough.
        self.wake: asyncio.Future[bool] | None = None
        #: A linger check is due in the shared timer; a packet arrived since it last looked.
        self.armed = False
        self.touched = False
        #: The worker handled an event, so it parks instead of ending (``event-worker``).
        self.lingers = False
        #: Futures :meth:`EventWorkers.settled` waits on (None: nobody waits).
        self.watchers: list[asyncio.Future[None]] | None = None

    def idle(self) -> bool:
        """Nothing waits and the worker, if any, is parked."""
        if self.items:
            return False
        return self.task is None or (self.wake is not None and not self.wake.done())

    def notify(self) -> None:
        """Tell :meth:`EventWorkers.settled` waiters the connection is idle."""
        watchers, self.watchers = self.watchers, None
        for watcher in watchers or ():
            if not watcher.done():
                watcher.set_result(None)


class EventWorkers(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server, handling each connection's packets in a worker of its own."""

    #: Packets one connection may have waiting for its worker (``CHATSVC_MAX_PENDING_EVENTS``).
    pending_events_max = 64
    #: Fast path ``event-worker``: a worker that handled an event parks for the next packet.
    keep_workers = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, _Pending] = {}
        #: Called with the kind of each refused packet (``event`` or ``other``).
        self.observe_refused: Callable[[str], None] = _ignore
        # One loop timer per second for all parked workers, not one each (chatsvc.transport.timers).
        self._linger_timers = CoarseTimers(1.0, early=False)

    def pending_events(self, eio_sid: str) -> int:
        """How many packets of ``eio_sid`` wait for its worker (tests, metrics)."""
        pending = self._pending.get(eio_sid)
        return len(pending.items) if pending is not None else 0

    def has_worker(self, eio_sid: str) -> bool:
        """Whether ``eio_sid`` has a worker task, running or parked (tests)."""
        pending = self._pending.get(eio_sid)
        return pending is not None and pending.task is not None

    async def settled(self, eio_sid: str) -> None:
        """Wait until ``eio_sid`` has nothing waiting and its worker, if any, is parked or
        gone (benchmarks and tests that hand packets in process and then count what came out)."""
        while (pending := self._pending.get(eio_sid)) is not None and not pending.idle():
            watcher: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if pending.watchers is None:
                pending.watchers = []
            pending.watchers.append(watcher)
            await watcher

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        """Queue a received Socket.IO packet for the connection's worker (module docstring)."""
        pending = self._pending.get(eio_sid)
        if pending is None:
            pending = self._pending[eio_sid] = _Pending()
        if len(pending.items) >= self.pending_events_max:
            await self._refuse_pending(eio_sid, data)
            return
        pending.items.append(data)
        if pending.task is None:
            self._start_worker(eio_sid, pending)
            return
        wake = pending.wake
        if wake is not None and not wake.done():
            self._wake_worker(pending, wake)

    def _start_worker(self, eio_sid: str, pending: _Pending) -> None:
        """A new worker task for the connection's queue (every burst with ``event-worker`` off)."""
        pending.task = asyncio.create_task(self._work(eio_sid, pending))

    def _wake_worker(self, pending: _Pending, wake: asyncio.Future[bool]) -> None:
        """Hand the queue to the connection's parked worker (fast path ``event-worker``)."""
        pending.touched = True
        wake.set_result(True)

    async def _process_eio_message(self, eio_sid: str, data: Any) -> None:
        """Handle one packet, in order: python-socketio's ``_handle_eio_message``."""
        await super()._handle_eio_message(eio_sid, data)

    async def _work(self, eio_sid: str, pending: _Pending) -> None:
        items = pending.items
        try:
            while True:
                while items:
                    data = items.popleft()
                    # An event (``2``...) keeps the worker for the next one; a CONNECT does not.
                    pending.lingers = type(data) is str and data[:1] == "2"
                    try:
                        await self._process_eio_message(eio_sid, data)
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # as python-engineio's inline handler call: logged, the next goes on
                        log.exception("message handler error")
                if not (self.keep_workers and pending.lingers) or self._pending.get(eio_sid) is not pending:
                    return
                wake = pending.wake = asyncio.get_running_loop().create_future()
                if pending.watchers is not None:
                    pending.notify()
                if not pending.armed:
                    pending.armed = True
                    pending.touched = False
                    self._linger_timers.call_later(WORKER_LINGER_SECONDS, self._linger_check, pending)
                lingering = await wake
                pending.wake = None
                if not lingering and not items:
                    return  # nothing since the last look (a packet queued meanwhile is handled)
        finally:
            pending.task = None
            pending.wake = None
            if not items and self._pending.get(eio_sid) is pending:
                del self._pending[eio_sid]
            if pending.watchers is not None:
                pending.notify()

    def _linger_check(self, pending: _Pending) -> None:
        """End ``pending``'s parked worker if no packet came for it since the last look
        (one to two ``WORKER_LINGER_SECONDS`` ago); otherwise look again then."""
        wake = pending.wake
        if pending.task is None:
            pending.armed = False  # the worker has ended: the next one arms its own check
        elif pending.touched or wake is None or wake.done():
            pending.touched = False  # busy since, or right now
            self._linger_timers.call_later(WORKER_LINGER_SECONDS, self._linger_check, pending)
        else:
            pending.armed = False
            wake.set_result(False)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        """The Engine.IO session ended: what it still had queued is dropped, its worker
        cancelled (unless the worker itself is ending it), then python-socketio's handler."""
        pending = self._pending.pop(eio_sid, None)
        if pending is not None:
            # A Socket.IO DISCONNECT the client sent before leaving still says how it left
            # (python-socketio then keeps no session to recover): handled, not dropped.
            leaving = [data for data in pending.items if isinstance(data, str) and data[:1] == "1"]
            pending.items.clear()
            task = pending.task
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            for data in leaving:
                await self._process_eio_message(eio_sid, data)
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def _refuse_pending(self, eio_sid: str, data: Any) -> None:
        """The queue is full: answer an event's ack ``rate_limited``; never buffer it."""
        kind, namespace, ack_id = packet_head(data) if isinstance(data, str) else ("", "/", None)
        self.observe_refused("event" if kind == "2" else "other")
        if kind != "2" or ack_id is None:
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            return
        error = RateLimited("too many events waiting on this connection; slow down").to_wire()
        await self._send_packet(
            eio_sid,
            self.packet_class(
                packet.ACK, namespace=namespace, id=ack_id, data=[{"ok": False, "error": error}]
            ),
        )
