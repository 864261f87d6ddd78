"""Many per-socket timers on few event-loop timers: one mechanism, two shapes.

A loop timer handle (``call_later``) is about 0.5-0.6 KiB; an idle server holds one or more
per socket (its next ping, its read deadline, its token's expiry). Here they share:

- :class:`CoarseTimers`: calls due in the same slot of ``resolution`` seconds share one
  loop timer (the lean socket's pings and read deadlines, :class:`ReadDeadline`);
- :class:`Expiries`: one loop timer over a heap of per-key deadlines that move and are
  discarded (each connection's token expiry, from the chat namespace).

Neither relies on a library's internals; they live here beside the lean socket that needs
them most. Pure asyncio.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable
from typing import Any

_log = logging.getLogger(__name__)


class CoarseTimers:
    """Many per-socket timers on few event-loop timers: calls due in the same slot of
    ``resolution`` seconds share one loop timer (a loop timer handle is about 0.5 KiB; an
    entry here is a list slot). ``early``: a call runs up to ``resolution`` before its due
    time, else up to ``resolution`` after it. Not cancellable: callers check their state."""

    __slots__ = ("_early", "_fn", "_resolution", "_slots")

    def __init__(self, resolution: float, *, early: bool, fn: Callable[[Any], None] | None = None) -> None:
        self._resolution = resolution
        self._early = early
        #: The usual callback: a call of it is kept as its bare argument (every idle socket
        #: has one entry for its ping and one for its read deadline: a pair each is 64 B).
        self._fn = fn
        self._slots: dict[int, list[Any]] = {}

    def call_later(self, delay: float, fn: Callable[[Any], None], arg: Any) -> None:
        loop = asyncio.get_running_loop()
        due = (loop.time() + delay) / self._resolution
        slot = int(due) if self._early else -int(-due // 1)
        calls = self._slots.get(slot)
        if calls is None:
            calls = self._slots[slot] = []
            loop.call_at(slot * self._resolution, self._fire, slot)
        calls.append(arg if fn is self._fn else _Call(fn, arg))

    def _fire(self, slot: int) -> None:
        usual = self._fn
        for entry in self._slots.pop(slot, ()):
            try:
                if type(entry) is _Call:
                    entry.fn(entry.arg)
                else:
                    usual(entry)  # type: ignore[misc]
            except Exception:  # one failing callback must not drop the others in its slot
                _log.exception("timer callback failed")

    def __len__(self) -> int:
        return sum(len(calls) for calls in self._slots.values())


class _Call:
    """A call of :class:`CoarseTimers` other than its usual callback."""

    __slots__ = ("arg", "fn")

    def __init__(self, fn: Callable[[Any], None], arg: Any) -> None:
        self.fn = fn
        self.arg = arg


class ReadDeadline:
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
        timers.call_later(timeout, check_deadline, self)

    def received(self) -> None:
        self.due = asyncio.get_running_loop().time() + self.timeout

    def done(self) -> None:
        self.task = None


def check_deadline(deadline: ReadDeadline) -> None:
    """The timer callback of a :class:`ReadDeadline` (the usual one of its timers)."""
    task = deadline.task
    if task is None:
        return  # the reader has ended
    left = deadline.due - asyncio.get_running_loop().time()
    if left > 0 or not deadline.waiting:
        # Moved by a received packet (or the reader is busy with one): look again then.
        deadline.timers.call_later(max(left, 0.0) or deadline.timeout, check_deadline, deadline)
        return
    deadline.fired = True
    task.cancel()


class Expiries:
    """Calls ``on_expired(sid)`` once a connection's deadline has passed (up to
    ``resolution`` seconds late), unless it was moved or discarded first."""

    def __init__(
        self,
        on_expired: Callable[[str], None],
        *,
        resolution: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._on_expired = on_expired
        self._resolution = resolution
        self._clock = clock
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        return len(self._due)

    def set(self, sid: str, at: float | None) -> None:
        """``sid`` expires at ``at`` (Unix time) instead of whenever it did; None: never."""
        if at is None:
            self._due.pop(sid, None)
            return
        self._due[sid] = at
        heapq.heappush(self._heap, (at, sid))
        self._compact()
        self._arm()

    def discard(self, sid: str) -> None:
        """Forget ``sid`` (it disconnected)."""
        if self._due.pop(sid, None) is not None:
            self._compact()

    def close(self) -> None:
        """Stop the timer; nothing expires any more."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()
        self._heap.clear()

    def _compact(self) -> None:
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [(at, sid) for sid, at in self._due.items()]
            heapq.heapify(self._heap)

    def _arm(self) -> None:
        if not self._heap:
            return
        first = self._heap[0][0]
        if self._timer is not None and self._timer_at <= first:
            return  # the armed timer comes first and re-arms for the rest
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, first - self._clock()) + self._resolution
        self._timer_at = first
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._clock()
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= now:
            at, sid = heapq.heappop(heap)
            if due.get(sid) != at:
                continue  # moved or discarded since
            del due[sid]
            try:
                self._on_expired(sid)
            except Exception:  # one failing callback must not stop the others
                _log.exception("expiring %s failed", sid)
        self._arm()
