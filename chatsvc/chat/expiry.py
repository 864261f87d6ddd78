"""When each connection's token expires, on one event-loop timer for all of them.

A loop timer per connection (``call_later``) is about 0.6 KiB per idle socket; here a
connection costs a dict entry and a heap entry. Removing one is lazy (its heap entry is
skipped when it comes up), and the heap is rebuilt when stale entries outnumber the live
ones, so memory stays proportional to the connections that have a deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


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
                log.exception("expiring %s failed", sid)
        self._arm()
