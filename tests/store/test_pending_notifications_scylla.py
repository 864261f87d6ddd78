"""The CQL marks of messages whose offline notifications are not written yet (issue 24,
chatsvc.store.scylla.pending), on the real Cassandra node: written before the message row,
only for a message that may notify; a mark whose message never came is kept while its
write may still be on the way and dropped after; a read starts at the floor and never moves
it above a mark it could not see (written later, or under an old id); a new process finds
the marks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import pytest

from chatsvc.errors import StoreUnavailable
from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message
from chatsvc.store.scylla import pending
from chatsvc.store.scylla.driver import Row
from chatsvc.store.scylla.schema import IDEMPOTENCY_TTL_SECONDS
from chatsvc.store.scylla.store import ScyllaStore
from tests.store.conftest import StoreSpec
from tests.store.test_pending_notifications_contract import drained


def now_ms() -> int:
    return int(time.time() * 1000)


def dm_message(at_ms: int, **fields: object) -> Message:
    message = Message(id_at(at_ms), f"dm:{uuid.uuid4().hex[:16]}", "alice", "Alice", "hi", at_ms)
    return replace(message, **fields)  # type: ignore[arg-type]


async def open_scylla(spec: StoreSpec, *, positions: bool = True) -> ScyllaStore:
    store = ScyllaStore(spec.settings().scylla, positions=positions)  # type: ignore[arg-type]
    await store.open()
    await store.migrate()
    return store


@pytest.fixture
async def scylla(scylla_spec: StoreSpec) -> AsyncIterator[ScyllaStore]:
    store = await open_scylla(scylla_spec)
    try:
        await drained(store)
        yield store
    finally:
        await store.aclose()


async def mark_exists(store: ScyllaStore, message: Message) -> bool:
    rows = await store._pending_cql(
        "pend_after", (pending.hour_of(message.id), message.id, "", pending.CHUNK)
    )
    return any(str(r[0]) == message.id and str(r[1]) == message.room for r in rows)


def spy(store: ScyllaStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the statements ``store`` runs from now on."""
    ran: list[str] = []
    real = store._db.run

    async def run(name: str, params: Sequence[object], *, time_limit: float | None = None) -> list[Row]:
        ran.append(name)
        return await real(name, params, time_limit=time_limit)

    monkeypatch.setattr(store._db, "run", run)
    monkeypatch.setattr(store, "_run", run)
    return ran


def test_marks_expire_with_the_outbox() -> None:
    assert pending.TTL_SECONDS == IDEMPOTENCY_TTL_SECONDS


async def test_only_a_message_that_may_notify_pays_the_mark_and_before_its_row(
    scylla: ScyllaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = spy(scylla, monkeypatch)
    await scylla.append(replace(dm_message(now_ms()), room=f"stock:{uuid.uuid4().hex[:8]}"))
    assert ran and not [name for name in ran if name.startswith("pend_")]  # a public message
    ran.clear()
    await scylla.append(dm_message(now_ms()))
    assert ran.index("pend_put") < ran.index("msg_insert")


async def test_the_history_writer_of_cluster_mode_marks_nothing(scylla_spec: StoreSpec) -> None:
    store = await open_scylla(scylla_spec, positions=False)  # as app.build_store with Kafka
    try:
        sent, _ = await store.append(dm_message(now_ms(), pos=41))  # its offset in the events log
        assert not await mark_exists(store, sent)
    finally:
        await store.aclose()


async def test_a_mark_without_its_message_is_kept_while_young_then_dropped(
    scylla: ScyllaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(_message: Message) -> None:
        raise StoreUnavailable("ScyllaDB request timed out")

    monkeypatch.setattr(scylla, "_insert", down)  # the message row never lands
    young = dm_message(now_ms())
    old = dm_message(now_ms() - 5 * pending.MARGIN_MS)  # a retry's original id
    for message in (young, old):
        with pytest.raises(StoreUnavailable):
            await scylla.append(message)
    monkeypatch.undo()
    assert await scylla.pending_notifications(10) == []
    assert await mark_exists(scylla, young), "its message may still be on the way"
    assert not await mark_exists(scylla, old), "dropped: no message will come"


async def test_an_old_id_marked_after_the_floor_moved_on_is_still_found(scylla: ScyllaStore) -> None:
    """A read moved the floor to about now less the margin; a retry then completes an
    earlier attempt under its original id, ten minutes old."""
    floor = await scylla._pending_floor()
    assert floor is not None and floor > id_at(now_ms() - 2 * pending.MARGIN_MS)
    late, _ = await scylla.append(dm_message(now_ms() - 10 * 60_000))
    assert [m.id for m in await scylla.pending_notifications(10)] == [late.id]


async def test_a_read_never_moves_the_floor_above_a_mark_being_written(scylla: ScyllaStore) -> None:
    writing = id_at(now_ms() - 10 * 60_000)
    scylla._marks.start(writing)  # an append between its mark and its row, say
    try:
        assert await scylla.pending_notifications(10) == []
        floor = await scylla._pending_floor()
        assert floor is not None and floor <= writing
    finally:
        scylla._marks.done(writing)
    await scylla.pending_notifications(10)
    floor = await scylla._pending_floor()
    assert floor is not None and floor > writing  # written (or not): it moves on after


async def test_a_new_process_finds_the_marks(scylla_spec: StoreSpec) -> None:
    first = await open_scylla(scylla_spec)
    try:
        await drained(first)
        sent, _ = await first.append(dm_message(now_ms(), mentions=("bob",)))
    finally:
        await first.aclose()
    again = await open_scylla(scylla_spec)
    try:
        assert [m.id for m in await again.pending_notifications(10)] == [sent.id]
        await again.clear_pending_notification(sent.room, sent.id)
        assert await again.pending_notifications(10) == []
    finally:
        await again.aclose()


async def test_a_read_walks_the_hours_and_pages_past_a_chunk(scylla: ScyllaStore) -> None:
    now = now_ms()
    older, _ = await scylla.append(dm_message(now - 3 * pending.HOUR_MS))  # three partitions back
    many = [dm_message(now + i) for i in range(pending.CHUNK + 30)]
    await asyncio.gather(*(scylla.append(m) for m in many))
    expected = [older.id, *sorted(m.id for m in many)]
    assert [m.id for m in await scylla.pending_notifications(1000)] == expected
    page = await scylla.pending_notifications(pending.CHUNK + 1)
    assert [m.id for m in page] == expected[: pending.CHUNK + 1]
    await drained(scylla)
    floor = await scylla._pending_floor()
    assert floor is not None and floor > older.id  # cleared: the next reads start after it


async def test_a_new_process_reads_from_its_own_first_mark_too(scylla_spec: StoreSpec) -> None:
    """Its clock behind the previous process's: the floor that one left lies above the new
    process's first marks."""
    ahead = await open_scylla(scylla_spec)
    behind = await open_scylla(scylla_spec)
    try:
        await drained(ahead)
        await ahead._pending_cql("pend_floor_put", (id_at(now_ms() + 10 * 60_000), "pending"))
        sent, _ = await behind.append(dm_message(now_ms()))
        assert [m.id for m in await behind.pending_notifications(10)] == [sent.id]
        await behind.clear_pending_notification(sent.room, sent.id)
        assert await behind.pending_notifications(10) == []
    finally:
        await ahead._pending_cql("pend_floor_put", (id_at(now_ms() - pending.MARGIN_MS), "pending"))
        await ahead.aclose()
        await behind.aclose()
