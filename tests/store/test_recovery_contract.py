"""The recovery part of the store contract (room events, sessions) on all three stores:
SQLite, the real CQL node, and memory."""

from __future__ import annotations

import asyncio
import secrets
import time

from chatsvc.model.ids import MessageIdGenerator, id_at, lowest_id_at
from chatsvc.model.messages import RoomEvent, SessionRecord
from chatsvc.store.base import MessageStore
from tests.store.conftest import new_room


def event(room_name: str, event_id: str, kind: str = "edited") -> RoomEvent:
    return RoomEvent(
        id=event_id,
        room=room_name,
        kind=kind,
        message_id=id_at(int(time.time() * 1000) - 5000),
        payload={"id": "m", "room": room_name, "text": "ünï 🚀", "event_id": event_id, "n": [1, None]},
    )


async def test_room_events_come_back_after_an_id_in_id_order(any_store: MessageStore) -> None:
    r = new_room()
    ids = MessageIdGenerator()
    made = [event(r, ids.new(), kind) for kind in ("edited", "deleted", "edited", "edited")]
    for e in reversed(made):  # arrival order does not matter
        await any_store.append_event(e)
    await any_store.append_event(made[0])  # a repeat is harmless
    assert await any_store.events_after(r, lowest_id_at(0), 100) == made
    assert await any_store.events_after(r, made[1].id, 100) == made[2:]
    assert await any_store.events_after(r, made[0].id, 2) == made[1:3]
    assert await any_store.events_after(r, made[-1].id, 100) == []
    assert await any_store.events_after(new_room(), lowest_id_at(0), 100) == []


def session(pid: str, *, ttl_ms: int = 60_000, user: str = "alice", data: str = '{"v":1}') -> SessionRecord:
    return SessionRecord(pid, user, data, int(time.time() * 1000) + ttl_ms)


async def test_sessions_are_one_use(any_store: MessageStore) -> None:
    pid = secrets.token_urlsafe(18)
    assert await any_store.get_session(pid) is None
    assert await any_store.delete_session(pid) is False
    record = session(pid, data='{"rooms": {"a": 1}, "text": "ü"}')
    await any_store.save_session(record)
    assert await any_store.get_session(pid) == record
    replaced = session(pid, user="alice", data='{"v": 2}')
    await any_store.save_session(replaced)
    assert await any_store.get_session(pid) == replaced
    assert await any_store.delete_session(pid) is True
    assert await any_store.delete_session(pid) is False
    assert await any_store.get_session(pid) is None


async def test_concurrent_claims_of_one_session_have_one_winner(any_store: MessageStore) -> None:
    pid = secrets.token_urlsafe(18)
    await any_store.save_session(session(pid))
    results = await asyncio.gather(*(any_store.delete_session(pid) for _ in range(4)))
    assert sorted(results) == [False, False, False, True]


async def test_sessions_expire(any_store: MessageStore) -> None:
    pid = secrets.token_urlsafe(18)
    await any_store.save_session(session(pid, ttl_ms=1200))
    assert await any_store.get_session(pid) is not None
    await asyncio.sleep(1.5)
    assert await any_store.get_session(pid) is None
    assert await any_store.delete_session(pid) is False
