"""Room streams on the real CQL node: what a write that failed half way leaves behind, and
where a new process's counter starts (chatsvc/store/scylla/stream.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from chatsvc.app import build_store
from chatsvc.model.ids import MessageIdGenerator
from chatsvc.model.messages import Message, RoomEvent
from chatsvc.store.scylla.schema import STREAM_CHUNK
from chatsvc.store.scylla.store import ScyllaStore
from tests.store.conftest import StoreSpec

IDS = MessageIdGenerator()


@pytest.fixture
async def scylla(scylla_spec: StoreSpec) -> AsyncIterator[ScyllaStore]:
    store = scylla_spec.make()
    assert isinstance(store, ScyllaStore)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def fresh(spec: StoreSpec) -> ScyllaStore:
    """Another process's view: a new store object on the same keyspace."""
    store = spec.make()
    assert isinstance(store, ScyllaStore)
    await store.open()
    return store


def room() -> str:
    return f"stream-{uuid.uuid4().hex[:12]}"


def msg(room_name: str, text: str, cmid: str | None = None) -> Message:
    return Message(IDS.new(), room_name, "alice", "Alice", text, int(time.time() * 1000), cmid)


async def test_a_record_whose_message_row_never_landed_is_skipped(scylla: ScyllaStore) -> None:
    r = room()
    first, _ = await scylla.append(msg(r, "first"))
    # A send that wrote its stream row and head, then failed before the message row.
    lost = msg(r, "never stored")
    pos = await scylla._stream.next_pos(r)
    for write in scylla._stream.writes(r, pos, "message", lost.id):
        await write
    after, _ = await scylla.append(msg(r, "after"))
    assert (first.pos, pos, after.pos) == (1, 2, 3)
    stream = await scylla.stream_after(r, 0, 10)
    assert stream.covered and stream.head == 3
    assert [(m.pos, m.text) for m in stream.records] == [(1, "first"), (3, "after")]  # type: ignore[union-attr]
    # A page that ends on the skipped record still says more follow, and how far it got.
    await scylla.append(msg(r, "fourth"))
    page = await scylla.stream_after(r, 0, 2)
    assert [x.pos for x in page.records] == [1] and page.more and page.upto == 2
    rest = await scylla.stream_after(r, 2, 2)
    assert [x.pos for x in rest.records] == [3, 4] and not rest.more


async def test_a_retry_that_completes_a_half_written_send_takes_a_new_position(
    scylla: ScyllaStore,
) -> None:
    """The first attempt wrote its key and its stream row, not its message; the retry stores
    the message under the original id at a new position, and only that one is read back."""
    r = room()
    first = msg(r, "first try", cmid="c-1")
    await scylla._run("key_put", (r, "alice", "c-1", first.id, first.created_at_ms))
    pos = await scylla._stream.next_pos(r)
    for write in scylla._stream.writes(r, pos, "message", first.id):
        await write
    stored, created = await scylla.append(msg(r, "first try", cmid="c-1"))
    assert created and stored.id == first.id and stored.pos == pos + 1
    records = (await scylla.stream_after(r, 0, 10)).records
    assert [(x.id, x.pos) for x in records] == [(first.id, pos + 1)]


async def test_a_new_process_continues_after_the_newest_stream_row(
    scylla: ScyllaStore, scylla_spec: StoreSpec
) -> None:
    """``room_heads`` may lag ``room_stream`` (a write that failed between the two): the counter
    is seeded from both, so no position is handed out twice."""
    r = room()
    await scylla.append(msg(r, "one"))
    ghost = msg(r, "head not written")
    await scylla._run("stream_put", (r, 0, 2, "message", ghost.id, "", ""))
    other = await fresh(scylla_spec)
    try:
        later, _ = await other.append(msg(r, "from another process"))
        assert later.pos == 3
    finally:
        await other.aclose()


async def test_a_stream_longer_than_one_partition_reads_across_them(scylla: ScyllaStore) -> None:
    """Positions are stored in partitions of STREAM_CHUNK; a read crosses into the next one."""
    r = room()
    last_of_first = STREAM_CHUNK - 1
    scylla._stream._heads[r] = last_of_first - 2  # as if the room had that many records
    sent = [(await scylla.append(msg(r, f"m{i}")))[0] for i in range(4)]
    assert [m.pos for m in sent] == [last_of_first - 1, last_of_first, STREAM_CHUNK, STREAM_CHUNK + 1]
    page = await scylla.stream_after(r, last_of_first - 2, 3)
    assert [x.pos for x in page.records] == [last_of_first - 1, last_of_first, STREAM_CHUNK] and page.more
    rest = await scylla.stream_after(r, last_of_first, 10)
    assert [x.pos for x in rest.records] == [STREAM_CHUNK, STREAM_CHUNK + 1] and not rest.more


async def test_with_several_writers_the_store_numbers_nothing_itself(
    scylla_spec: StoreSpec,
) -> None:
    """With Kafka (several replicas writing one room) per-process counters would collide, so
    the store numbers nothing: positions come from the Kafka events topic with the records
    (tests/store/test_stream_given_positions.py); a record without one gets none, and a
    position beyond what the store holds is not covered."""
    settings = scylla_spec.settings(KAFKA_BROKERS="127.0.0.1:19092")
    store = build_store(settings)
    assert isinstance(store, ScyllaStore)
    await store.open()
    try:
        r = room()
        stored, created = await store.append(msg(r, "no position"))
        assert created and stored.pos is None
        assert (await store.get(r, stored.id)).pos is None  # type: ignore[union-attr]
        event = await store.append_event(RoomEvent(IDS.new(), r, "deleted", stored.id, {"id": stored.id}))
        assert event.pos is None
        nothing = await store.stream_after(r, 0, 10)
        assert nothing.covered and nothing.records == [] and nothing.head == 0
        beyond = await store.stream_after(r, 1, 10)
        assert not beyond.covered and beyond.records == []
    finally:
        await store.aclose()
    single = build_store(scylla_spec.settings())
    assert isinstance(single, ScyllaStore) and single._positions
