"""The conversation part of the store contract (issue 24) on all three stores: SQLite, the
real CQL node, and memory."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from chatsvc.model.rooms import DIRECT, MEMBER, MODERATOR, OWNER, PRIVATE, Conversation, Member, dm_pair
from chatsvc.store.base import MessageStore
from chatsvc.store.memory import MemoryStore
from tests.store.conftest import StoreSpec


def _name(prefix: str = "priv:") -> str:
    return prefix + uuid.uuid4().hex


def _user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


async def test_create_and_read_a_conversation(any_store: MessageStore) -> None:
    room, owner, other = _name(), _user(), _user()
    conversation = Conversation(room, PRIVATE, "Club", owner, 1_700_000_000_000)
    members = [Member(room, owner, OWNER, 1), Member(room, other, MEMBER, 2)]
    await any_store.create_conversation(conversation, members)

    assert await any_store.get_conversation(room) == conversation
    assert await any_store.get_conversation(_name()) is None
    assert await any_store.get_member(room, owner) == Member(room, owner, OWNER, 1)
    assert await any_store.get_member(room, _user()) is None
    assert await any_store.count_members(room) == 2
    listed = await any_store.list_members(room, after=None, limit=10)
    assert listed == sorted(members, key=lambda m: m.user_id)
    assert await any_store.rooms_of(other, limit=10) == [Member(room, other, MEMBER, 2)]


async def test_members_page_by_user_id_and_rooms_by_user(any_store: MessageStore) -> None:
    room = _name()
    users = sorted(_user() for _ in range(5))
    for i, user in enumerate(users):
        await any_store.put_member(Member(room, user, MEMBER, i))
    first = await any_store.list_members(room, after=None, limit=2)
    assert [m.user_id for m in first] == users[:2]
    rest = await any_store.list_members(room, after=first[-1].user_id, limit=10)
    assert [m.user_id for m in rest] == users[2:]

    user = _user()
    rooms = sorted(_name() for _ in range(3))
    for room_name in rooms:
        await any_store.put_member(Member(room_name, user, MEMBER, 0))
    assert [m.room for m in await any_store.rooms_of(user, limit=10)] == rooms
    assert len(await any_store.rooms_of(user, limit=2)) == 2


async def test_role_change_and_removal_show_both_ways(any_store: MessageStore) -> None:
    room, user = _name(), _user()
    await any_store.put_member(Member(room, user, MEMBER, 5))
    await any_store.put_member(Member(room, user, MODERATOR, 5))
    assert await any_store.get_member(room, user) == Member(room, user, MODERATOR, 5)
    assert await any_store.rooms_of(user, limit=5) == [Member(room, user, MODERATOR, 5)]
    assert await any_store.count_members(room) == 1

    await any_store.delete_member(room, user)
    await any_store.delete_member(room, user)  # no error the second time
    assert await any_store.get_member(room, user) is None
    assert await any_store.rooms_of(user, limit=5) == []
    assert await any_store.count_members(room) == 0
    assert await any_store.list_members(room, after=None, limit=5) == []


async def test_a_pair_has_one_direct_room_whoever_claims_first(any_store: MessageStore) -> None:
    a, b = _user(), _user()
    pair = dm_pair(a, b)
    assert pair == dm_pair(b, a)
    assert await any_store.find_dm(pair) is None
    first, second = _name("dm:"), _name("dm:")
    # Concurrent claims agree on one room.
    results = await asyncio.gather(any_store.claim_dm(pair, first), any_store.claim_dm(pair, second))
    assert results[0] == results[1]
    assert results[0] in (first, second)
    assert await any_store.claim_dm(pair, _name("dm:")) == results[0]
    assert await any_store.find_dm(pair) == results[0]
    assert await any_store.find_dm(dm_pair(a, _user())) is None


async def test_direct_record_keeps_its_kind(any_store: MessageStore) -> None:
    room, a, b = _name("dm:"), _user(), _user()
    await any_store.create_conversation(
        Conversation(room, DIRECT, "", a, 7), [Member(room, a, MEMBER, 7), Member(room, b, MEMBER, 7)]
    )
    found = await any_store.get_conversation(room)
    assert found is not None and found.kind == DIRECT and found.created_by == a


async def test_joined_public_rooms_per_user(any_store: MessageStore) -> None:
    user, other = _user(), _user()
    rooms = sorted(f"pub-{uuid.uuid4().hex[:8]}" for _ in range(3))
    for room in rooms:
        await any_store.put_joined(user, room, 1)
    await any_store.put_joined(user, rooms[0], 2)  # again: no change
    assert await any_store.joined_rooms(user, limit=10) == rooms
    assert await any_store.joined_rooms(user, limit=2) == rooms[:2]
    assert await any_store.joined_rooms(other, limit=10) == []
    await any_store.delete_joined(user, rooms[1])
    await any_store.delete_joined(user, rooms[1])
    assert await any_store.joined_rooms(user, limit=10) == [rooms[0], rooms[2]]


async def test_blocks_are_per_blocker_and_one_way(any_store: MessageStore) -> None:
    alice, bob, carol = _user(), _user(), _user()
    await any_store.put_block(alice, bob, 1)
    await any_store.put_block(alice, carol, 2)
    await any_store.put_block(alice, bob, 3)  # again
    assert await any_store.blocks_of(alice, limit=10) == sorted([bob, carol])
    assert await any_store.blocks_of(alice, limit=1) == sorted([bob, carol])[:1]
    assert await any_store.is_blocked(alice, bob)
    assert not await any_store.is_blocked(bob, alice)  # one way
    assert await any_store.blocks_of(bob, limit=10) == []
    await any_store.delete_block(alice, bob)
    await any_store.delete_block(alice, bob)
    assert not await any_store.is_blocked(alice, bob)
    assert await any_store.blocks_of(alice, limit=10) == [carol]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_the_embedded_outbox_keeps_each_user_message_pair_once(kind: str, tmp_path: Path) -> None:
    from chatsvc.model.rooms import Notification  # noqa: PLC0415
    from chatsvc.store.base import NotificationOutbox  # noqa: PLC0415

    store = (
        MemoryStore()
        if kind == "memory"
        else StoreSpec("sqlite", {"CHATSVC_DATA_DIR": str(tmp_path / "outbox")}).make()
    )
    await store.open()
    await store.migrate()
    try:
        assert isinstance(store, NotificationOutbox)
        first = Notification("bob", "dm:x", "01J00000000000000000000001", "alice", "hi", "direct", 1)
        second = Notification("carol", "dm:x", "01J00000000000000000000001", "alice", "hi", "direct", 1)
        assert await store.add_notification(first)
        assert not await store.add_notification(first)  # the same (user, message): once
        assert await store.add_notification(second)
        listed = await store.notifications_after(0, 10)
        assert [n for _, n in listed] == [first, second]
        positions = [p for p, _ in listed]
        assert positions == sorted(positions) and len(set(positions)) == 2
        assert [n for _, n in await store.notifications_after(positions[0], 10)] == [second]
        assert await store.notifications_after(positions[1], 10) == []
        assert len(await store.notifications_after(0, 1)) == 1
    finally:
        await store.aclose()


async def test_sqlite_migration_keeps_existing_rooms_public(tmp_path: Path) -> None:
    """A version-3 file (before conversations) upgrades in place; its rooms stay public."""
    import sqlite3  # noqa: PLC0415 - this test builds an old file by hand

    from chatsvc.model.messages import Message  # noqa: PLC0415
    from chatsvc.model.rooms import members_only  # noqa: PLC0415
    from chatsvc.store import sqlite as sqlite_store  # noqa: PLC0415
    from chatsvc.store import sqlite_schema  # noqa: PLC0415

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    for version in (1, 2, 3):
        for statement in sqlite_schema.MIGRATIONS[version]:
            db.execute(statement)
    db.execute("PRAGMA user_version=3")
    # A room with a message, written as version 3 wrote it (no stream positions yet).
    db.execute(
        "INSERT INTO messages (room, id, user_id, user_name, text, created_at_ms) VALUES (?,?,?,?,?,?)",
        ("lobby", "01J00000000000000000000000", "u", "U", "hi", 1),
    )
    db.commit()
    db.close()
    store = sqlite_store.SqliteStore(path)
    await store.open()
    try:
        await store.migrate()
        await store.migrate()  # idempotent
        assert await store.get_conversation("lobby") is None and not members_only("lobby")
        stored = Message("01J00000000000000000000000", "lobby", "u", "U", "hi", 1)
        assert (await store.history("lobby", before=None, limit=5)).messages == [stored]
        assert await store.count_members("lobby") == 0
    finally:
        await store.aclose()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == sqlite_schema.SCHEMA_VERSION == 11
    db.close()
