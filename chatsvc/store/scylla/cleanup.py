"""The edit/delete consistency part of :class:`~chatsvc.store.scylla.store.ScyllaStore`
(issue 25): a message's mentions replaced after an edit, its mention rows and reactions
removed. Every statement names its partition (no ALLOW FILTERING)."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Final

from chatsvc.model.ids import timestamp_ms
from chatsvc.store.base import bucket_of, encode_mentions

if TYPE_CHECKING:
    from chatsvc.store.scylla.driver import Row, ScyllaSession

STATEMENTS: Final[dict[str, str]] = {
    "msg_mentions": "UPDATE {ks}.messages SET mentions = ? WHERE room = ? AND bucket = ? AND id = ?",
    "mention_delete": "DELETE FROM {ks}.mentions_by_user WHERE user_id = ? AND room = ? AND message_id = ?",
    "react_users": "SELECT user_id FROM {ks}.reactions WHERE room = ? AND bucket = ? AND message_id = ?",
    "react_clear": "DELETE FROM {ks}.reactions WHERE room = ? AND bucket = ? AND message_id = ?",
    "react_mine_clear": (
        "DELETE FROM {ks}.reactions_by_user WHERE room = ? AND bucket = ? AND user_id = ? AND message_id = ?"
    ),
}
#: Deletes in flight at once while clearing a message's reactions by user.
CLEAR_CHUNK = 64


class ScyllaCleanup:
    """:class:`~chatsvc.store.base.MessageCleanup` on CQL; mixed into ScyllaStore."""

    #: ScyllaStore's session.
    _db: ScyllaSession

    def _cleanup_cql(self, name: str, params: Sequence[object]) -> Awaitable[list[Row]]:
        return self._db.run(name, params)

    async def set_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """One cell of the existing row ("" for none: no null is written)."""
        stored = encode_mentions(user_ids) or ""
        bucket = bucket_of(timestamp_ms(message_id))
        await self._cleanup_cql("msg_mentions", (stored, room, bucket, message_id))

    async def remove_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """One delete per user's partition."""
        await self._db.gather(*(self._cleanup_cql("mention_delete", (u, room, message_id)) for u in user_ids))

    async def clear_reactions(self, room: str, message_id: str) -> None:
        """The by-user rows first (their users are read from the message's rows), then the
        message's slice of its partition in one range delete."""
        bucket = bucket_of(timestamp_ms(message_id))
        rows = await self._cleanup_cql("react_users", (room, bucket, message_id))
        users = sorted({str(r[0]) for r in rows})
        for i in range(0, len(users), CLEAR_CHUNK):
            await self._db.gather(
                *(
                    self._cleanup_cql("react_mine_clear", (room, bucket, u, message_id))
                    for u in users[i : i + CLEAR_CHUNK]
                )
            )
        await self._cleanup_cql("react_clear", (room, bucket, message_id))
