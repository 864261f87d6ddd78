"""The notification relay's state in :class:`~chatsvc.store.sqlite.SqliteStore` (issue 24):
one row per relay scope (the Kafka topic), updated in a transaction on the store's worker
thread. A SQLite file has one writer process, yet the lease is kept as in ScyllaDB so a
restarted process (a new owner) waits out its predecessor's lease the same way."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from chatsvc.store.base import LeaseTaken

T = TypeVar("T")

#: Schema version 9: where each relay is in the outbox, and who relays it until when.
MIGRATION: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS notification_relay (
        scope TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        owner TEXT,
        lease_until_ms INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
)


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteRelay:
    """:class:`~chatsvc.store.base.NotificationRelayState` on the SQLite file; mixed into SqliteStore."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError  # SqliteStore's

    async def start_relay(self, scope: str) -> None:
        """Insert the scope at the outbox's last position unless it is there."""
        await self._run(_start, scope)

    async def take_relay(self, scope: str, owner: str, lease_seconds: int) -> LeaseTaken:
        """Renew one's own lease, or take a free or lapsed one."""
        return await self._run(_take, scope, owner, lease_seconds)

    async def relay_position(self, scope: str) -> int:
        """0 for a scope never started."""
        return await self._run(_position, scope)

    async def record_relayed(self, scope: str, owner: str, position: int) -> bool:
        """Only the holder of a live lease moves the position."""
        return await self._run(_record, scope, owner, position)

    async def release_relay(self, scope: str, owner: str) -> None:
        """Free the lease if ``owner`` holds it."""
        await self._run(_release, scope, owner)


# -- on the worker thread ----------------------------------------------------------------


def _start(db: sqlite3.Connection, scope: str) -> None:
    with db:
        db.execute(
            """INSERT OR IGNORE INTO notification_relay (scope, position)
               VALUES (?, (SELECT coalesce(max(position), 0) FROM notifications))""",
            (scope,),
        )


def _take(db: sqlite3.Connection, scope: str, owner: str, lease_seconds: int) -> LeaseTaken:
    now = _now_ms()
    with db:
        db.execute("INSERT OR IGNORE INTO notification_relay (scope, position) VALUES (?, 0)", (scope,))
        held = db.execute("SELECT owner FROM notification_relay WHERE scope = ?", (scope,)).fetchone()
        taken = db.execute(
            """UPDATE notification_relay SET owner = ?, lease_until_ms = ?
               WHERE scope = ? AND (owner IS NULL OR owner = ? OR lease_until_ms <= ?)""",
            (owner, now + lease_seconds * 1000, scope, owner, now),
        ).rowcount
    if taken != 1:
        return None
    return "renewed" if held is not None and held[0] == owner else "taken"


def _position(db: sqlite3.Connection, scope: str) -> int:
    row = db.execute("SELECT position FROM notification_relay WHERE scope = ?", (scope,)).fetchone()
    return 0 if row is None else int(row[0])


def _record(db: sqlite3.Connection, scope: str, owner: str, position: int) -> bool:
    with db:
        moved = db.execute(
            """UPDATE notification_relay SET position = ?
               WHERE scope = ? AND owner = ? AND lease_until_ms > ?""",
            (position, scope, owner, _now_ms()),
        ).rowcount
    return moved == 1


def _release(db: sqlite3.Connection, scope: str, owner: str) -> None:
    with db:
        db.execute(
            "UPDATE notification_relay SET owner = NULL, lease_until_ms = 0 WHERE scope = ? AND owner = ?",
            (scope, owner),
        )
