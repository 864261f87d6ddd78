"""The room stream part of the store contract (positions, epochs) on all three stores:
SQLite, the real CQL node, and memory (docs/delivery.md)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from chatsvc.model.ids import MessageIdGenerator, id_at
from chatsvc.model.messages import Message, RoomEvent
from chatsvc.store.base import MessageStore
from chatsvc.store.memory import MemoryStore
from tests.store.conftest import StoreFactory, new_room


@pytest.fixture
def store(any_store: MessageStore) -> MessageStore:
    """The three stores of tests/store/conftest.py's ``any_store``, under this module's name."""
    return any_store


_ids = MessageIdGenerator()


def msg(room_name: str, text: str = "hi", cmid: str | None = None, user: str = "alice") -> Message:
    return Message(_ids.new(), room_name, user, user.title(), text, int(time.time() * 1000), cmid)


def event(room_name: str, message_id: str, kind: str = "edited") -> RoomEvent:
    event_id = _ids.new()
    return RoomEvent(event_id, room_name, kind, message_id, {"id": message_id, "event_id": event_id})


def positions(records: list[Message | RoomEvent]) -> list[int | None]:
    return [r.pos for r in records]


async def test_every_record_gets_the_next_position_once(store: MessageStore) -> None:
    r = new_room()
    first, _ = await store.append(msg(r, "one", cmid="c1"))
    second, _ = await store.append(msg(r, "two"))
    assert (first.pos, second.pos) == (1, 2)
    retry, created = await store.append(msg(r, "one again", cmid="c1"))
    assert not created and retry.id == first.id and retry.pos == 1, "a retry keeps the original's position"
    edit = await store.append_event(event(r, first.id))
    assert edit.pos == 3
    assert (await store.append_event(edit)).pos == 3, "an event seen before keeps its position"
    third, _ = await store.append(msg(r, "three"))
    assert third.pos == 4
    assert (await store.get(r, first.id)) is not None
    assert (await store.get(r, third.id)).pos == 4  # type: ignore[union-attr]
    other, _ = await store.append(msg(new_room(), "elsewhere"))
    assert other.pos == 1, "each room has its own stream"
    page = await store.history(r, before=None, limit=10)
    assert [m.pos for m in page.messages] == [4, 2, 1]


async def test_stream_after_answers_in_position_order_with_paging(store: MessageStore) -> None:
    r = new_room()
    a, _ = await store.append(msg(r, "a"))
    b, _ = await store.append(msg(r, "b"))
    edited = await store.edit(r, a.id, "a, edited", int(time.time() * 1000))
    e1 = await store.append_event(event(r, a.id, "edited"))
    await store.delete(r, b.id, int(time.time() * 1000))
    e2 = await store.append_event(event(r, b.id, "deleted"))
    c, _ = await store.append(msg(r, "c"))
    whole = await store.stream_after(r, 0, 100)
    assert whole.covered and not whole.more and whole.head == 5
    assert positions(whole.records) == [1, 2, 3, 4, 5]
    assert [type(x).__name__ for x in whole.records] == [
        "Message",
        "Message",
        "RoomEvent",
        "RoomEvent",
        "Message",
    ]
    assert whole.records[0] == edited and whole.records[0].text == "a, edited", "messages as they are now"
    assert whole.records[1].deleted  # type: ignore[union-attr]
    assert whole.records[2] == e1 and whole.records[3] == e2 and whole.records[4] == c
    assert (await store.stream_after(r, 3, 100)).records == [e2, c]
    page = await store.stream_after(r, 1, 2)
    assert positions(page.records) == [2, 3] and page.more and page.covered
    rest = await store.stream_after(r, 3, 2)
    assert positions(rest.records) == [4, 5] and not rest.more
    tail = await store.stream_after(r, 5, 10)
    assert tail.records == [] and tail.covered and not tail.more


async def test_positions_not_kept_or_not_yet_given_are_not_covered(store: MessageStore) -> None:
    r = new_room()
    await store.append(msg(r))
    assert not (await store.stream_after(r, 2, 10)).covered, "a position beyond the head names nothing"
    assert not (await store.stream_after(new_room(), 7, 10)).covered
    empty = await store.stream_after(new_room(), 0, 10)
    assert empty.covered and empty.records == [] and empty.head == 0


async def test_concurrent_appends_get_distinct_positions(store: MessageStore) -> None:
    r = new_room()
    results = await asyncio.gather(*(store.append(msg(r, f"m{i}", cmid=f"k{i}")) for i in range(40)))
    assert sorted(m.pos or 0 for m, _ in results) == list(range(1, 41))
    stream = await store.stream_after(r, 0, 100)
    assert positions(stream.records) == list(range(1, 41))


async def test_epoch_is_stable_and_positions_continue_after_reopen(
    store_kind: str, store: MessageStore, store_factory: StoreFactory
) -> None:
    epoch = await store.stream_epoch()
    assert re.fullmatch(r"[0-9a-z]{1,32}", epoch)
    r = new_room()
    await store.append(msg(r))
    await store.append_event(event(r, id_at(int(time.time() * 1000))))
    if store_kind == "memory":
        assert await MemoryStore().stream_epoch() != epoch, "nothing survives: a new store is a new epoch"
        return
    again = store_factory()
    await again.open()
    try:
        await again.migrate()
        assert await again.stream_epoch() == epoch
        later, _ = await again.append(msg(r, "after a restart"))
        assert later.pos == 3, "a new process continues the room's stream"
    finally:
        await again.aclose()


async def test_memory_store_trims_and_says_so() -> None:
    store = MemoryStore(max_per_room=3)
    await store.open()
    r = new_room()
    sent = [(await store.append(msg(r, f"m{i}")))[0] for i in range(6)]
    assert (await store.stream_after(r, 3, 10)).covered
    assert positions((await store.stream_after(r, 3, 10)).records) == [4, 5, 6]
    old = await store.stream_after(r, 2, 10)
    assert not old.covered and old.records == [], "never silently partial"
    assert sent[-1].pos == 6
