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
    # Mentions by user and room (unread mention counts in my_rooms).
    """CREATE TABLE IF NOT EXISTS mentions (
        user_id TEXT NOT NULL,
        room TEXT NOT NULL,
        message_id TEXT NOT NULL,
        PRIMARY KEY (user_id, room, message_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS pins (
        room TEXT NOT NULL,
        message_id TEXT NOT NULL,
        pinned_by TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (room, message_id)
    ) WITHOUT ROWID""",
)


def _add_mentions(db: sqlite3.Connection, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
    with db:
        db.executemany(
            "INSERT OR IGNORE INTO mentions (user_id, room, message_id) VALUES (?,?,?)",
            [(u, room, message_id) for u in user_ids],
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

    async def add_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """One transaction for the message's mentions."""
        if user_ids:
            await self._run(_add_mentions, room, message_id, user_ids)

    async def unread_mentions(self, room: str, user_id: str, cap: int) -> int:
        """Mentions after the read marker, counted up to ``cap``."""
        rows = await self._run(
            _select,
            """SELECT count(*) FROM (
                   SELECT 1 FROM mentions WHERE user_id=? AND room=? AND message_id > coalesce(
                       (SELECT message_id FROM read_markers WHERE room=? AND user_id=?), '')
                   LIMIT ?)""",
            (user_id, room, room, user_id, cap),
        )
        return int(rows[0][0]) if rows else 0

    async def put_pin(self, room: str, message_id: str, by: str, at_ms: int) -> bool:
        """Insert unless pinned."""
        return await self._run(
            _change,
            "INSERT OR IGNORE INTO pins (room, message_id, pinned_by, at_ms) VALUES (?,?,?,?)",
            (room, message_id, by, at_ms),
        )

    async def delete_pin(self, room: str, message_id: str) -> bool:
        """Delete if pinned."""
        return await self._run(_change, "DELETE FROM pins WHERE room=? AND message_id=?", (room, message_id))

    async def list_pins(self, room: str, limit: int) -> list[tuple[str, str, int]]:
        """Newest message first."""
        rows = await self._run(
            _select,
            "SELECT message_id, pinned_by, at_ms FROM pins WHERE room=? ORDER BY message_id DESC LIMIT ?",
            (room, limit),
        )
        return [(str(m), str(b), int(a)) for m, b, a in rows]

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
