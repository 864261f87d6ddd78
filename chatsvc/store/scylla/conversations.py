"""The conversation part of :class:`~chatsvc.store.scylla.store.ScyllaStore` (issue 24).

Tables (schema version 3, docs/scylla.md): ``conversations`` by name, ``dm_pairs`` by pair,
members twice, ``members_by_room`` and ``rooms_by_user``, one partition per room and per
user, each bounded by a setting the chat layer enforces. Both membership rows are written
(and deleted) together; the by-room row is the truth for access checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from chatsvc.model.rooms import Conversation, Member
from chatsvc.store.scylla.driver import Row, ScyllaSession


class ScyllaConversations:
    """:class:`~chatsvc.store.base.ConversationStore` on CQL; mixed into ScyllaStore."""

    #: ScyllaStore's session.
    _db: ScyllaSession

    def _cql(self, name: str, params: Sequence[object]) -> Awaitable[list[Row]]:
        return self._db.run(name, params)

    async def _both(self, *calls: Awaitable[list[Row]]) -> None:
        for call in calls:
            await call

    async def create_conversation(self, conversation: Conversation, members: list[Member]) -> None:
        """The members first: a record visible before its owner would be a room nobody may use."""
        for member in members:
            await self.put_member(member)
        c = conversation
        await self._cql("conv_put", (c.name, c.kind, c.title, c.created_by, c.created_at_ms))

    async def get_conversation(self, room: str) -> Conversation | None:
        """The record, or None."""
        rows = await self._cql("conv_get", (room,))
        if not rows or rows[0][0] is None:
            return None
        kind, title, created_by, created = rows[0]
        return Conversation(room, str(kind), str(title or ""), str(created_by or ""), int(created or 0))

    async def find_dm(self, pair: str) -> str | None:
        """The pair's room, if claimed (a plain read: claims are rare, reads every open)."""
        found = await self._cql("dm_get", (pair,))
        return str(found[0][0]) if found and found[0][0] is not None else None

    async def claim_dm(self, pair: str, room: str) -> str:
        """A lightweight transaction, once per pair ever: two users opening their DM at the
        same moment on two replicas must agree on one room."""
        rows = await self._cql("dm_claim", (pair, room))
        if rows and rows[0][0]:
            return room
        found = await self._cql("dm_get", (pair,))
        return str(found[0][0]) if found and found[0][0] is not None else room

    async def put_member(self, member: Member) -> None:
        """Both rows (a retry rewrites the same values)."""
        m = member
        await self._both(
            self._cql("member_put", (m.room, m.user_id, m.role, m.added_at_ms)),
            self._cql("member_of_put", (m.user_id, m.room, m.role, m.added_at_ms)),
        )

    async def delete_member(self, room: str, user_id: str) -> None:
        """The by-room row first: access ends with it."""
        await self._both(
            self._cql("member_delete", (room, user_id)),
            self._cql("member_of_delete", (user_id, room)),
        )

    async def get_member(self, room: str, user_id: str) -> Member | None:
        """One membership, or None."""
        rows = await self._cql("member_get", (room, user_id))
        if not rows or rows[0][0] is None:
            return None
        return Member(room, user_id, str(rows[0][0]), int(rows[0][1] or 0))

    async def list_members(self, room: str, *, after: str | None, limit: int) -> list[Member]:
        """One slice of the room's partition, by user id."""
        if limit <= 0:
            return []
        rows = await self._cql("members_list", (room, after or "", limit))
        return [Member(room, str(u), str(r), int(a or 0)) for u, r, a in rows]

    async def count_members(self, room: str) -> int:
        """A count over one partition, bounded by the members-per-room setting."""
        rows = await self._cql("members_count", (room,))
        return int(rows[0][0]) if rows else 0

    async def put_joined(self, user_id: str, room: str, at_ms: int) -> None:
        """An upsert (a rejoin rewrites the time; the chat layer skips repeats)."""
        await self._cql("joined_put", (user_id, room, at_ms))

    async def delete_joined(self, user_id: str, room: str) -> None:
        """A row delete."""
        await self._cql("joined_delete", (user_id, room))

    async def joined_rooms(self, user_id: str, *, limit: int) -> list[str]:
        """One slice of the user's partition, by room name."""
        if limit <= 0:
            return []
        return [str(r[0]) for r in await self._cql("joined_list", (user_id, limit))]

    async def put_block(self, blocker: str, blocked: str, at_ms: int) -> None:
        """An upsert into the blocker's partition."""
        await self._cql("block_put", (blocker, blocked, at_ms))

    async def delete_block(self, blocker: str, blocked: str) -> None:
        """A row delete."""
        await self._cql("block_delete", (blocker, blocked))

    async def blocks_of(self, blocker: str, *, limit: int) -> list[str]:
        """One slice of the blocker's partition."""
        if limit <= 0:
            return []
        return [str(r[0]) for r in await self._cql("blocks_of", (blocker, limit))]

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        """One row of the blocker's partition."""
        return bool(await self._cql("block_get", (blocker, blocked)))

    async def rooms_of(self, user_id: str, *, limit: int) -> list[Member]:
        """One slice of the user's partition, by room name."""
        if limit <= 0:
            return []
        rows = await self._cql("rooms_of", (user_id, limit))
        return [Member(str(room), user_id, str(r), int(a or 0)) for room, r, a in rows]
