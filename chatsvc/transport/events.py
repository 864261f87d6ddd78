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
packet arrives and ending when the queue is empty (an idle socket holds none), hands the
packets to python-socketio one after another, in the order received: a client's burst is
still stored, acked and delivered in the order sent. At most ``pending_events_max`` packets
wait; more is refused, never buffered: an event with an ack id is answered
``rate_limited``, anything else dropped, each counted (``observe_refused``). When the
Engine.IO session ends, its queue is dropped (but for a Socket.IO DISCONNECT in it, which
still says how the client left) and its worker cancelled.

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

log = logging.getLogger(__name__)


def _ignore(_: str) -> None:
    """The default :attr:`EventWorkers.observe_refused`."""


class _Pending:
    """One connection's queued packets and its worker (None while it has none)."""

    __slots__ = ("items", "task")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.task: asyncio.Task[None] | None = None


class EventWorkers(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server, handling each connection's packets in a worker of its own."""

    #: Packets one connection may have waiting for its worker (``CHATSVC_MAX_PENDING_EVENTS``).
    pending_events_max = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, _Pending] = {}
        #: Called with the kind of each refused packet (``event`` or ``other``).
        self.observe_refused: Callable[[str], None] = _ignore

    def pending_events(self, eio_sid: str) -> int:
        """How many packets of ``eio_sid`` wait for its worker (tests, metrics)."""
        pending = self._pending.get(eio_sid)
        return len(pending.items) if pending is not None else 0

    async def settled(self, eio_sid: str) -> None:
        """Wait until ``eio_sid`` has nothing waiting and no worker running (benchmarks and
        tests that hand packets in process and then count what came out)."""
        while (pending := self._pending.get(eio_sid)) is not None and pending.task is not None:
            await asyncio.shield(pending.task)

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
            pending.task = asyncio.create_task(self._work(eio_sid, pending))

    async def _process_eio_message(self, eio_sid: str, data: Any) -> None:
        """Handle one packet, in order: python-socketio's ``_handle_eio_message``."""
        await super()._handle_eio_message(eio_sid, data)

    async def _work(self, eio_sid: str, pending: _Pending) -> None:
        items = pending.items
        try:
            while items:
                data = items.popleft()
                try:
                    await self._process_eio_message(eio_sid, data)
                except asyncio.CancelledError:
                    raise
                except Exception:  # as python-engineio's inline handler call: logged, the next goes on
                    log.exception("message handler error")
        finally:
            pending.task = None
            if not items and self._pending.get(eio_sid) is pending:
                del self._pending[eio_sid]

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
