"""The reaction part of :class:`~chatsvc.store.sqlite.SqliteStore` (issue 25)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Part of schema version 6: one row per (room, message, emoji, user); by user for "mine".
MIGRATION: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS reactions (
        room TEXT NOT NULL,
        message_id TEXT NOT NULL,
        emoji TEXT NOT NULL,
        user_id TEXT NOT NULL,
        PRIMARY KEY (room, message_id, emoji, user_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS reactions_by_user ON reactions (room, user_id, message_id)",
)


def _change(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> bool:
    with db:
        return db.execute(sql, params).rowcount > 0


def _select(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return db.execute(sql, params).fetchall()


class SqliteReactions:
    """:class:`~chatsvc.store.base.ReactionStore` on the SQLite file; mixed into SqliteStore."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError  # SqliteStore's

    async def put_reaction(self, room: str, message_id: str, emoji: str, user_id: str) -> bool:
        """Insert unless present."""
        return await self._run(
            _change,
            "INSERT OR IGNORE INTO reactions (room, message_id, emoji, user_id) VALUES (?,?,?,?)",
            (room, message_id, emoji, user_id),
        )

    async def delete_reaction(self, room: str, message_id: str, emoji: str, user_id: str) -> bool:
        """Delete if present."""
        return await self._run(
            _change,
            "DELETE FROM reactions WHERE room=? AND message_id=? AND emoji=? AND user_id=?",
            (room, message_id, emoji, user_id),
        )

    async def reaction_counts(self, room: str, message_ids: list[str]) -> dict[str, dict[str, int]]:
        """One grouped query over the messages."""
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        rows = await self._run(
            _select,
            f"SELECT message_id, emoji, count(*) FROM reactions WHERE room=? AND message_id IN ({marks})"
            " GROUP BY message_id, emoji",
            (room, *message_ids),
        )
        found: dict[str, dict[str, int]] = {}
        for message_id, emoji, count in rows:
            found.setdefault(str(message_id), {})[str(emoji)] = int(count)
        return found

    async def reactions_of(self, room: str, message_ids: list[str], user_id: str) -> dict[str, list[str]]:
        """Through the by-user index."""
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        rows = await self._run(
            _select,
            f"SELECT message_id, emoji FROM reactions WHERE room=? AND user_id=? AND message_id IN ({marks})"
            " ORDER BY message_id, emoji",
            (room, user_id, *message_ids),
        )
        found: dict[str, list[str]] = {}
        for message_id, emoji in rows:
            found.setdefault(str(message_id), []).append(str(emoji))
        return found
