"""The edit/delete consistency part of :class:`~chatsvc.store.sqlite.SqliteStore` (issue 25)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from chatsvc.store.base import encode_mentions

T = TypeVar("T")


def _write(db: sqlite3.Connection, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    with db:
        for sql, params in statements:
            db.execute(sql, params)


class SqliteCleanup:
    """:class:`~chatsvc.store.base.MessageCleanup` on the SQLite file; mixed into SqliteStore."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError  # SqliteStore's

    async def set_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """Update the message row's column."""
        sql = "UPDATE messages SET mentions=? WHERE room=? AND id=?"
        await self._run(_write, [(sql, (encode_mentions(user_ids), room, message_id))])

    async def remove_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """One transaction."""
        sql = "DELETE FROM mentions WHERE user_id=? AND room=? AND message_id=?"
        await self._run(_write, [(sql, (u, room, message_id)) for u in user_ids])

    async def clear_reactions(self, room: str, message_id: str) -> None:
        """A range of the primary key."""
        await self._run(_write, [("DELETE FROM reactions WHERE room=? AND message_id=?", (room, message_id))])
