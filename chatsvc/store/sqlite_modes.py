"""The room mode and sentiment part of :class:`~chatsvc.store.sqlite.SqliteStore` (issue 25)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from chatsvc.model.modes import RoomMode, SentimentCounts
from chatsvc.store.base import HOUR_MS, MINUTE_MS

T = TypeVar("T")

#: Schema version 7 (self-contained: the lead may renumber it at merge). Messages get their
#: cashtags (JSON list) and sentiment; rooms a mode row; sentiment is counted per slot.
MIGRATION: tuple[str, ...] = (
    "ALTER TABLE messages ADD COLUMN tickers TEXT",
    "ALTER TABLE messages ADD COLUMN sentiment TEXT",
    """CREATE TABLE IF NOT EXISTS room_modes (
        room TEXT PRIMARY KEY,
        slow_mode_seconds INTEGER NOT NULL DEFAULT 0,
        surge INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
    # grain 'm': minute slots (the last hour), 'h': hour slots (the last day).
    """CREATE TABLE IF NOT EXISTS sentiment_counts (
        room TEXT NOT NULL,
        grain TEXT NOT NULL,
        slot INTEGER NOT NULL,
        sentiment TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (room, grain, slot, sentiment)
    ) WITHOUT ROWID""",
)


def _set_surge(db: sqlite3.Connection, room: str, surge: bool) -> bool:
    with db:
        db.execute("INSERT OR IGNORE INTO room_modes (room) VALUES (?)", (room,))
        changed = db.execute(
            "UPDATE room_modes SET surge=? WHERE room=? AND surge != ?", (int(surge), room, int(surge))
        ).rowcount
        return changed == 1


def _add_sentiment(db: sqlite3.Connection, room: str, sentiment: str, at_ms: int) -> None:
    minute, hour = at_ms // MINUTE_MS, at_ms // HOUR_MS
    with db:
        for grain, slot in (("m", minute), ("h", hour)):
            db.execute(
                """INSERT INTO sentiment_counts (room, grain, slot, sentiment, n) VALUES (?,?,?,?,1)
                   ON CONFLICT (room, grain, slot, sentiment) DO UPDATE SET n = n + 1""",
                (room, grain, slot, sentiment),
            )
        # Slots older than the windows are never read again: the room's partition of the
        # table stays at most ~60 + 24 rows per sentiment.
        db.execute(
            "DELETE FROM sentiment_counts WHERE room=? AND grain='m' AND slot < ?", (room, minute - 60)
        )
        db.execute("DELETE FROM sentiment_counts WHERE room=? AND grain='h' AND slot < ?", (room, hour - 24))


def _counts(db: sqlite3.Connection, room: str, now_ms: int) -> SentimentCounts:
    found: dict[tuple[str, str], int] = {}
    for grain, floor in (("m", now_ms // MINUTE_MS - 59), ("h", now_ms // HOUR_MS - 23)):
        rows = db.execute(
            """SELECT sentiment, sum(n) FROM sentiment_counts WHERE room=? AND grain=? AND slot >= ?
               GROUP BY sentiment""",
            (room, grain, floor),
        ).fetchall()
        for sentiment, n in rows:
            found[(grain, str(sentiment))] = int(n)
    return SentimentCounts(
        found.get(("m", "bullish"), 0),
        found.get(("m", "bearish"), 0),
        found.get(("h", "bullish"), 0),
        found.get(("h", "bearish"), 0),
    )


def _select(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return db.execute(sql, params).fetchall()


def _write(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    with db:
        db.execute(sql, params)


class SqliteModes:
    """:class:`~chatsvc.store.base.RoomModeStore` on the SQLite file; mixed into SqliteStore."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError  # SqliteStore's

    async def get_room_mode(self, room: str) -> RoomMode:
        """The room's row, or the default."""
        rows = await self._run(
            _select, "SELECT slow_mode_seconds, surge FROM room_modes WHERE room=?", (room,)
        )
        return RoomMode(int(rows[0][0]), bool(rows[0][1])) if rows else RoomMode()

    async def set_slow_mode(self, room: str, seconds: int) -> None:
        """Upsert the slow mode, keeping the surge flag."""
        await self._run(
            _write,
            """INSERT INTO room_modes (room, slow_mode_seconds) VALUES (?,?)
               ON CONFLICT (room) DO UPDATE SET slow_mode_seconds = excluded.slow_mode_seconds""",
            (room, seconds),
        )

    async def set_surge(self, room: str, surge: bool) -> bool:
        """A conditional update: only the call that flips the flag gets True."""
        return await self._run(_set_surge, room, surge)

    async def add_sentiment(self, room: str, sentiment: str, at_ms: int) -> None:
        """One transaction: both slots counted, stale slots dropped."""
        await self._run(_add_sentiment, room, sentiment, at_ms)

    async def count_after(self, room: str, after_id: str, cap: int) -> int:
        """A bounded count on the primary key."""
        rows = await self._run(
            _select,
            "SELECT count(*) FROM (SELECT 1 FROM messages WHERE room=? AND id > ? LIMIT ?)",
            (room, after_id, cap),
        )
        return int(rows[0][0]) if rows else 0

    async def sentiment_counts(self, room: str, now_ms: int) -> SentimentCounts:
        """Two grouped slices of the room's rows."""
        return await self._run(_counts, room, now_ms)
