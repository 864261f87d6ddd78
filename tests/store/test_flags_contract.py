"""The spam-flag store contract (issue 25): SQLite, the real CQL node, and memory."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from chatsvc.model.ids import id_at
from chatsvc.model.messages import Flag
from chatsvc.store.base import FLAG_RETENTION_SECONDS, MessageStore
from chatsvc.store.memory import MemoryStore
from chatsvc.store.sqlite import SqliteStore

NOW_MS = int(time.time() * 1000)
DAY_MS = 24 * 3600 * 1000


def flag(room: str, at_ms: int, rule: str = "links", *, user: str = "spammer") -> Flag:
    return Flag(id_at(at_ms), room, user, user.title(), rule, "rejected", f"buy at {at_ms}", "", at_ms)


async def _contract(store: MessageStore) -> None:
    a, b = f"room-{uuid.uuid4().hex[:12]}", f"room-{uuid.uuid4().hex[:12]}"
    # Across days (the CQL tables are partitioned by day) and two rooms.
    flags = [
        flag(a, NOW_MS - 3 * DAY_MS - 5, "duplicate"),
        flag(b, NOW_MS - 2 * DAY_MS),
        flag(a, NOW_MS - DAY_MS),
        flag(a, NOW_MS - 2000, "blocklist"),
        flag(b, NOW_MS - 1000, "mentions"),
    ]
    for f in flags:
        await store.add_flag(f)
    await store.add_flag(flags[0])  # again: no change
    masked = Flag(
        id_at(NOW_MS - 500), a, "u2", "U2", "blocklist", "masked", "you ***", id_at(NOW_MS - 500), NOW_MS
    )
    await store.add_flag(masked)
    of_a = [masked, flags[3], flags[2], flags[0]]
    assert await store.list_flags(a, before=None, limit=10) == of_a
    assert await store.list_flags(b, before=None, limit=10) == [flags[4], flags[1]]
    # Pages: newest first, each after the previous page's last id.
    first = await store.list_flags(a, before=None, limit=2)
    assert first == of_a[:2]
    assert await store.list_flags(a, before=first[-1].id, limit=2) == of_a[2:]
    assert await store.list_flags(a, before=of_a[-1].id, limit=2) == []
    # Every room: newest first across rooms (the keyspace is shared: look at these rooms only).
    everything = [f for f in await store.list_flags(None, before=None, limit=1000) if f.room in {a, b}]
    assert everything == sorted([*flags, masked], key=lambda f: f.id, reverse=True)
    older = await store.list_flags(None, before=flags[2].id, limit=1000)
    assert [f for f in older if f.room in {a, b}] == [flags[1], flags[0]]
    assert await store.list_flags(f"room-{uuid.uuid4().hex[:12]}", before=None, limit=5) == []


async def test_flags_list_by_room_and_everywhere_newest_first(store: MessageStore) -> None:
    await _contract(store)


async def test_memory_store_keeps_the_contract() -> None:
    store = MemoryStore()
    await store.open()
    await _contract(store)


async def test_sqlite_drops_flags_past_the_retention(tmp_path: Path) -> None:
    """(CQL expires them with the tables' default_time_to_live.)"""
    store = SqliteStore(tmp_path / "flags.sqlite3")
    await store.open()
    await store.migrate()
    try:
        room = f"room-{uuid.uuid4().hex[:12]}"
        old = flag(room, NOW_MS - FLAG_RETENTION_SECONDS * 1000 - DAY_MS)
        await store.add_flag(old)
        assert await store.list_flags(room, before=None, limit=5) == [old]
        new = flag(room, NOW_MS)
        await store.add_flag(new)
        assert await store.list_flags(room, before=None, limit=5) == [new]
    finally:
        await store.aclose()
