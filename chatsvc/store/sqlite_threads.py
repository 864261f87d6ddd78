"""The thread part of :class:`~chatsvc.store.sqlite.SqliteStore` (issue 25): its migration
and its operations, each one statement on the store's worker thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from chatsvc.model.ids import timestamp_ms
from chatsvc.model.messages import ThreadSummary

T = TypeVar("T")

#: Schema version 6: a reply's parent, copied into the reply (``reply_to``, JSON), and the
#: replies by parent (the thread query and the summaries of a history page).
MIGRATION: tuple[str, ...] = (
    "ALTER TABLE messages ADD COLUMN reply_to TEXT",
    # Mentioned user ids, JSON (issue 25).
    "ALTER TABLE messages ADD COLUMN mentions TEXT",
    """CREATE TABLE IF NOT EXISTS replies (
        room TEXT NOT NULL,
        parent_id TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (room, parent_id, id)
    ) WITHOUT ROWID""",
)


def _add(db: sqlite3.Connection, room: str, parent_id: str, reply_id: str) -> None:
    with db:
        db.execute(
            "INSERT OR IGNORE INTO replies (room, parent_id, id) VALUES (?,?,?)", (room, parent_id, reply_id)
        )


def _summaries(db: sqlite3.Connection, room: str, parent_ids: list[str]) -> list[tuple[Any, ...]]:
    marks = ",".join("?" * len(parent_ids))
    return db.execute(
        f"SELECT parent_id, count(*), max(id) FROM replies WHERE room=? AND parent_id IN ({marks})"
        " GROUP BY parent_id",
        (room, *parent_ids),
    ).fetchall()


def _replies(
    db: sqlite3.Connection, room: str, parent_id: str, before: str, limit: int
) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT id FROM replies WHERE room=? AND parent_id=? AND id<? ORDER BY id DESC LIMIT ?",
        (room, parent_id, before, limit),
    ).fetchall()


class SqliteThreads:
    """:class:`~chatsvc.store.base.ThreadStore` on the SQLite file; mixed into SqliteStore."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError  # SqliteStore's

    async def add_reply(self, room: str, parent_id: str, reply_id: str) -> None:
        """Insert the row (again: no change)."""
        await self._run(_add, room, parent_id, reply_id)

    async def thread_summaries(self, room: str, parent_ids: list[str]) -> dict[str, ThreadSummary]:
        """One grouped query over the page's parents."""
        if not parent_ids:
            return {}
        rows = await self._run(_summaries, room, parent_ids)
        return {str(p): ThreadSummary(int(n), timestamp_ms(str(last))) for p, n, last in rows}

    async def replies(self, room: str, parent_id: str, *, before: str | None, limit: int) -> list[str]:
        """Newest first, below ``before``."""
        rows = await self._run(_replies, room, parent_id, before or "~", limit)
        return [str(r[0]) for r in rows]
