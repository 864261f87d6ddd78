"""Cluster mode's half of the room stream contract, on SQLite, the real CQL node and memory:
records that bring their position (their offset in the Kafka events topic, issue 21
phase 2) keep it, gaps and all, and are read back in position order."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from chatsvc.model.ids import MessageIdGenerator
from chatsvc.model.messages import Message, RoomEvent
from chatsvc.store.base import MessageStore
from tests.store.conftest import StoreFactory, new_room, opened

#: Selects cluster mode in the settings (nothing connects to it here): ScyllaDB then numbers
#: nothing itself and keeps the positions records bring.
CLUSTER = {"KAFKA_BROKERS": "127.0.0.1:9"}

_ids = MessageIdGenerator()


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[MessageStore]:
    """Each of the three stores (tests/store/conftest.py), in cluster mode."""
    async with opened(store_factory(**CLUSTER)) as cluster_store:
        yield cluster_store


def msg(room_name: str, pos: int, text: str = "hi", cmid: str | None = None) -> Message:
    return Message(_ids.new(), room_name, "alice", "Alice", text, int(time.time() * 1000), cmid, pos=pos)


def event(room_name: str, message_id: str, pos: int) -> RoomEvent:
    event_id = _ids.new()
    return RoomEvent(event_id, room_name, "edited", message_id, {"id": message_id, "event_id": event_id}, pos)


async def test_records_keep_the_positions_they_bring_gaps_and_all(store: MessageStore) -> None:
    r = new_room()
    # Offsets of one partition shared with other rooms: growing, not contiguous.
    first, created = await store.append(msg(r, 40, "one", cmid="c1"))
    assert created and first.pos == 40
    edit = await store.append_event(event(r, first.id, 57))
    assert edit.pos == 57
    second, _ = await store.append(msg(r, 1203, "two"))
    assert second.pos == 1203
    again, created = await store.append(msg(r, 1300, "one, retried", cmid="c1"))
    assert not created and again.id == first.id and again.pos == 40, "the first record with the key wins"
    whole = await store.stream_after(r, 0, 10)
    assert whole.covered and whole.head >= 1203
    assert [x.pos for x in whole.records] == [40, 57, 1203]
    assert [type(x).__name__ for x in whole.records] == ["Message", "RoomEvent", "Message"]
    later = await store.stream_after(r, 57, 10)
    assert [x.pos for x in later.records] == [1203]
    assert (await store.stream_after(r, 1203, 10)).records == []
    assert not (await store.stream_after(r, 5000, 10)).covered, "beyond the head names nothing"
    assert (await store.get(r, second.id)) == replace(second, pos=1203)


async def test_an_event_replayed_keeps_its_position(store: MessageStore) -> None:
    r = new_room()
    m, _ = await store.append(msg(r, 7))
    e = event(r, m.id, 9)
    assert (await store.append_event(e)).pos == 9
    assert (await store.append_event(e)).pos == 9
    assert [x.pos for x in (await store.stream_after(r, 0, 10)).records] == [7, 9]
