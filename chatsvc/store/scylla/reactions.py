"""The reaction part of :class:`~chatsvc.store.scylla.store.ScyllaStore` (issue 25).

One row per (message, emoji, user) in the message's (room, bucket) partition: a page's
counts are one ``GROUP BY message_id, emoji`` per bucket, exact whichever replica wrote
the rows (no counter columns, whose retries over-count). The same rows by user
(``reactions_by_user``) answer "which did I react with". Adds and removes are lightweight
transactions so exactly one of several concurrent identical calls reports the change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from chatsvc.model.ids import timestamp_ms
from chatsvc.store.base import bucket_of
from chatsvc.store.scylla.driver import Row, ScyllaSession

#: Messages per grouped query.
CHUNK = 100


def _bucket(message_id: str) -> int:
    return bucket_of(timestamp_ms(message_id))


def _by_bucket(message_ids: list[str]) -> list[tuple[int, list[str]]]:
    grouped: dict[int, list[str]] = {}
    for message_id in dict.fromkeys(message_ids):
        grouped.setdefault(_bucket(message_id), []).append(message_id)
    return [(b, ids[i : i + CHUNK]) for b, ids in grouped.items() for i in range(0, len(ids), CHUNK)]


class ScyllaReactions:
    """:class:`~chatsvc.store.base.ReactionStore` on CQL; mixed into ScyllaStore."""

    #: ScyllaStore's session.
    _db: ScyllaSession

    def _reaction_cql(self, name: str, params: Sequence[object]) -> Awaitable[list[Row]]:
        return self._db.run(name, params)

    async def add_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """Upserts: idempotent."""
        await asyncio.gather(*(self._reaction_cql("mention_put", (u, room, message_id)) for u in user_ids))

    async def unread_mentions(self, room: str, user_id: str, cap: int) -> int:
        """One slice of the user's (user, room) partition after its read marker."""
        marker = await self._reaction_cql("marker_get", (room, user_id))
        after = str(marker[0][0]) if marker and marker[0][0] is not None else ""
        return len(await self._reaction_cql("mention_after", (user_id, room, after, cap)))

    async def put_pin(self, room: str, message_id: str, by: str, at_ms: int) -> bool:
        """A lightweight transaction: one of concurrent pins reports it."""
        rows = await self._reaction_cql("pin_put", (room, message_id, by, at_ms))
        return bool(rows and rows[0][0])

    async def delete_pin(self, room: str, message_id: str) -> bool:
        """A lightweight transaction: one of concurrent unpins reports it."""
        rows = await self._reaction_cql("pin_delete", (room, message_id))
        return bool(rows and rows[0][0])

    async def list_pins(self, room: str, limit: int) -> list[tuple[str, str, int]]:
        """One slice of the room's partition."""
        rows = await self._reaction_cql("pin_list", (room, limit))
        return [(str(m), str(b), int(a or 0)) for m, b, a in rows]

    async def put_reaction(self, room: str, message_id: str, emoji: str, user_id: str) -> bool:
        """The by-user row first: a failure after it leaves only a "mine" without a count,
        which the retry completes."""
        bucket = _bucket(message_id)
        await self._reaction_cql("react_mine_put", (room, bucket, user_id, message_id, emoji))
        rows = await self._reaction_cql("react_put", (room, bucket, message_id, emoji, user_id))
        return bool(rows and rows[0][0])

    async def delete_reaction(self, room: str, message_id: str, emoji: str, user_id: str) -> bool:
        """The counted row first, then the by-user one."""
        bucket = _bucket(message_id)
        rows = await self._reaction_cql("react_delete", (room, bucket, message_id, emoji, user_id))
        await self._reaction_cql("react_mine_delete", (room, bucket, user_id, message_id, emoji))
        return bool(rows and rows[0][0])

    async def reaction_counts(self, room: str, message_ids: list[str]) -> dict[str, dict[str, int]]:
        """One grouped query per (bucket, chunk)."""
        queries = [self._reaction_cql("react_counts", (room, b, ids)) for b, ids in _by_bucket(message_ids)]
        found: dict[str, dict[str, int]] = {}
        for rows in await asyncio.gather(*queries):
            for message_id, emoji, count in rows:
                if count:
                    found.setdefault(str(message_id), {})[str(emoji)] = int(count)
        return found

    async def reactions_of(self, room: str, message_ids: list[str], user_id: str) -> dict[str, list[str]]:
        """One query per (bucket, chunk) of the user's partition."""
        queries = [
            self._reaction_cql("react_mine", (room, b, user_id, ids)) for b, ids in _by_bucket(message_ids)
        ]
        found: dict[str, list[str]] = {}
        for rows in await asyncio.gather(*queries):
            for message_id, emoji in rows:
                found.setdefault(str(message_id), []).append(str(emoji))
        return {k: sorted(v) for k, v in found.items()}
