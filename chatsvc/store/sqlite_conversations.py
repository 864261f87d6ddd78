"""The conversation part of :class:`~chatsvc.store.sqlite.SqliteStore` (issue 24): its
migration and its operations, each one transaction on the store's worker thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from chatsvc.model.rooms import Conversation, Member, Notification

T = TypeVar("T")

#: Schema version 5. Rooms without a ``conversations`` row are public, which is what every
#: room that existed before is: no data moves.
MIGRATION: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS conversations (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS dm_pairs (
        pair TEXT PRIMARY KEY,
        room TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS members (
        room TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        added_at_ms INTEGER NOT NULL,
        PRIMARY KEY (room, user_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id, room)",
    """CREATE TABLE IF NOT EXISTS joined_rooms (
        user_id TEXT NOT NULL,
        room TEXT NOT NULL,
        joined_at_ms INTEGER NOT NULL,
        PRIMARY KEY (user_id, room)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS blocks (
        blocker TEXT NOT NULL,
        blocked TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (blocker, blocked)
    ) WITHOUT ROWID""",
    # The outbox of offline notifications: the position is the rowid, never reused.
    """CREATE TABLE IF NOT EXISTS notifications (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        room TEXT NOT NULL,
        sender TEXT NOT NULL,
        preview TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        UNIQUE (user_id, message_id)
    )""",
)

_MEMBER_COLUMNS = "room, user_id, role, added_at_ms"


def _member(row: tuple[Any, ...]) -> Member:
    room, user_id, role, added = row
    return Member(str(room), str(user_id), str(role), int(added))


class SqliteConversations:
    """:class:`~chatsvc.store.base.ConversationStore` on the SQLite file; mixed into SqliteStore."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError  # SqliteStore's

    async def create_conversation(self, conversation: Conversation, members: list[Member]) -> None:
        """The record and the first members in one transaction."""
        await self._run(_create, conversation, members)

    async def get_conversation(self, room: str) -> Conversation | None:
        """The record, or None."""
        found = await self._run(
            _select,
            "SELECT name, kind, title, created_by, created_at_ms FROM conversations WHERE name=?",
            (room,),
        )
        if not found:
            return None
        name, kind, title, created_by, created = found[0]
        return Conversation(str(name), str(kind), str(title), str(created_by), int(created))

    async def find_dm(self, pair: str) -> str | None:
        """The pair's room, if claimed."""
        found = await self._run(_select, "SELECT room FROM dm_pairs WHERE pair=?", (pair,))
        return str(found[0][0]) if found else None

    async def claim_dm(self, pair: str, room: str) -> str:
        """Insert the pair unless present; the room it names either way."""
        return await self._run(_claim, pair, room)

    async def put_member(self, member: Member) -> None:
        """Upsert a membership."""
        await self._run(_put_members, [member])

    async def delete_member(self, room: str, user_id: str) -> None:
        """Delete a membership."""
        await self._run(_exec, "DELETE FROM members WHERE room=? AND user_id=?", (room, user_id))

    async def get_member(self, room: str, user_id: str) -> Member | None:
        """One membership, or None."""
        found = await self._run(
            _select, f"SELECT {_MEMBER_COLUMNS} FROM members WHERE room=? AND user_id=?", (room, user_id)
        )
        return _member(found[0]) if found else None

    async def list_members(self, room: str, *, after: str | None, limit: int) -> list[Member]:
        """Members by user id."""
        found = await self._run(
            _select,
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE room=? AND user_id > ? ORDER BY user_id LIMIT ?",
            (room, after or "", max(0, limit)),
        )
        return [_member(r) for r in found]

    async def count_members(self, room: str) -> int:
        """How many members."""
        found = await self._run(_select, "SELECT count(*) FROM members WHERE room=?", (room,))
        return int(found[0][0]) if found else 0

    async def rooms_of(self, user_id: str, *, limit: int) -> list[Member]:
        """Memberships of a user by room name (the ``members_by_user`` index)."""
        found = await self._run(
            _select,
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE user_id=? ORDER BY room LIMIT ?",
            (user_id, max(0, limit)),
        )
        return [_member(r) for r in found]

    async def put_joined(self, user_id: str, room: str, at_ms: int) -> None:
        """Insert unless present."""
        await self._run(
            _exec,
            "INSERT INTO joined_rooms (user_id, room, joined_at_ms) VALUES (?,?,?) ON CONFLICT DO NOTHING",
            (user_id, room, at_ms),
        )

    async def delete_joined(self, user_id: str, room: str) -> None:
        """Delete if present."""
        await self._run(_exec, "DELETE FROM joined_rooms WHERE user_id=? AND room=?", (user_id, room))

    async def joined_rooms(self, user_id: str, *, limit: int) -> list[str]:
        """Public rooms of a user by name."""
        found = await self._run(
            _select,
            "SELECT room FROM joined_rooms WHERE user_id=? ORDER BY room LIMIT ?",
            (user_id, max(0, limit)),
        )
        return [str(r[0]) for r in found]

    async def put_block(self, blocker: str, blocked: str, at_ms: int) -> None:
        """Insert unless present."""
        await self._run(
            _exec,
            "INSERT INTO blocks (blocker, blocked, at_ms) VALUES (?,?,?) ON CONFLICT DO NOTHING",
            (blocker, blocked, at_ms),
        )

    async def delete_block(self, blocker: str, blocked: str) -> None:
        """Delete if present."""
        await self._run(_exec, "DELETE FROM blocks WHERE blocker=? AND blocked=?", (blocker, blocked))

    async def blocks_of(self, blocker: str, *, limit: int) -> list[str]:
        """Whom a user blocks, by id."""
        found = await self._run(
            _select,
            "SELECT blocked FROM blocks WHERE blocker=? ORDER BY blocked LIMIT ?",
            (blocker, max(0, limit)),
        )
        return [str(r[0]) for r in found]

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        """One row lookup."""
        found = await self._run(
            _select, "SELECT 1 FROM blocks WHERE blocker=? AND blocked=?", (blocker, blocked)
        )
        return bool(found)

    async def add_notification(self, notification: Notification) -> bool:
        """Insert unless ``(user_id, message_id)`` is there (the unique key decides)."""
        n = notification
        return await self._run(
            _changed,
            """INSERT INTO notifications (user_id, message_id, room, sender, preview, kind, created_at_ms)
               VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING""",
            (n.user_id, n.message_id, n.room, n.sender, n.preview, n.kind, n.created_at_ms),
        )

    async def notifications_done(self, room: str, message_id: str) -> bool:
        """NotifiedMessages: one row lookup."""
        found = await self._run(
            _select, "SELECT 1 FROM notify_done WHERE room=? AND message_id=?", (room, message_id)
        )
        return bool(found)

    async def mark_notifications_done(self, room: str, message_id: str) -> None:
        """NotifiedMessages: insert the mark unless there."""
        await self._run(
            _changed,
            "INSERT INTO notify_done (room, message_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (room, message_id),
        )

    async def notifications_after(self, position: int, limit: int) -> list[tuple[int, Notification]]:
        """By position."""
        found = await self._run(
            _select,
            """SELECT position, user_id, room, message_id, sender, preview, kind, created_at_ms
               FROM notifications WHERE position > ? ORDER BY position LIMIT ?""",
            (position, max(0, limit)),
        )
        return [
            (int(p), Notification(str(u), str(r), str(m), str(s), str(t), str(k), int(c)))
            for p, u, r, m, s, t, k, c in found
        ]


# -- on the worker thread ----------------------------------------------------------------


def _select(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return db.execute(sql, params).fetchall()


def _exec(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    with db:
        db.execute(sql, params)


def _changed(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> bool:
    with db:
        return db.execute(sql, params).rowcount == 1


def _upsert(db: sqlite3.Connection, members: list[Member]) -> None:
    db.executemany(
        f"""INSERT INTO members ({_MEMBER_COLUMNS}) VALUES (?,?,?,?)
            ON CONFLICT (room, user_id) DO UPDATE SET role = excluded.role""",
        [(m.room, m.user_id, m.role, m.added_at_ms) for m in members],
    )


def _put_members(db: sqlite3.Connection, members: list[Member]) -> None:
    with db:
        _upsert(db, members)


def _create(db: sqlite3.Connection, conversation: Conversation, members: list[Member]) -> None:
    with db:
        db.execute(
            """INSERT INTO conversations (name, kind, title, created_by, created_at_ms)
               VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING""",
            (
                conversation.name,
                conversation.kind,
                conversation.title,
                conversation.created_by,
                conversation.created_at_ms,
            ),
        )
        _upsert(db, members)


def _claim(db: sqlite3.Connection, pair: str, room: str) -> str:
    with db:
        db.execute("INSERT INTO dm_pairs (pair, room) VALUES (?,?) ON CONFLICT DO NOTHING", (pair, room))
        row = db.execute("SELECT room FROM dm_pairs WHERE pair=?", (pair,)).fetchone()
    return str(row[0]) if row is not None else room
