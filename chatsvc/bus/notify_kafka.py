"""Offline notifications on a Kafka topic for a push service (issue 24,
``CHATSVC_NOTIFY_TOPIC``); with :mod:`chatsvc.bus.kafka` and :mod:`chatsvc.bus.records`
the only modules importing ``aiokafka``.

One record per (user, message), keyed by the user (a user's notifications share a
partition, so a push service sees them in order), JSON ``{id, user, room, message_id,
sender, preview, kind, created_at_ms}``, with the dedup key ``id`` = ``user:message_id``
also as the ``dedup`` header.

Exactly once per (user, message) is two mechanisms, each for the duplicates it can stop:

* the caller (:class:`chatsvc.chat.notify.Notifier`) produces only after *claiming* the
  (user, message) pair: a lightweight transaction in ScyllaDB, which every replica shares,
  so a client retry that lands on another replica, a retry racing its original, or a
  replica restarted mid-way finds the pair taken and produces nothing;
* this producer is idempotent (``enable_idempotence``, ``acks=all``): its own retries of a
  batch after a lost acknowledgement never write the record twice.

One owner per user (routing each user's notifications to one replica) was the alternative;
it needs a membership protocol that moves owners when replicas come and go, and a
restarted owner still needs a durable record of what it sent, i.e. the claim anyway.

A publish hands the record to the producer (bounded by ``PUBLISH_TIMEOUT_SECONDS``) and
does not wait for the broker: the sender's ack never waits on Kafka's acknowledgement. The
producer retries a record for ``DELIVERY_TIMEOUT_MS`` with its idempotent sequence numbers,
so a broker outage shorter than that costs nothing; chatsvc itself never re-sends a record
(a re-send after an ambiguous timeout is how duplicates happen). A record the producer gives
up on is logged (once per outage) and counted in ``lost``: under a longer outage a
notification can be lost, never duplicated. Stopping flushes what is in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from chatsvc.errors import BusUnavailable, StartupError
from chatsvc.model.rooms import Notification

log = logging.getLogger(__name__)

#: Longest a publish (and so the sender's ack) waits for the producer to take a record.
PUBLISH_TIMEOUT_SECONDS = 3.0
#: How long the producer keeps retrying a record (an outage shorter than this loses nothing).
DELIVERY_TIMEOUT_MS = 30_000
START_TIMEOUT_SECONDS = 15.0
CLOSE_TIMEOUT_SECONDS = 5.0


def notification_record(notification: Notification) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, JSON value and headers of a notification's record."""
    n = notification
    dedup = f"{n.user_id}:{n.message_id}"
    value = {
        "id": dedup,
        "user": n.user_id,
        "room": n.room,
        "message_id": n.message_id,
        "sender": n.sender,
        "preview": n.preview,
        "kind": n.kind,
        "created_at_ms": n.created_at_ms,
    }
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return n.user_id.encode(), body, [("dedup", dedup.encode())]


class KafkaNotifications:
    """Produces notification records to ``topic`` (:class:`chatsvc.chat.notify.NotificationPublisher`)."""

    def __init__(
        self,
        topic: str,
        options: Callable[[], dict[str, Any]],
        *,
        producer_factory: Callable[..., Any] = AIOKafkaProducer,
    ) -> None:
        """``options``: the cluster's client options (the bus's, once started)."""
        self.topic = topic
        self._options = options
        self._factory = producer_factory
        self._producer: Any = None
        self._failing = False
        #: Notifications Kafka did not take (each logged once per outage, never re-sent).
        self.lost = 0

    async def start(self) -> None:
        """Connect the producer; ``StartupError`` with the reason if Kafka does not answer."""
        options = {**self._options(), "request_timeout_ms": DELIVERY_TIMEOUT_MS}
        producer = self._factory(**options, acks="all", enable_idempotence=True, linger_ms=0)
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                await producer.start()
        except (KafkaError, TimeoutError, OSError) as exc:
            await _stop(producer)
            raise StartupError(
                f"notifications topic {self.topic}: Kafka producer did not start ({type(exc).__name__})"
            ) from None
        self._producer = producer
        log.info("offline notifications go to Kafka topic %s", self.topic)

    async def publish(self, notification: Notification) -> None:
        """Hand one record to the producer (bounded by ``PUBLISH_TIMEOUT_SECONDS``);
        ``BusUnavailable`` if it cannot take it. Delivery is not awaited: the producer
        retries it for up to ``DELIVERY_TIMEOUT_MS`` (idempotently: never twice), and a
        record it finally gives up on is logged and counted, never sent again."""
        producer = self._producer
        if producer is None:
            raise BusUnavailable("notifications producer not started")
        key, value, headers = notification_record(notification)
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                delivery = await producer.send(self.topic, value, key=key, headers=headers)
        except (KafkaError, TimeoutError, OSError) as exc:
            self._failed(type(exc).__name__)
            raise BusUnavailable(f"notifications topic {self.topic} unavailable") from None
        delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled():
            self._failed("cancelled")
        elif (error := delivery.exception()) is not None:
            self._failed(type(error).__name__)
        elif self._failing:
            log.info("notifications topic %s: delivering again", self.topic)
            self._failing = False

    def _failed(self, reason: str) -> None:
        self.lost += 1
        if not self._failing:
            log.warning("notifications topic %s: a notification was not delivered (%s)", self.topic, reason)
            self._failing = True

    async def aclose(self) -> None:
        """Flush what is in flight and stop (bounded); idempotent."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop(producer)


async def _stop(producer: Any) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await producer.stop()
    except (KafkaError, TimeoutError, OSError):
        log.warning("notifications producer did not stop cleanly")
