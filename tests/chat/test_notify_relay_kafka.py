"""The notification relay on the real Kafka broker and the real CQL node (issue 24), in
process, with a seam in front of the broker: the producer and the read-back consumer are
real aiokafka clients, and a gate can hold the broker's acknowledgements back (an outage as
the producer sees it, longer than its retry window) with or without the records landing,
or make the broker unreachable. The shared broker itself is never stopped. A real consumer
then reads the topic: every notification exactly once.

The seam is needed because the shared broker must not be stopped for the suite, and an
outage longer than the default retry window (5 s) per attempt would be slow; the window
here is 500 ms (``CHATSVC_NOTIFY_RETRY_WINDOW_MS``)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from chatsvc.bus import notify_kafka
from chatsvc.bus.notify_kafka import KafkaNotifications
from chatsvc.chat import notify_relay
from chatsvc.chat.notify_relay import NotificationRelay, RelayOutbox
from chatsvc.errors import ChatError
from chatsvc.model.ids import id_at
from chatsvc.model.rooms import Notification
from chatsvc.store.scylla import notifications as scylla_notifications
from tests.bus.helpers import new_topic
from tests.store.conftest import StoreSpec, cli_env, drop_keyspace, new_keyspace, scylla_env
from tests.support.servers import run_cli
from tests.support.services import kafka_env

WINDOW_MS = 500


class Gate:
    """Between the relay and the broker. ``down``: the broker unreachable (a producer or
    consumer cannot start); ``no_acks``: records are sent for real (``land``) or dropped,
    and their acknowledgements never come back."""

    def __init__(self) -> None:
        self.down = False
        self.no_acks = False
        self.land = True
        self.attempts = 0

    def producer(self, **options: Any) -> Any:
        return GatedProducer(self, AIOKafkaProducer(**options))

    def consumer(self, **options: Any) -> Any:
        if self.down:
            raise KafkaConnectionError("broker unreachable (test gate)")
        return AIOKafkaConsumer(**options)


class GatedProducer:
    def __init__(self, gate: Gate, real: AIOKafkaProducer) -> None:
        self._gate, self._real = gate, real

    async def start(self) -> None:
        if self._gate.down:
            raise KafkaConnectionError("broker unreachable (test gate)")
        await self._real.start()

    async def stop(self) -> None:
        await self._real.stop()

    async def partitions_for(self, topic: str) -> set[int]:
        if self._gate.down:
            raise KafkaConnectionError("broker unreachable (test gate)")
        return set(await self._real.partitions_for(topic))

    async def send(self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]) -> Any:
        self._gate.attempts += 1
        if not self._gate.no_acks:
            return await self._real.send(topic, value, key=key, headers=headers)
        if self._gate.land:
            await (await self._real.send(topic, value, key=key, headers=headers))
            self._gate.down = True  # and then the broker is gone for a while
        return asyncio.get_running_loop().create_future()  # the acknowledgement never comes


@pytest.fixture(scope="module")
def scylla_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreSpec]:
    """A fresh keyspace on the real CQL node, migrated by ``chatsvc migrate``; dropped after."""
    keyspace = new_keyspace()
    env = scylla_env(keyspace)
    done = run_cli(["migrate"], cli_env(tmp_path_factory.mktemp("migrate"), env), timeout=300)
    assert done.returncode == 0, done.stderr
    yield StoreSpec("scylla", env)
    drop_keyspace(env, keyspace)


@pytest.fixture
async def store(scylla_spec: StoreSpec) -> AsyncIterator[RelayOutbox]:
    store = scylla_spec.make()
    await store.open()
    try:
        assert isinstance(store, RelayOutbox)
        yield store
    finally:
        await store.aclose()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short margins and backoffs, so each failed attempt costs about the window."""
    monkeypatch.setattr(notify_kafka, "PRODUCE_MARGIN_SECONDS", 0.2)
    monkeypatch.setattr(notify_relay, "BACKOFF_CAP_SECONDS", 0.5)


def topic_of(name: str, gate: Gate) -> KafkaNotifications:
    brokers = kafka_env()["KAFKA_TEST_PLAINTEXT"]
    return KafkaNotifications(
        name,
        lambda: {"bootstrap_servers": brokers},
        retry_window_ms=WINDOW_MS,
        producer_factory=gate.producer,
        consumer_factory=gate.consumer,
    )


async def write(store: RelayOutbox, count: int) -> list[str]:
    """``count`` notifications for fresh users; their dedup ids."""
    message = id_at(int(time.time() * 1000))
    ids = []
    for i in range(count):
        n = Notification(f"u{i}-{uuid.uuid4().hex[:8]}", "dm:x", message, "alice", f"n{i}", "direct", i)
        assert await store.add_notification(n)
        ids.append(n.dedup_id)
    return ids


async def on_topic(name: str, *, expect: int, within: float = 30.0, quiet: float = 2.0) -> list[str]:
    """The dedup ids of every record of ``name``, read from the start by a real consumer,
    once ``expect`` are there and nothing more came for ``quiet`` seconds."""
    consumer = AIOKafkaConsumer(
        name,
        bootstrap_servers=kafka_env()["KAFKA_TEST_PLAINTEXT"],
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[str] = []
    try:
        deadline = time.monotonic() + within
        settled: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for record in (r for rs in batch.values() for r in rs):
                value = json.loads(record.value)
                assert dict(record.headers)["dedup"].decode() == value["id"]
                got.append(value["id"])
            if len(got) >= expect and settled is None:
                settled = time.monotonic() + quiet
            if settled is not None and time.monotonic() >= settled:
                break
    finally:
        await consumer.stop()
    return got


async def relay_until(relay: NotificationRelay, done: Any, *, within: float = 30.0) -> None:
    """Step the relay (as its loop would, failures included) until ``done()``."""
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "the relay did not finish in time"
        try:
            if not await relay.step():
                await asyncio.sleep(0.2)
        except ChatError:
            await asyncio.sleep(0.1)


async def until(check: Any, *, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.05)


async def settled() -> None:
    """ScyllaDB's outbox shows a write SETTLE_MS later."""
    await asyncio.sleep(scylla_notifications.SETTLE_MS / 1000 + 0.3)


async def test_an_outage_longer_than_the_retry_window_loses_nothing_and_duplicates_nothing(
    store: RelayOutbox,
) -> None:
    name, gate = new_topic(), Gate()
    relay = NotificationRelay(store, topic_of(name, gate), owner="ra", lease_seconds=10)
    await relay.start()  # the loop: it relays as the real one does
    try:
        first = await write(store, 3)
        await settled()
        assert sorted(await on_topic(name, expect=3)) == sorted(first)

        # An outage as the producer sees it: nothing is acknowledged, attempt after attempt
        # times out after the window; nothing lands for three windows, then one attempt's
        # records land (their acknowledgement lost) and the broker is unreachable for a while.
        gate.no_acks, gate.land = True, False
        second = await write(store, 4)
        await settled()
        await until(lambda: gate.attempts >= 3 * 4, what="three failed attempts")
        gate.land = True
        await until(lambda: gate.down, what="an attempt that landed")
        await asyncio.sleep(3 * WINDOW_MS / 1000)
        assert relay.produced == 3  # nothing counted as done during the outage
        gate.no_acks = gate.down = False
        found = await on_topic(name, expect=7)
        assert sorted(found) == sorted(first + second), found
        assert relay.skipped == 4  # read back from the topic, not produced again

        # Dropped, unacknowledged: the records never landed, so they go out after it.
        gate.no_acks, gate.land = True, False
        before = gate.attempts
        third = await write(store, 2)
        await settled()
        await until(lambda: gate.attempts >= before + 2 * 2, what="two failed attempts")
        gate.no_acks = False
        found = await on_topic(name, expect=9)
        assert sorted(found) == sorted(first + second + third), found
    finally:
        await relay.aclose()


class Crash(Exception):
    """The process dies right after the broker acknowledged, before the position is written."""


async def test_a_relay_that_dies_after_producing_is_taken_over_without_a_duplicate(
    store: RelayOutbox,
) -> None:
    name, gate = new_topic(), Gate()
    topic_a = topic_of(name, gate)

    class Dying:
        topic = name

        async def start(self) -> None:
            await topic_a.start()

        async def aclose(self) -> None:
            await topic_a.aclose()

        async def produce(self, notifications: Sequence[Notification]) -> None:
            await topic_a.produce(notifications)
            raise Crash

        async def recent_ids(self, per_partition: int) -> set[str]:
            return await topic_a.recent_ids(per_partition)

    a = NotificationRelay(store, Dying(), owner="ra", lease_seconds=3)
    b = NotificationRelay(store, topic_of(name, gate), owner="rb", lease_seconds=3)
    await store.start_relay(name)
    await topic_a.start()
    sent = await write(store, 5)
    await settled()
    with pytest.raises(Crash):
        await a.step()  # ra produced all five and died holding the lease
    assert not await b.step()  # rb waits for the lease to lapse
    more = await write(store, 2)
    await settled()
    try:
        await relay_until(b, lambda: b.produced + b.skipped == 7)
        found = await on_topic(name, expect=7)
        assert sorted(found) == sorted(sent + more), found
        assert (b.skipped, b.produced) == (5, 2)
    finally:
        await b.aclose()
        await topic_a.aclose()
