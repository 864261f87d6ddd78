"""The spam-flag part of :class:`~chatsvc.store.sqlite.SqliteStore` (issue 25)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from chatsvc.model.ids import lowest_id_at
from chatsvc.model.messages import Flag
from chatsvc.store.base import FLAG_RETENTION_SECONDS, flag_of_row, flag_row

T = TypeVar("T")

#: Schema version 7 (self-contained: the lead renumbers at merge). Flags by id (every room)
#: and by (room, id).
MIGRATION: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS flagged (
        id TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        user_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        rule TEXT NOT NULL,
        action TEXT NOT NULL,
        text TEXT NOT NULL,
        message_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS flagged_by_room ON flagged (room, id)",
)

#: In :data:`~chatsvc.store.base.FlagRow`'s order.
_COLUMNS = "id, room, user_id, user_name, rule, action, text, message_id, at_ms"


def _add(db: sqlite3.Connection, flag: Flag) -> None:
    with db:
        db.execute(f"INSERT OR IGNORE INTO flagged ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", flag_row(flag))
        # Retention: ids are time-sortable, so the expired ones are a range of the key.
        db.execute(
            "DELETE FROM flagged WHERE id < ?",
            (lowest_id_at(max(0, flag.at_ms - FLAG_RETENTION_SECONDS * 1000)),),
        )


def _list(db: sqlite3.Connection, room: str | None, before: str, limit: int) -> list[Flag]:
    if room is None:
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM flagged WHERE id < ? ORDER BY id DESC LIMIT ?", (before, limit)
        ).fetchall()
    else:
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM flagged WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (room, before, limit),
        ).fetchall()
    return [flag_of_row(row) for row in rows]


class SqliteFlags:
    """:class:`~chatsvc.store.base.FlagStore` on the SQLite file; mixed into SqliteStore."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError  # SqliteStore's

    async def add_flag(self, flag: Flag) -> None:
        """Insert unless held; drop flags past the retention in the same transaction."""
        await self._run(_add, flag)

    async def list_flags(self, room: str | None, *, before: str | None, limit: int) -> list[Flag]:
        """Newest first, by the primary key or the by-room index."""
        return await self._run(_list, room, before or "~", limit)
