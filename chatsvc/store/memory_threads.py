"""The thread part of :class:`~chatsvc.store.memory.MemoryStore` (issue 25)."""

from __future__ import annotations

from bisect import bisect_left, insort

from chatsvc.model.ids import timestamp_ms
from chatsvc.model.messages import ThreadSummary


class MemoryThreads:
    """:class:`~chatsvc.store.base.ThreadStore` in dicts; mixed into MemoryStore."""

    def __init__(self) -> None:
        super().__init__()
        #: (room, parent id) -> reply ids, ascending.
        self._replies: dict[tuple[str, str], list[str]] = {}

    def _check(self) -> None:
        raise NotImplementedError  # MemoryStore's

    async def add_reply(self, room: str, parent_id: str, reply_id: str) -> None:
        """Insert in id order unless held already."""
        self._check()
        ids = self._replies.setdefault((room, parent_id), [])
        at = bisect_left(ids, reply_id)
        if at == len(ids) or ids[at] != reply_id:
            insort(ids, reply_id)

    async def thread_summaries(self, room: str, parent_ids: list[str]) -> dict[str, ThreadSummary]:
        """Count and newest reply time of each parent with replies."""
        self._check()
        found = {}
        for parent in parent_ids:
            ids = self._replies.get((room, parent))
            if ids:
                found[parent] = ThreadSummary(len(ids), timestamp_ms(ids[-1]))
        return found

    async def replies(self, room: str, parent_id: str, *, before: str | None, limit: int) -> list[str]:
        """Newest first, below ``before``."""
        self._check()
        ids = self._replies.get((room, parent_id), [])
        end = len(ids) if before is None else bisect_left(ids, before)
        return list(reversed(ids[max(0, end - limit) : end]))
