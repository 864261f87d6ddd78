"""The relay of the notification outbox to the Kafka topic (issue 24) with in-memory
doubles: the memory store's outbox and lease, and a topic that is an append-only log which
can fail before or after taking a batch. Exactly once on the topic through outages of any
length, ambiguous failures, two replicas and a dead owner's takeover. The real broker and
CQL node: tests/chat/test_notify_relay_kafka.py and tests/chat/test_notify_cluster.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from chatsvc.chat import notify_relay
from chatsvc.chat.notify_relay import NotificationRelay
from chatsvc.errors import BusUnavailable, StoreUnavailable
from chatsvc.model.rooms import Notification
from chatsvc.store import memory_relay
from chatsvc.store.memory import MemoryStore
from tests.support.control_net import eventually

SCOPE = "chatsvc.notify"


def note(i: int, user: str = "bob") -> Notification:
    return Notification(user, "dm:x", f"01J{i:023d}", "alice", f"n{i}", "direct", i)


class Log:
    """The topic double: every record it took, in order; ``fail`` next produces fail, after
    taking the batch when ``landed`` (an acknowledgement lost: the worst case)."""

    topic = SCOPE

    def __init__(self) -> None:
        self.records: list[Notification] = []
        self.fail = 0
        self.landed = False
        self.scans = 0
        self.closed = False

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        self.closed = True

    async def produce(self, notifications: Sequence[Notification]) -> None:
        if self.fail:
            self.fail -= 1
            if self.landed:
                self.records += notifications
            raise BusUnavailable("notifications topic did not acknowledge")
        self.records += notifications

    async def recent_ids(self, per_partition: int) -> set[str]:
        self.scans += 1
        return {n.dedup_id for n in self.records[-per_partition:]}

    def ids(self) -> list[str]:
        return [n.dedup_id for n in self.records]


class Clock:
    """The memory store's lease clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(memory_relay, "time", clock)
    return clock


@pytest.fixture
async def store() -> MemoryStore:
    store = MemoryStore()
    await store.open()
    return store


def relay(store: MemoryStore, log: Log, owner: str = "ra", **options: int) -> NotificationRelay:
    return NotificationRelay(store, log, owner=owner, lease_seconds=options.pop("lease", 10), **options)


async def add(store: MemoryStore, *numbers: int) -> None:
    for i in numbers:
        assert await store.add_notification(note(i))


async def test_each_notification_once_in_order_and_a_new_topic_starts_at_the_end(
    store: MemoryStore, clock: Clock
) -> None:
    await add(store, 1, 2)  # written before the topic was configured: not relayed
    log = Log()
    r = relay(store, log, batch=2)
    await store.start_relay(SCOPE)
    await add(store, 3, 4, 5)
    assert [await r.step(), await r.step(), await r.step()] == [True, True, False]
    assert log.ids() == [note(i).dedup_id for i in (3, 4, 5)]
    assert await store.relay_position(SCOPE) == 5
    await store.start_relay(SCOPE)  # a second replica's start moves nothing
    assert await store.relay_position(SCOPE) == 5
    assert log.scans == 1  # once, on taking the lease; then sure until a failure


async def test_an_outage_of_any_length_loses_nothing_and_an_ambiguous_failure_duplicates_nothing(
    store: MemoryStore, clock: Clock
) -> None:
    await store.start_relay(SCOPE)
    log = Log()
    r = relay(store, log)
    await add(store, 1)
    assert await r.step()
    await add(store, 2, 3)
    log.fail = 50  # a long outage: nothing lands, fifty attempts fail
    for _ in range(50):
        with pytest.raises(BusUnavailable):
            await r.step()
        assert await store.relay_position(SCOPE) == 1  # never recorded without the ack
    assert log.ids() == [note(1).dedup_id]
    assert await r.step()  # the broker is back: 2 and 3 go out
    assert log.ids() == [note(i).dedup_id for i in (1, 2, 3)]
    # The records land but their acknowledgement is lost: the next round finds them there.
    await add(store, 4, 5)
    log.fail, log.landed = 1, True
    with pytest.raises(BusUnavailable):
        await r.step()
    assert await store.relay_position(SCOPE) == 3
    assert await r.step()
    assert log.ids() == [note(i).dedup_id for i in (1, 2, 3, 4, 5)]
    assert (r.produced, r.skipped) == (3, 2)
    assert await store.relay_position(SCOPE) == 5


async def test_a_store_failure_after_the_produce_does_not_produce_twice(
    store: MemoryStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.start_relay(SCOPE)
    log = Log()
    r = relay(store, log)
    await add(store, 1)
    assert await r.step()
    await add(store, 2)
    real = store.record_relayed

    async def down(scope: str, owner: str, position: int) -> bool:
        raise StoreUnavailable("message store error: OperationalError")

    monkeypatch.setattr(store, "record_relayed", down)
    with pytest.raises(StoreUnavailable):
        await r.step()  # 2 is on the topic, its position not recorded
    monkeypatch.setattr(store, "record_relayed", real)
    assert await r.step()
    assert log.ids() == [note(1).dedup_id, note(2).dedup_id]
    assert await store.relay_position(SCOPE) == 2


async def test_two_replicas_one_relays_and_a_dead_ones_lease_is_taken_over_without_duplicates(
    store: MemoryStore, clock: Clock
) -> None:
    await store.start_relay(SCOPE)
    log = Log()
    a, b = relay(store, log, "ra", lease=10), relay(store, log, "rb", lease=10)
    await add(store, 1, 2)
    assert await a.step()
    assert not await b.step()  # ra holds the lease
    assert log.ids() == [note(i).dedup_id for i in (1, 2)]
    # ra produces 3 and 4, then dies before recording them (a crash, or a kill -9).
    await add(store, 3, 4)
    await log.produce([note(3), note(4)])
    clock.now += 5
    assert not await b.step()  # the lease has not lapsed yet
    clock.now += 6
    await add(store, 5)
    assert await b.step()  # taken over: scan, then only what is missing
    assert log.ids() == [note(i).dedup_id for i in (1, 2, 3, 4, 5)]
    assert b.skipped == 2 and b.produced == 1
    # ra was only paused: it comes back, finds the lease gone and produces nothing.
    await add(store, 6)
    assert not await a.step()
    assert await b.step()
    assert log.ids() == [note(i).dedup_id for i in (1, 2, 3, 4, 5, 6)]


async def test_a_relay_that_lost_its_lease_while_producing_cannot_record(
    store: MemoryStore, clock: Clock
) -> None:
    await store.start_relay(SCOPE)
    log = Log()
    a, b = relay(store, log, "ra", lease=10), relay(store, log, "rb", lease=10)
    await add(store, 1)
    assert await a.step()

    class Slow(Log):
        async def produce(self, notifications: Sequence[Notification]) -> None:
            clock.now += 11  # longer than the lease (the settings forbid it; the store still fences)
            assert await store.take_relay(SCOPE, "rb", 10) == "taken"
            await super().produce(notifications)

    await add(store, 2)
    slow = Slow()
    slow.records = log.records
    a._topic = slow  # the same log, slower
    assert not await a.step()  # its record is refused: the position stays
    assert await store.relay_position(SCOPE) == 1
    assert not await a.step()  # and it stays out
    assert await b.step()  # the new owner scans: 2 is there, so it only records it
    assert log.ids() == [note(1).dedup_id, note(2).dedup_id]
    assert (b.produced, b.skipped) == (0, 1)
    assert await store.relay_position(SCOPE) == 2


async def test_the_loop_backs_off_logs_once_per_cause_and_stops_giving_the_lease_up(
    store: MemoryStore, clock: Clock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify_relay, "BACKOFF_SECONDS", 0.001)
    monkeypatch.setattr(notify_relay, "BACKOFF_CAP_SECONDS", 0.01)
    log = Log()
    r = relay(store, log)
    await r.start()
    try:
        with caplog.at_level(logging.INFO, logger="chatsvc.chat.notify_relay"):
            log.fail = 20
            await add(store, 1)
            r.wake()
            await eventually(lambda: log.ids() == [note(1).dedup_id], what="relayed after the outage")
            await add(store, 2)
            r.wake()
            await eventually(lambda: len(log.records) == 2, what="woken by a write")
        warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
        assert len(warnings) == 1 and "bus_unavailable" in warnings[0].getMessage()
        assert "working again" in caplog.text and "Traceback" not in caplog.text
    finally:
        await r.aclose()
    assert log.closed
    assert await store.take_relay(SCOPE, "rb", 10) == "taken"  # released: no wait for a lapse
    await r.aclose()  # idempotent
    await asyncio.sleep(0)
