"""SqliteStore behaviour that follows from sharing one connection between coroutines."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatsvc.errors import StoreUnavailable
from chatsvc.model.ids import MessageIdGenerator, id_at, lowest_id_at
from chatsvc.model.messages import Message, RoomEvent
from chatsvc.store.base import EVENT_RETENTION_SECONDS
from chatsvc.store.sqlite import SqliteStore
from chatsvc.store.sqlite_schema import MIGRATIONS

IDS = MessageIdGenerator()


def message(user: str, client_msg_id: str | None = None) -> Message:
    return Message(IDS.new(), "race", user, user.title(), "hello", 1_700_000_000_000, client_msg_id)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "race.sqlite3")
    await s.open()
    await s.migrate()
    yield s
    await s.aclose()


async def test_a_duplicate_retry_never_undoes_a_concurrent_append(store: SqliteStore) -> None:
    """Regression: the duplicate path's rollback used to discard other coroutines' inserts."""
    await store.append(message("alice", "retry-me"))
    for _ in range(20):
        results = await asyncio.gather(
            store.append(message("alice", "retry-me")),
            store.append(message("bob")),
            store.append(message("carol")),
        )
        assert [is_new for _, is_new in results] == [False, True, True]
        for stored, _ in results:
            assert await store.get("race", stored.id) == stored


async def test_concurrent_retries_store_one_message(store: SqliteStore) -> None:
    results = await asyncio.gather(*(store.append(message("alice", "once")) for _ in range(10)))
    assert sum(is_new for _, is_new in results) == 1
    assert len({stored.id for stored, _ in results}) == 1
    assert len((await store.history("race", before=None, limit=100)).messages) == 1


async def test_closed_store_is_unavailable(store: SqliteStore) -> None:
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_migration_gives_existing_rows_positions_in_id_order(tmp_path: Path) -> None:
    """A version 3 database (before positions): rows get positions in id order, messages
    and events merged, each room its own stream; new records continue from there."""
    path = tmp_path / "v3.sqlite3"
    db = sqlite3.connect(path)
    with db:
        for version in (1, 2, 3):
            for statement in MIGRATIONS[version]:
                db.execute(statement)
        db.execute("PRAGMA user_version=3")
        ids = [IDS.new() for _ in range(5)]
        for i in (0, 1, 3):
            db.execute(
                "INSERT INTO messages (room, id, user_id, user_name, text, created_at_ms)"
                " VALUES (?,?,?,?,?,?)",
                ("a", ids[i], "u", "U", f"m{i}", 1_700_000_000_000),
            )
        db.execute(
            "INSERT INTO room_events (room, id, kind, message_id, payload) VALUES (?,?,?,?,?)",
            ("a", ids[2], "edited", ids[0], "{}"),
        )
        db.execute(
            "INSERT INTO messages (room, id, user_id, user_name, text, created_at_ms) VALUES (?,?,?,?,?,?)",
            ("b", ids[4], "u", "U", "other room", 1_700_000_000_000),
        )
    db.close()
    store = SqliteStore(path)
    await store.open()
    try:
        await store.migrate()
        await store.migrate()  # harmless twice
        stream = await store.stream_after("a", 0, 10)
        assert [(r.id, r.pos) for r in stream.records] == [(ids[0], 1), (ids[1], 2), (ids[2], 3), (ids[3], 4)]
        assert stream.covered and stream.head == 4
        assert [r.pos for r in (await store.stream_after("b", 0, 10)).records] == [1]
        new, _ = await store.append(Message(IDS.new(), "a", "u", "U", "new", 1_700_000_000_001))
        assert new.pos == 5
        assert re.fullmatch(r"[0-9a-f]{16}", await store.stream_epoch())
    finally:
        await store.aclose()


async def test_purged_events_raise_the_floor(store: SqliteStore) -> None:
    """Events older than the retention are purged; a catch-up from before them is told to
    resync instead of being answered without them."""
    kept, _ = await store.append(message("alice"))
    old_id = id_at(int((time.time() - EVENT_RETENTION_SECONDS - 60) * 1000))
    old = await store.append_event(RoomEvent(old_id, "race", "edited", kept.id, {"id": kept.id}))
    assert old.pos == 2
    # The first append_event of a store purges at once: the old event is gone.
    assert await store.events_after("race", lowest_id_at(0), 10) == []
    later, _ = await store.append(message("bob"))
    assert not (await store.stream_after("race", 1, 10)).covered
    assert not (await store.stream_after("race", 0, 10)).covered
    fine = await store.stream_after("race", 2, 10)
    assert fine.covered and [r.pos for r in fine.records] == [later.pos] == [3]
