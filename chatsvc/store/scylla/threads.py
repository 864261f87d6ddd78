"""The thread part of :class:`~chatsvc.store.scylla.store.ScyllaStore` (issue 25).

``replies`` holds one row per reply, partitioned by the parent's (room, bucket) and
clustered by (parent, reply id): a thread is one slice of one partition, and the summaries
of a history page are one ``GROUP BY parent_id`` query per bucket the page touches (no
ALLOW FILTERING, no counter to drift under retries: a retried reply rewrites its row).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from chatsvc.model.ids import timestamp_ms
from chatsvc.model.messages import ThreadSummary
from chatsvc.store.base import bucket_of
from chatsvc.store.scylla.driver import Row, ScyllaSession

#: Parents per summary query (a page is at most ``history_page_max``; IN lists stay short).
SUMMARY_CHUNK = 100


def _bucket(message_id: str) -> int:
    return bucket_of(timestamp_ms(message_id))


class ScyllaThreads:
    """:class:`~chatsvc.store.base.ThreadStore` on CQL; mixed into ScyllaStore."""

    #: ScyllaStore's session.
    _db: ScyllaSession

    def _thread_cql(self, name: str, params: Sequence[object]) -> Awaitable[list[Row]]:
        return self._db.run(name, params)

    async def add_reply(self, room: str, parent_id: str, reply_id: str) -> None:
        """An upsert: idempotent under retries."""
        await self._thread_cql("reply_put", (room, _bucket(parent_id), parent_id, reply_id))

    async def thread_summaries(self, room: str, parent_ids: list[str]) -> dict[str, ThreadSummary]:
        """One grouped query per (bucket, chunk of parents)."""
        by_bucket: dict[int, list[str]] = {}
        for parent in dict.fromkeys(parent_ids):
            by_bucket.setdefault(_bucket(parent), []).append(parent)
        queries = [
            self._thread_cql("reply_summary", (room, bucket, ids[i : i + SUMMARY_CHUNK]))
            for bucket, ids in by_bucket.items()
            for i in range(0, len(ids), SUMMARY_CHUNK)
        ]
        found = {}
        for rows in await asyncio.gather(*queries):
            for parent, count, last in rows:
                if count:
                    found[str(parent)] = ThreadSummary(int(count), timestamp_ms(str(last)))
        return found

    async def replies(self, room: str, parent_id: str, *, before: str | None, limit: int) -> list[str]:
        """Newest first, below ``before``."""
        rows = await self._thread_cql(
            "reply_page", (room, _bucket(parent_id), parent_id, before or "~", limit)
        )
        return [str(r[0]) for r in rows]
