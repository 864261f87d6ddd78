"""The embedded history store: one SQLite file in ``CHATSVC_DATA_DIR``.

Good for one process or a few on one machine (WAL mode, busy timeout); production runs
ScyllaDB. The SQLite modules of chatsvc.store (``sqlite_*.py``: the schema in
``sqlite_schema.py``, one module per feature's tables) are the only ones that import sqlite3.

Every operation is one plain function run on one worker thread that owns the connection:
one thread round trip and one transaction per call. (aiosqlite, used before, makes a
round trip per statement, fetch and commit: three for an append, which took about twice
the CPU and wall time of one now; bench/README.md.) The event loop never waits on the
disk, and the single worker serialises transactions, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from chatsvc.errors import NotFound, StoreUnavailable
from chatsvc.model.ids import lowest_id_at
from chatsvc.model.messages import (
    HistoryPage,
    Message,
    Moderation,
    RoomEvent,
    RoomInfo,
    SessionRecord,
    StreamSlice,
    at_position,
)
from chatsvc.store import sqlite_schema
from chatsvc.store.base import (
    EVENT_RETENTION_SECONDS,
    decode_mentions,
    decode_reply,
    encode_mentions,
    encode_reply,
    event_of_row,
    marks_pending,
)
from chatsvc.store.sqlite_cleanup import SqliteCleanup
from chatsvc.store.sqlite_conversations import SqliteConversations
from chatsvc.store.sqlite_flags import SqliteFlags
from chatsvc.store.sqlite_modes import SqliteModes
from chatsvc.store.sqlite_reactions import SqliteReactions
from chatsvc.store.sqlite_relay import SqliteRelay
from chatsvc.store.sqlite_threads import SqliteThreads

#: Expired sessions and old room events are deleted at most this often (seconds).
PURGE_EVERY_SECONDS = 60.0

T = TypeVar("T")

_COLUMNS = (
    "id, room, user_id, user_name, text, created_at_ms, client_msg_id, edited_at_ms, deleted, kind, pos,"
    " reply_to, mentions, tickers, sentiment"
)
_EVENT_COLUMNS = "id, kind, message_id, payload, pos"


def _row(row: sqlite3.Row | tuple[object, ...]) -> Message:
    id_, room, user_id, user_name, text, created, client_msg_id, edited, deleted, kind, pos = tuple(row)[:11]
    reply, mentioned, tickers, sentiment = tuple(row)[11:15]
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
        pos=None if pos is None else int(str(pos)),
        reply_to=decode_reply(reply),
        mentions=decode_mentions(mentioned),
        tickers=decode_mentions(tickers),
        sentiment=None if sentiment is None else str(sentiment),
    )


class SqliteStore(
    SqliteCleanup,
    SqliteFlags,
    SqliteModes,
    SqliteReactions,
    SqliteThreads,
    SqliteRelay,
    SqliteConversations,
):
    """:class:`~chatsvc.store.base.MessageStore` on a local SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._db: sqlite3.Connection | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._purged_at = 0.0

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` on the worker thread; sqlite errors become StoreUnavailable."""
        db, worker = self._db, self._worker
        if db is None or worker is None:
            raise StoreUnavailable("message store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(worker, fn, db, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"message store error: {exc.__class__.__name__}") from exc

    async def open(self) -> None:
        """Open the database file (creating it and the schema if needed)."""
        if self._db is not None:
            return
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatsvc-sqlite")
        try:
            # Inside the try: an unusable data dir is a clean StoreUnavailable, not a traceback.
            self._db = await asyncio.get_running_loop().run_in_executor(
                worker, sqlite_schema.connect, self._path
            )
        except (sqlite3.Error, OSError) as exc:
            worker.shutdown(wait=False)
            raise StoreUnavailable(f"cannot open {self._path}: {exc}") from exc
        self._worker = worker

    async def aclose(self) -> None:
        """Close the database; idempotent."""
        db, self._db = self._db, None
        worker, self._worker = self._worker, None
        if db is not None and worker is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(worker, db.close)
            finally:
                worker.shutdown(wait=False)

    async def migrate(self) -> None:
        """Apply every migration newer than the file's ``user_version``."""
        await self._run(sqlite_schema.migrate)

    async def ping(self) -> None:
        """Read the schema (the file's first page: a damaged or replaced file shows); a
        failure names the file and SQLite's reason."""
        try:
            await self._run(_query, "SELECT count(*) FROM sqlite_master", ())
        except StoreUnavailable as exc:
            cause = exc.__cause__
            raise StoreUnavailable(f"{self._path}: {cause}" if cause is not None else exc.message) from exc

    async def append(self, message: Message) -> tuple[Message, bool]:
        """Insert unless the same client message was stored before."""
        return await self._run(_append, message)

    async def pending_notifications(self, limit: int) -> list[Message]:
        """Marked messages (PendingNotifications), oldest first; marks of gone messages dropped."""
        return await self._run(_pending, limit)

    async def clear_pending_notification(self, room: str, message_id: str) -> None:
        """Drop the mark."""
        await self._run(
            _write, "DELETE FROM notify_pending WHERE room=? AND message_id=?", (room, message_id)
        )

    async def history(self, room: str, *, before: str | None, limit: int) -> HistoryPage:
        """Newest first, strictly older than ``before``."""
        found = await self._run(
            _query,
            f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id < ? ORDER BY id DESC LIMIT ?",
            (room, before if before is not None else "\U0010ffff", limit + 1),
        )
        rows = [_row(r) for r in found]
        more = len(rows) > limit
        rows = rows[:limit]
        return HistoryPage(rows, rows[-1].id if more and rows else None)

    async def after(self, room: str, after_id: str, limit: int) -> list[Message]:
        """Oldest first, strictly newer than ``after_id``."""
        found = await self._run(
            _query,
            f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id > ? ORDER BY id ASC LIMIT ?",
            (room, after_id, limit),
        )
        return [_row(r) for r in found]

    async def get(self, room: str, message_id: str) -> Message | None:
        """One message by id."""
        found = await self._run(
            _query, f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id=?", (room, message_id)
        )
        return _row(found[0]) if found else None

    async def edit(
        self, room: str, message_id: str, text: str, at_ms: int, *, tickers: tuple[str, ...] | None = None
    ) -> Message:
        """Replace the text (and the cashtags, when given) of a live (not deleted) message."""
        return await self._run(
            _change,
            """UPDATE messages SET text=?, edited_at_ms=?, tickers=coalesce(?, tickers)
               WHERE room=? AND id=? AND deleted=0""",
            (text, at_ms, None if tickers is None else (encode_mentions(tickers) or "[]"), room, message_id),
            room,
            message_id,
        )

    async def delete(self, room: str, message_id: str, at_ms: int) -> Message:
        """Clear the text and mark the message deleted (kept as a tombstone in history)."""
        return await self._run(
            _change,
            "UPDATE messages SET text='', deleted=1, edited_at_ms=? WHERE room=? AND id=?",
            (at_ms, room, message_id),
            room,
            message_id,
        )

    async def mark_read(self, room: str, user_id: str, message_id: str) -> None:
        """Move the user's read marker forward (never back)."""
        await self._run(
            _write,
            """INSERT INTO read_markers (room, user_id, message_id) VALUES (?,?,?)
               ON CONFLICT (room, user_id) DO UPDATE SET message_id = excluded.message_id
               WHERE excluded.message_id > read_markers.message_id""",
            (room, user_id, message_id),
        )

    async def unread_count(self, room: str, user_id: str, cap: int) -> int:
        """Messages by others newer than the read marker (all of them without one), capped."""
        found = await self._run(
            _query,
            """SELECT count(*) FROM (
                   SELECT 1 FROM messages
                   WHERE room=? AND deleted=0 AND user_id != ? AND id > coalesce(
                       (SELECT message_id FROM read_markers WHERE room=? AND user_id=?), '')
                   LIMIT ?)""",
            (room, user_id, room, user_id, cap),
        )
        return int(found[0][0]) if found else 0

    async def list_rooms(self, *, after: str | None, limit: int) -> list[RoomInfo]:
        """Rooms in name order."""
        found = await self._run(
            _query,
            "SELECT name, created_at_ms, last_message_id FROM rooms WHERE name > ? ORDER BY name LIMIT ?",
            (after or "", limit),
        )
        return [RoomInfo(str(n), int(c), None if m is None else str(m)) for n, c, m in found]

    async def get_room(self, room: str) -> RoomInfo | None:
        """One room by name."""
        found = await self._run(
            _query, "SELECT name, created_at_ms, last_message_id FROM rooms WHERE name=?", (room,)
        )
        if not found:
            return None
        name, created, last = found[0]
        return RoomInfo(str(name), int(created), None if last is None else str(last))

    async def set_moderation(self, record: Moderation) -> None:
        """Upsert a ban or mute."""
        await self._run(
            _write,
            """INSERT INTO moderation (kind, room, user_id, until_ms, reason) VALUES (?,?,?,?,?)
               ON CONFLICT (kind, room, user_id) DO UPDATE
               SET until_ms = excluded.until_ms, reason = excluded.reason""",
            (record.kind, record.room, record.user_id, record.until_ms, record.reason),
        )

    async def clear_moderation(self, kind: str, room: str, user_id: str) -> None:
        """Delete a ban or mute."""
        await self._run(
            _write, "DELETE FROM moderation WHERE kind=? AND room=? AND user_id=?", (kind, room, user_id)
        )

    async def get_moderation(self, kind: str, room: str, user_id: str) -> Moderation | None:
        """One ban or mute."""
        found = await self._run(
            _query,
            "SELECT until_ms, reason FROM moderation WHERE kind=? AND room=? AND user_id=?",
            (kind, room, user_id),
        )
        if not found:
            return None
        until, reason = found[0]
        return Moderation(kind, room, user_id, None if until is None else int(until), str(reason))

    def _purge_due(self) -> float | None:
        """Now, if expired sessions and old room events are due to be dropped (once a minute)."""
        now = time.time()
        if now - self._purged_at < PURGE_EVERY_SECONDS:
            return None
        self._purged_at = now
        return now

    async def append_event(self, event: RoomEvent) -> RoomEvent:
        """Insert an edit/delete event at the room's next position (an id seen before keeps
        its first position)."""
        return await self._run(_append_event, event, self._purge_due())

    async def events_after(self, room: str, after_id: str, limit: int) -> list[RoomEvent]:
        """Oldest first, strictly newer than ``after_id``."""
        found = await self._run(
            _query,
            f"SELECT {_EVENT_COLUMNS} FROM room_events WHERE room=? AND id > ? ORDER BY id ASC LIMIT ?",
            (room, after_id, max(0, limit)),
        )
        return [event_of_row(room, r) for r in found]

    async def stream_epoch(self) -> str:
        """The random id written when the database was created (migration 4)."""
        found = await self._run(_query, "SELECT value FROM stream_meta WHERE key='epoch'", ())
        if not found:
            raise StoreUnavailable("message store has no stream epoch; run `chatsvc migrate`")
        return str(found[0][0])

    async def stream_after(self, room: str, pos: int, limit: int) -> StreamSlice:
        """Messages and events with positions above ``pos``, in position order."""
        return await self._run(_stream_after, room, pos, max(0, limit))

    async def save_session(self, record: SessionRecord) -> None:
        """Upsert the session row."""
        await self._run(
            _write,
            """INSERT INTO sessions (pid, user_id, data, expires_at_ms) VALUES (?,?,?,?)
               ON CONFLICT (pid) DO UPDATE SET user_id = excluded.user_id, data = excluded.data,
               expires_at_ms = excluded.expires_at_ms""",
            (record.pid, record.user_id, record.data, record.expires_at_ms),
            self._purge_due(),
        )

    async def get_session(self, pid: str) -> SessionRecord | None:
        """The row while unexpired (expired rows are purged later)."""
        found = await self._run(
            _query,
            "SELECT user_id, data, expires_at_ms FROM sessions WHERE pid=? AND expires_at_ms > ?",
            (pid, int(time.time() * 1000)),
        )
        if not found:
            return None
        user_id, data, expires = found[0]
        return SessionRecord(pid, str(user_id), str(data), int(expires))

    async def delete_session(self, pid: str) -> bool:
        """One use: only the call that deletes an unexpired row gets True."""
        deleted = await self._run(
            _write, "DELETE FROM sessions WHERE pid=? AND expires_at_ms > ?", (pid, int(time.time() * 1000))
        )
        return deleted == 1


# -- on the worker thread: each function is one transaction ---------------------------------


def _query(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return db.execute(sql, params).fetchall()  # a SELECT opens no transaction (legacy mode)


def _write(db: sqlite3.Connection, sql: str, params: tuple[Any, ...], purge_at: float | None = None) -> int:
    """One statement (and the purge, when due), committed; returns the rows it changed."""
    with db:
        changed = db.execute(sql, params).rowcount
        if purge_at is not None:
            db.execute("DELETE FROM sessions WHERE expires_at_ms <= ?", (int(purge_at * 1000),))
            _purge_events(db, lowest_id_at(int((purge_at - EVENT_RETENTION_SECONDS) * 1000)))
        return changed


def _purge_events(db: sqlite3.Connection, floor_id: str) -> None:
    """Drop events older than ``floor_id``; their rooms' stream floor rises past them, so a
    catch-up from before them is told to resync rather than answered without them."""
    db.execute(
        """UPDATE room_streams SET floor = max(floor, (
               SELECT max(pos) FROM room_events e WHERE e.room = room_streams.room AND e.id < ?))
           WHERE room IN (SELECT room FROM room_events WHERE id < ? AND pos IS NOT NULL)""",
        (floor_id, floor_id),
    )
    db.execute("DELETE FROM room_events WHERE id < ?", (floor_id,))


def _next_pos(db: sqlite3.Connection, room: str) -> int:
    """The room's next stream position, inside the caller's transaction."""
    row = db.execute(
        """INSERT INTO room_streams (room, head) VALUES (?, 1)
           ON CONFLICT (room) DO UPDATE SET head = head + 1 RETURNING head""",
        (room,),
    ).fetchone()
    return int(row[0])


def _given_pos(db: sqlite3.Connection, room: str, pos: int) -> int:
    """A position the record brought (cluster mode: its offset in the Kafka events topic),
    raising the room's head to it, inside the caller's transaction."""
    db.execute(
        """INSERT INTO room_streams (room, head) VALUES (?, ?)
           ON CONFLICT (room) DO UPDATE SET head = max(head, excluded.head)""",
        (room, pos),
    )
    return pos


def _append_event(db: sqlite3.Connection, event: RoomEvent, purge_at: float | None) -> RoomEvent:
    with db:
        cursor = db.execute(
            """INSERT INTO room_events (room, id, kind, message_id, payload) VALUES (?,?,?,?,?)
               ON CONFLICT DO NOTHING""",
            (event.room, event.id, event.kind, event.message_id, json.dumps(event.payload)),
        )
        if cursor.rowcount == 1:
            pos = _next_pos(db, event.room) if event.pos is None else _given_pos(db, event.room, event.pos)
            db.execute("UPDATE room_events SET pos=? WHERE room=? AND id=?", (pos, event.room, event.id))
            stored = replace(event, pos=pos)
        else:
            row = db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM room_events WHERE room=? AND id=?", (event.room, event.id)
            ).fetchone()
            stored = event_of_row(event.room, row) if row is not None else event
        if purge_at is not None:
            db.execute("DELETE FROM sessions WHERE expires_at_ms <= ?", (int(purge_at * 1000),))
            _purge_events(db, lowest_id_at(int((purge_at - EVENT_RETENTION_SECONDS) * 1000)))
        return stored


def _stream_after(db: sqlite3.Connection, room: str, pos: int, limit: int) -> StreamSlice:
    # Plain SELECTs on the one connection: no write can land between them.
    row = db.execute("SELECT head, floor FROM room_streams WHERE room=?", (room,)).fetchone()
    head, floor = (int(row[0]), int(row[1])) if row is not None else (0, 0)
    if pos < floor or pos > head:
        return StreamSlice([], False, head, covered=False)
    messages = db.execute(
        f"SELECT {_COLUMNS} FROM messages WHERE room=? AND pos > ? ORDER BY pos LIMIT ?",
        (room, pos, limit + 1),
    ).fetchall()
    events = db.execute(
        f"SELECT {_EVENT_COLUMNS} FROM room_events WHERE room=? AND pos > ? ORDER BY pos LIMIT ?",
        (room, pos, limit + 1),
    ).fetchall()
    records: list[Message | RoomEvent] = [_row(m) for m in messages]
    records.extend(event_of_row(room, e) for e in events)
    records.sort(key=lambda r: r.pos or 0)
    return StreamSlice(records[:limit], len(records) > limit, head)


def _pending(db: sqlite3.Connection, limit: int) -> list[Message]:
    with db:
        db.execute(
            """DELETE FROM notify_pending WHERE NOT EXISTS (SELECT 1 FROM messages m
               WHERE m.room = notify_pending.room AND m.id = notify_pending.message_id)"""
        )
    found = db.execute(
        f"""SELECT {", ".join("m." + c.strip() for c in _COLUMNS.split(","))}
            FROM notify_pending p JOIN messages m ON m.room = p.room AND m.id = p.message_id
            ORDER BY p.message_id LIMIT ?""",
        (limit,),
    ).fetchall()
    return [_row(r) for r in found]


def _append(db: sqlite3.Connection, message: Message) -> tuple[Message, bool]:
    with db:
        cursor = db.execute(
            f"INSERT INTO messages ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,NULL,?,?,?,?)"
            " ON CONFLICT DO NOTHING",
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
                encode_reply(message.reply_to),
                encode_mentions(message.mentions),
                encode_mentions(message.tickers),
                message.sentiment,
            ),
        )
        if cursor.rowcount == 0 and message.client_msg_id is not None:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND user_id=? AND client_msg_id=?",
                (message.room, message.user_id, message.client_msg_id),
            ).fetchone()
            if row is not None:
                return _row(row), False
            raise StoreUnavailable("message conflicted but could not be read back")
        if cursor.rowcount == 0:  # the same id twice: the stored one, at its position
            row = db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id=?", (message.room, message.id)
            ).fetchone()
            if row is None:
                raise StoreUnavailable("message conflicted but could not be read back")
            return _row(row), False
        pos = (
            _next_pos(db, message.room) if message.pos is None else _given_pos(db, message.room, message.pos)
        )
        db.execute("UPDATE messages SET pos=? WHERE room=? AND id=?", (pos, message.room, message.id))
        if marks_pending(message):  # in this transaction: no message without its mark
            db.execute(
                "INSERT INTO notify_pending (room, message_id) VALUES (?,?)", (message.room, message.id)
            )
        db.execute(
            """INSERT INTO rooms (name, created_at_ms, last_message_id) VALUES (?,?,?)
               ON CONFLICT (name) DO UPDATE SET last_message_id = excluded.last_message_id
               WHERE excluded.last_message_id > coalesce(rooms.last_message_id, '')""",
            (message.room, message.created_at_ms, message.id),
        )
        return at_position(message, pos), True


def _change(db: sqlite3.Connection, sql: str, params: tuple[Any, ...], room: str, message_id: str) -> Message:
    """An edit or delete of one message, committed; the message as it is now."""
    with db:
        if db.execute(sql, params).rowcount == 0:
            raise NotFound(f"no message {message_id} in {room}")
        row = db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id=?", (room, message_id)
        ).fetchone()
    if row is None:
        raise NotFound(f"no message {message_id} in {room}")
    return _row(row)
