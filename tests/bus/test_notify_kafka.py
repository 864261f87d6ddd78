"""The notifications topic's contract with aiokafka (recording doubles of the producer):
idempotent settings with the retry window as the request timeout, a batch acknowledged
record by record, a failure translated and the producer replaced. The real broker:
tests/chat/test_notify_relay_kafka.py and tests/chat/test_notify_cluster.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from chatsvc.bus import notify_kafka
from chatsvc.bus.notify_kafka import KafkaNotifications
from chatsvc.errors import BusUnavailable, StartupError
from chatsvc.model.rooms import Notification

NOTE = Notification("bob", "dm:x", "01J00000000000000000000001", "alice", "hi", "direct", 1)
OTHER = Notification("carol", "dm:y", "01J00000000000000000000002", "alice", "yo", "direct", 2)


class Producer:
    """Records what aiokafka's producer would be asked; each send returns a delivery
    future, acknowledged at once unless ``hold`` (then settled by the test)."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.deliveries: list[asyncio.Future[Any]] = []
        self.fail_start: Exception | None = None
        self.hold = False
        self.stopped = False

    async def start(self) -> None:
        if self.fail_start is not None:
            raise self.fail_start

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    async def send(self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]) -> Any:
        self.sent.append((topic, key, value, headers))
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.hold:
            delivery.set_result(None)
        self.deliveries.append(delivery)
        return delivery


@pytest.fixture
def made() -> list[Producer]:
    return []


def recording(made: list[Producer], fail_start: Exception | None = None) -> Callable[..., Producer]:
    """A producer factory that keeps each producer it makes in ``made``."""

    def factory(**options: Any) -> Producer:
        made.append(Producer(**options))
        made[-1].fail_start = fail_start
        return made[-1]

    return factory


@pytest.fixture
def topic(made: list[Producer]) -> KafkaNotifications:
    return KafkaNotifications(
        "chatsvc.notify",
        lambda: {"bootstrap_servers": ["b:1"]},
        retry_window_ms=1500,
        producer_factory=recording(made),
    )


async def held(topic: KafkaNotifications, made: list[Producer]) -> asyncio.Future[None]:
    """``topic`` started, producing NOTE and OTHER, its deliveries held; the first one
    acknowledged."""
    await topic.start()
    made[0].hold = True
    produce = asyncio.ensure_future(topic.produce([NOTE, OTHER]))
    await asyncio.sleep(0.05)
    made[0].deliveries[0].set_result(None)
    return produce


async def test_the_producer_is_idempotent_with_the_retry_window_and_sends_each_record_once(
    topic: KafkaNotifications, made: list[Producer]
) -> None:
    await topic.start()
    (producer,) = made
    assert producer.options == {
        "bootstrap_servers": ["b:1"],
        "request_timeout_ms": 1500,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
    }
    await topic.produce([NOTE, OTHER])
    assert [(t, k, h) for t, k, _, h in producer.sent] == [
        ("chatsvc.notify", b"bob", [("dedup", b"bob:01J00000000000000000000001")]),
        ("chatsvc.notify", b"carol", [("dedup", b"carol:01J00000000000000000000002")]),
    ]
    await topic.produce([])  # nothing to send: no round trip
    assert len(producer.sent) == 2
    await topic.aclose()
    assert producer.stopped
    await topic.aclose()  # idempotent


async def test_a_batch_is_done_only_when_every_record_is_acknowledged(
    topic: KafkaNotifications, made: list[Producer]
) -> None:
    produce = await held(topic, made)
    await asyncio.sleep(0.05)
    assert not produce.done()  # the second record is not acknowledged yet
    made[0].deliveries[1].set_result(None)
    await produce


async def test_a_failed_record_fails_the_batch_and_replaces_the_producer(
    topic: KafkaNotifications, made: list[Producer]
) -> None:
    produce = await held(topic, made)
    made[0].deliveries[1].set_exception(KafkaTimeoutError())
    with pytest.raises(BusUnavailable, match=r"chatsvc\.notify.*KafkaTimeoutError"):
        await produce
    assert made[0].stopped  # its idempotent sequence is in doubt: a fresh producer next
    await topic.produce([OTHER])
    assert len(made) == 2 and made[1].sent[0][1] == b"carol"


async def test_an_unacknowledged_batch_times_out_after_the_window_and_its_margin(
    topic: KafkaNotifications, made: list[Producer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify_kafka, "PRODUCE_MARGIN_SECONDS", 0.1)
    await topic.start()
    made[0].hold = True
    started = asyncio.get_running_loop().time()
    with pytest.raises(BusUnavailable, match="TimeoutError"):
        await topic.produce([NOTE])
    assert 1.5 <= asyncio.get_running_loop().time() - started < 5
    assert made[0].stopped


async def test_a_producer_that_cannot_start_is_one_startup_error_then_a_bus_error(
    made: list[Producer],
) -> None:
    failing = recording(made, fail_start=KafkaConnectionError())
    topic = KafkaNotifications("chatsvc.notify", dict, producer_factory=failing)
    with pytest.raises(StartupError, match=r"chatsvc\.notify.*KafkaConnectionError"):
        await topic.start()
    assert made[0].stopped
    with pytest.raises(BusUnavailable):  # at run time: the relay backs off and retries
        await topic.produce([NOTE])


class Record:
    def __init__(self, offset: int, dedup: str) -> None:
        self.offset = offset
        self.headers = [("other", b"x"), ("dedup", dedup.encode())]


class Consumer:
    """A topic of two partitions, read from wherever the relay seeks, a few records a fetch."""

    def __init__(self, logs: dict[int, list[str]], **options: Any) -> None:
        self.options = options
        self.logs = logs
        self.positions: dict[Any, int] = {}
        self.stopped = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, partitions: list[Any]) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return {tp: len(self.logs[tp.partition]) for tp in partitions}

    async def beginning_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(partitions, 0)

    def seek(self, tp: Any, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: Any) -> int:
        return self.positions[tp]

    async def getmany(self, *partitions: Any, timeout_ms: int) -> dict[Any, list[Record]]:
        out = {}
        for tp in partitions:
            start = self.positions[tp]
            chunk = self.logs[tp.partition][start : start + 3]
            if chunk:
                out[tp] = [Record(start + i, d) for i, d in enumerate(chunk)]
                self.positions[tp] = start + len(chunk)
        return out


async def test_the_read_back_takes_the_newest_records_of_every_partition(made: list[Producer]) -> None:
    logs = {0: [f"a{i}" for i in range(10)], 1: ["b0", "b1"]}
    consumers: list[Consumer] = []

    def consumer(**options: Any) -> Consumer:
        consumers.append(Consumer(logs, **options))
        return consumers[-1]

    topic = KafkaNotifications(
        "chatsvc.notify", dict, producer_factory=recording(made), consumer_factory=consumer
    )
    assert await topic.recent_ids(4) == {"a6", "a7", "a8", "a9", "b0", "b1"}
    assert consumers[0].stopped
    assert consumers[0].options == {
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    logs[1] = []
    assert await topic.recent_ids(100) == {f"a{i}" for i in range(10)}
