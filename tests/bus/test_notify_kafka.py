"""The notifications producer's contract with aiokafka (a recording double of the
producer): idempotent settings, one send per notification and never a re-send, failures
translated, counted and logged once per outage. The real broker: tests/chat/test_notify_cluster.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from chatsvc.bus.notify_kafka import DELIVERY_TIMEOUT_MS, KafkaNotifications
from chatsvc.errors import BusUnavailable, StartupError
from chatsvc.model.rooms import Notification

NOTE = Notification("bob", "dm:x", "01J00000000000000000000001", "alice", "hi", "direct", 1)


class Producer:
    """Records what aiokafka's producer would be asked; each send returns a delivery future."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.deliveries: list[asyncio.Future[Any]] = []
        self.fail_start: Exception | None = None
        self.fail_send: Exception | None = None
        self.stopped = False

    async def start(self) -> None:
        if self.fail_start is not None:
            raise self.fail_start

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]) -> Any:
        if self.fail_send is not None:
            raise self.fail_send
        self.sent.append((topic, key, value, headers))
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery


@pytest.fixture
def made() -> list[Producer]:
    return []


@pytest.fixture
def topic(made: list[Producer]) -> KafkaNotifications:
    def factory(**options: Any) -> Producer:
        made.append(Producer(**options))
        return made[-1]

    return KafkaNotifications(
        "chatsvc.notify", lambda: {"bootstrap_servers": ["b:1"]}, producer_factory=factory
    )


async def test_the_producer_is_idempotent_and_sends_each_notification_once(
    topic: KafkaNotifications, made: list[Producer]
) -> None:
    with pytest.raises(BusUnavailable):
        await topic.publish(NOTE)  # not started
    await topic.start()
    (producer,) = made
    assert producer.options == {
        "bootstrap_servers": ["b:1"],
        "request_timeout_ms": DELIVERY_TIMEOUT_MS,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
    }
    await topic.publish(NOTE)
    assert [(t, k, h) for t, k, _, h in producer.sent] == [
        ("chatsvc.notify", b"bob", [("dedup", b"bob:01J00000000000000000000001")])
    ]
    producer.deliveries[0].set_result(None)
    await asyncio.sleep(0)
    assert topic.lost == 0
    await topic.aclose()
    assert producer.stopped
    await topic.aclose()  # idempotent


async def test_an_undelivered_record_is_counted_and_logged_once_never_re_sent(
    topic: KafkaNotifications, made: list[Producer], caplog: pytest.LogCaptureFixture
) -> None:
    await topic.start()
    producer = made[0]
    with caplog.at_level(logging.INFO, logger="chatsvc.bus.notify_kafka"):
        for _ in range(3):
            await topic.publish(NOTE)
        producer.deliveries[0].set_exception(KafkaTimeoutError())
        producer.deliveries[1].set_exception(KafkaTimeoutError())
        producer.deliveries[2].cancel()
        await asyncio.sleep(0)
        producer.fail_send = KafkaConnectionError()
        with pytest.raises(BusUnavailable, match=r"chatsvc\.notify"):
            await topic.publish(NOTE)
        producer.fail_send = None
        await topic.publish(NOTE)
        producer.deliveries[3].set_result(None)
        await asyncio.sleep(0)
    assert topic.lost == 4
    assert len(producer.sent) == 4  # nothing sent twice
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Traceback" not in caplog.text
    assert "delivering again" in caplog.text


async def test_a_producer_that_cannot_start_is_one_startup_error(
    made: list[Producer],
) -> None:
    def factory(**options: Any) -> Producer:
        made.append(Producer(**options))
        made[-1].fail_start = KafkaConnectionError()
        return made[-1]

    topic = KafkaNotifications("chatsvc.notify", dict, producer_factory=factory)
    with pytest.raises(StartupError, match=r"chatsvc\.notify.*KafkaConnectionError"):
        await topic.start()
    assert made[0].stopped
