"""The embedded history store: one SQLite file in ``CHATSVC_DATA_DIR`` (aiosqlite).

Good for one process or a few on one machine (WAL mode, busy timeout); production runs
ScyllaDB. The only module that imports aiosqlite.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from chatsvc.chat.ids import lowest_id_at
from chatsvc.errors import NotFound, StoreUnavailable
from chatsvc.store.base import (
    EVENT_RETENTION_SECONDS,
    HistoryPage,
    Message,
    Moderation,
    RoomEvent,
    RoomInfo,
    SessionRecord,
)

SCHEMA_VERSION = 3
#: Expired sessions and old room events are deleted at most this often (seconds).
PURGE_EVERY_SECONDS = 60.0

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS messages (
            room TEXT NOT NULL,
            id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            user_name TEXT NOT NULL,
            text TEXT NOT NULL,
            client_msg_id TEXT,
            created_at_ms INTEGER NOT NULL,
            edited_at_ms INTEGER,
            deleted INTEGER NOT NULL DEFAULT 0,
            kind TEXT NOT NULL DEFAULT 'user',
            PRIMARY KEY (room, id)
        ) WITHOUT ROWID""",
        """CREATE UNIQUE INDEX IF NOT EXISTS messages_client_msg_id
            ON messages (room, user_id, client_msg_id) WHERE client_msg_id IS NOT NULL""",
        """CREATE TABLE IF NOT EXISTS read_markers (
            room TEXT NOT NULL,
            user_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            PRIMARY KEY (room, user_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS rooms (
            name TEXT PRIMARY KEY,
            created_at_ms INTEGER NOT NULL,
            last_message_id TEXT
        ) WITHOUT ROWID""",
    ),
    2: (
        """CREATE TABLE IF NOT EXISTS moderation (
            kind TEXT NOT NULL,
            room TEXT NOT NULL,
            user_id TEXT NOT NULL,
            until_ms INTEGER,
            reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (kind, room, user_id)
        ) WITHOUT ROWID""",
    ),
    3: (
        """CREATE TABLE IF NOT EXISTS room_events (
            room TEXT NOT NULL,
            id TEXT NOT NULL,
            kind TEXT NOT NULL,
            message_id TEXT NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (room, id)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS sessions (
            pid TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            data TEXT NOT NULL,
            expires_at_ms INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at_ms)",
    ),
}

_COLUMNS = "id, room, user_id, user_name, text, created_at_ms, client_msg_id, edited_at_ms, deleted, kind"


def _row(row: sqlite3.Row | tuple[object, ...]) -> Message:
    (id_, room, user_id, user_name, text, created, client_msg_id, edited, deleted, kind) = tuple(row)
    return Message(
        id=str(id_),
        room=str(room),
        user_id=str(user_id),
        user_name=str(user_name),
        text=str(text),
        created_at_ms=int(created),
        client_msg_id=None if client_msg_id is None else str(client_msg_id),
        edited_at_ms=None if edited is None else int(edited),
        deleted=bool(deleted),
        kind=str(kind),
    )


class SqliteStore:
    """:class:`~chatsvc.store.base.MessageStore` on a local SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._db: aiosqlite.Connection | None = None
        # One connection means one transaction: without this lock a coroutine's rollback
        # (or commit) would also undo (or commit) another coroutine's half-done writes.
        self._lock = asyncio.Lock()
        self._purged_at = 0.0

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            if self._db is None:
                raise StoreUnavailable("message store is not open")
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"message store error: {exc.__class__.__name__}") from exc

    async def open(self) -> None:
        """Open the database file (creating it and the schema if needed)."""
        if self._db is not None:
            return
        try:
            # Inside the try: an unusable data dir is a clean StoreUnavailable, not a traceback.
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self._path, timeout=5.0)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open {self._path}: {exc}") from exc
        self._db = db

    async def aclose(self) -> None:
        """Close the database; idempotent."""
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def migrate(self) -> None:
        """Apply every migration newer than the file's ``user_version``."""
        async with self._guard() as db:
            cursor = await db.execute("PRAGMA user_version")
            row = await cursor.fetchone()
            current = int(row[0]) if row else 0
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version={version}")
            await db.commit()

    async def ping(self) -> None:
        """Run a trivial query."""
        async with self._guard() as db:
            await db.execute("SELECT 1")

    async def append(self, message: Message) -> tuple[Message, bool]:
        """Insert unless the same client message was stored before."""
        async with self._guard() as db:
            cursor = await db.execute(
                f"INSERT INTO messages ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (
                    message.id,
                    message.room,
                    message.user_id,
                    message.user_name,
                    message.text,
                    message.created_at_ms,
                    message.client_msg_id,
                    message.edited_at_ms,
                    int(message.deleted),
                    message.kind,
                ),
            )
            if cursor.rowcount == 0 and message.client_msg_id is not None:
                await db.rollback()
                found = await db.execute(
                    f"SELECT {_COLUMNS} FROM messages WHERE room=? AND user_id=? AND client_msg_id=?",
                    (message.room, message.user_id, message.client_msg_id),
                )
                row = await found.fetchone()
                if row is not None:
                    return _row(row), False
                raise StoreUnavailable("message conflicted but could not be read back")
            await db.execute(
                """INSERT INTO rooms (name, created_at_ms, last_message_id) VALUES (?,?,?)
                   ON CONFLICT (name) DO UPDATE SET last_message_id = excluded.last_message_id
                   WHERE excluded.last_message_id > coalesce(rooms.last_message_id, '')""",
                (message.room, message.created_at_ms, message.id),
            )
            await db.commit()
            return message, True

    async def history(self, room: str, *, before: str | None, limit: int) -> HistoryPage:
        """Newest first, strictly older than ``before``."""
        async with self._guard() as db:
            cursor = await db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id < ? ORDER BY id DESC LIMIT ?",
                (room, before if before is not None else "\U0010ffff", limit + 1),
            )
            rows = [_row(r) for r in await cursor.fetchall()]
        more = len(rows) > limit
        rows = rows[:limit]
        return HistoryPage(rows, rows[-1].id if more and rows else None)

    async def after(self, room: str, after_id: str, limit: int) -> list[Message]:
        """Oldest first, strictly newer than ``after_id``."""
        async with self._guard() as db:
            cursor = await db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id > ? ORDER BY id ASC LIMIT ?",
                (room, after_id, limit),
            )
            return [_row(r) for r in await cursor.fetchall()]

    async def get(self, room: str, message_id: str) -> Message | None:
        """One message by id."""
        async with self._guard() as db:
            cursor = await db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id=?", (room, message_id)
            )
            row = await cursor.fetchone()
            return _row(row) if row is not None else None

    async def edit(self, room: str, message_id: str, text: str, at_ms: int) -> Message:
        """Replace the text of a live (not deleted) message."""
        async with self._guard() as db:
            cursor = await db.execute(
                "UPDATE messages SET text=?, edited_at_ms=? WHERE room=? AND id=? AND deleted=0",
                (text, at_ms, room, message_id),
            )
            await db.commit()
            if cursor.rowcount == 0:
                raise NotFound(f"no message {message_id} in {room}")
        updated = await self.get(room, message_id)
        if updated is None:
            raise NotFound(f"no message {message_id} in {room}")
        return updated

    async def delete(self, room: str, message_id: str, at_ms: int) -> Message:
        """Clear the text and mark the message deleted (kept as a tombstone in history)."""
        async with self._guard() as db:
            cursor = await db.execute(
                "UPDATE messages SET text='', deleted=1, edited_at_ms=? WHERE room=? AND id=?",
                (at_ms, room, message_id),
            )
            await db.commit()
            if cursor.rowcount == 0:
                raise NotFound(f"no message {message_id} in {room}")
        deleted = await self.get(room, message_id)
        if deleted is None:
            raise NotFound(f"no message {message_id} in {room}")
        return deleted

    async def mark_read(self, room: str, user_id: str, message_id: str) -> None:
        """Move the user's read marker forward (never back)."""
        async with self._guard() as db:
            await db.execute(
                """INSERT INTO read_markers (room, user_id, message_id) VALUES (?,?,?)
                   ON CONFLICT (room, user_id) DO UPDATE SET message_id = excluded.message_id
                   WHERE excluded.message_id > read_markers.message_id""",
                (room, user_id, message_id),
            )
            await db.commit()

    async def unread_count(self, room: str, user_id: str, cap: int) -> int:
        """Messages by others newer than the read marker (all of them without one), capped."""
        async with self._guard() as db:
            cursor = await db.execute(
                """SELECT count(*) FROM (
                       SELECT 1 FROM messages
                       WHERE room=? AND deleted=0 AND user_id != ? AND id > coalesce(
                           (SELECT message_id FROM read_markers WHERE room=? AND user_id=?), '')
                       LIMIT ?)""",
                (room, user_id, room, user_id, cap),
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

    async def list_rooms(self, *, after: str | None, limit: int) -> list[RoomInfo]:
        """Rooms in name order."""
        async with self._guard() as db:
            cursor = await db.execute(
                "SELECT name, created_at_ms, last_message_id FROM rooms WHERE name > ? ORDER BY name LIMIT ?",
                (after or "", limit),
            )
            return [
                RoomInfo(str(n), int(c), None if m is None else str(m)) for n, c, m in await cursor.fetchall()
            ]

    async def get_room(self, room: str) -> RoomInfo | None:
        """One room by name."""
        async with self._guard() as db:
            cursor = await db.execute(
                "SELECT name, created_at_ms, last_message_id FROM rooms WHERE name=?", (room,)
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            return RoomInfo(str(row[0]), int(row[1]), None if row[2] is None else str(row[2]))

    async def set_moderation(self, record: Moderation) -> None:
        """Upsert a ban or mute."""
        async with self._guard() as db:
            await db.execute(
                """INSERT INTO moderation (kind, room, user_id, until_ms, reason) VALUES (?,?,?,?,?)
                   ON CONFLICT (kind, room, user_id) DO UPDATE
                   SET until_ms = excluded.until_ms, reason = excluded.reason""",
                (record.kind, record.room, record.user_id, record.until_ms, record.reason),
            )
            await db.commit()

    async def clear_moderation(self, kind: str, room: str, user_id: str) -> None:
        """Delete a ban or mute."""
        async with self._guard() as db:
            await db.execute(
                "DELETE FROM moderation WHERE kind=? AND room=? AND user_id=?", (kind, room, user_id)
            )
            await db.commit()

    async def get_moderation(self, kind: str, room: str, user_id: str) -> Moderation | None:
        """One ban or mute."""
        async with self._guard() as db:
            cursor = await db.execute(
                "SELECT until_ms, reason FROM moderation WHERE kind=? AND room=? AND user_id=?",
                (kind, room, user_id),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        return Moderation(kind, room, user_id, None if row[0] is None else int(row[0]), str(row[1]))

    async def _purge(self, db: aiosqlite.Connection) -> None:
        """Drop expired sessions and room events past retention (at most once a minute)."""
        now = time.time()
        if now - self._purged_at < PURGE_EVERY_SECONDS:
            return
        self._purged_at = now
        await db.execute("DELETE FROM sessions WHERE expires_at_ms <= ?", (int(now * 1000),))
        floor = lowest_id_at(int((now - EVENT_RETENTION_SECONDS) * 1000))
        await db.execute("DELETE FROM room_events WHERE id < ?", (floor,))

    async def append_event(self, event: RoomEvent) -> None:
        """Insert an edit/delete event (an id seen before is ignored)."""
        async with self._guard() as db:
            await db.execute(
                """INSERT INTO room_events (room, id, kind, message_id, payload) VALUES (?,?,?,?,?)
                   ON CONFLICT DO NOTHING""",
                (event.room, event.id, event.kind, event.message_id, json.dumps(event.payload)),
            )
            await self._purge(db)
            await db.commit()

    async def events_after(self, room: str, after_id: str, limit: int) -> list[RoomEvent]:
        """Oldest first, strictly newer than ``after_id``."""
        async with self._guard() as db:
            cursor = await db.execute(
                """SELECT id, kind, message_id, payload FROM room_events
                   WHERE room=? AND id > ? ORDER BY id ASC LIMIT ?""",
                (room, after_id, max(0, limit)),
            )
            rows = await cursor.fetchall()
        return [RoomEvent(str(i), room, str(k), str(m), json.loads(str(p))) for i, k, m, p in rows]

    async def save_session(self, record: SessionRecord) -> None:
        """Upsert the session row."""
        async with self._guard() as db:
            await db.execute(
                """INSERT INTO sessions (pid, user_id, data, expires_at_ms) VALUES (?,?,?,?)
                   ON CONFLICT (pid) DO UPDATE SET user_id = excluded.user_id, data = excluded.data,
                   expires_at_ms = excluded.expires_at_ms""",
                (record.pid, record.user_id, record.data, record.expires_at_ms),
            )
            await self._purge(db)
            await db.commit()

    async def get_session(self, pid: str) -> SessionRecord | None:
        """The row while unexpired (expired rows are purged later)."""
        async with self._guard() as db:
            cursor = await db.execute(
                "SELECT user_id, data, expires_at_ms FROM sessions WHERE pid=? AND expires_at_ms > ?",
                (pid, int(time.time() * 1000)),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        return SessionRecord(pid, str(row[0]), str(row[1]), int(row[2]))

    async def delete_session(self, pid: str) -> bool:
        """One use: only the call that deletes an unexpired row gets True."""
        async with self._guard() as db:
            cursor = await db.execute(
                "DELETE FROM sessions WHERE pid=? AND expires_at_ms > ?", (pid, int(time.time() * 1000))
            )
            await db.commit()
            return cursor.rowcount == 1
