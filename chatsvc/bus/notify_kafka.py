"""Offline notifications on a Kafka topic for a push service (issue 24,
``CHATSVC_NOTIFY_TOPIC``); with :mod:`chatsvc.bus.kafka` and :mod:`chatsvc.bus.records`
the only modules importing ``aiokafka``.

One record per (user, message), keyed by the user (a user's notifications share a
partition, so a push service sees them in order), JSON ``{id, user, room, message_id,
sender, preview, kind, created_at_ms}``, with the dedup key ``id`` = ``user:message_id``
also as the ``dedup`` header.

This module only moves records; *which* records and *when* is the relay's
(:mod:`chatsvc.chat.notify_relay`), which reads them from the store's durable outbox:

* :meth:`KafkaNotifications.produce` sends a batch and waits for the broker's
  acknowledgement of every record (``acks=all``, idempotent: the producer's own retries
  within ``retry_window_ms`` never write a record twice), or says it could not;
* after a failure the outcome of a record is unknown (it may be in the log with its
  acknowledgement lost), so the producer is replaced and the relay asks
  :meth:`KafkaNotifications.recent_ids` for the dedup keys of the topic's newest records
  before it sends anything again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from chatsvc.errors import BusUnavailable, StartupError
from chatsvc.model.rooms import Notification

log = logging.getLogger(__name__)

#: Default of CHATSVC_NOTIFY_RETRY_WINDOW_MS: how long the producer retries a record.
RETRY_WINDOW_MS = 5_000
#: Beyond the retry window, how long a produce waits before calling the batch failed.
PRODUCE_MARGIN_SECONDS = 2.0
START_TIMEOUT_SECONDS = 15.0
CLOSE_TIMEOUT_SECONDS = 5.0
#: Longest a scan of the topic's newest records may take.
SCAN_TIMEOUT_SECONDS = 20.0


def notification_record(notification: Notification) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, JSON value and headers of a notification's record."""
    n = notification
    dedup = n.dedup_id
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
    """Produces notification records to ``topic`` and reads its newest records' dedup keys
    (:class:`chatsvc.chat.notify_relay.NotificationTopic`)."""

    def __init__(
        self,
        topic: str,
        options: Callable[[], dict[str, Any]],
        *,
        retry_window_ms: int = RETRY_WINDOW_MS,
        producer_factory: Callable[..., Any] = AIOKafkaProducer,
        consumer_factory: Callable[..., Any] = AIOKafkaConsumer,
    ) -> None:
        """``options``: the cluster's client options (the bus's, once started)."""
        self.topic = topic
        self._options = options
        self._window_ms = retry_window_ms
        self._producer_factory = producer_factory
        self._consumer_factory = consumer_factory
        self._producer: Any = None

    async def start(self) -> None:
        """Connect the producer; ``StartupError`` with the reason if Kafka does not answer."""
        try:
            await self._connect()
        except BusUnavailable as exc:
            raise StartupError(f"notifications topic {self.topic}: {exc}") from None
        log.info("offline notifications go to Kafka topic %s", self.topic)

    async def _connect(self) -> Any:
        if self._producer is not None:
            return self._producer
        options = {**self._options(), "request_timeout_ms": self._window_ms}
        producer = self._producer_factory(**options, acks="all", enable_idempotence=True, linger_ms=0)
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                await producer.start()
        except (KafkaError, TimeoutError, OSError) as exc:
            await _stop(producer)
            raise BusUnavailable(f"Kafka producer did not start ({type(exc).__name__})") from None
        self._producer = producer
        return producer

    async def produce(self, notifications: Sequence[Notification]) -> None:
        """Send every record and wait for each acknowledgement (bounded by the retry window
        plus a margin); ``BusUnavailable`` if any is not acknowledged, after which the
        producer is replaced and whether a record landed is unknown (see
        :meth:`recent_ids`)."""
        if not notifications:
            return
        producer = await self._connect()
        deliveries: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self._window_ms / 1000 + PRODUCE_MARGIN_SECONDS):
                for notification in notifications:
                    key, value, headers = notification_record(notification)
                    deliveries.append(await producer.send(self.topic, value, key=key, headers=headers))
                await asyncio.gather(*deliveries)
        except (KafkaError, TimeoutError, OSError) as exc:
            for delivery in deliveries:  # nobody will look at them: no "never retrieved" noise
                delivery.add_done_callback(_retrieve)
            await self._reset()
            raise BusUnavailable(
                f"notifications topic {self.topic} did not acknowledge ({type(exc).__name__})"
            ) from None

    async def recent_ids(self, per_partition: int) -> set[str]:
        """The dedup keys of the newest ``per_partition`` records of every partition of the
        topic; ``BusUnavailable`` if the scan cannot finish (the caller must then not assume
        anything is missing)."""
        found: set[str] = set()
        consumer: Any = None
        try:
            async with asyncio.timeout(SCAN_TIMEOUT_SECONDS):
                # The producer's view of the topic's partitions (the consumer's metadata
                # only knows topics it was assigned).
                numbers = await (await self._connect()).partitions_for(self.topic)
                partitions = [TopicPartition(self.topic, p) for p in sorted(numbers)]
                consumer = self._consumer_factory(
                    **self._options(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
                )
                await consumer.start()
                consumer.assign(partitions)
                ends = await consumer.end_offsets(partitions)
                begins = await consumer.beginning_offsets(partitions)
                todo = {}
                for tp in partitions:
                    start = max(begins[tp], ends[tp] - per_partition)
                    if start < ends[tp]:
                        consumer.seek(tp, start)
                        todo[tp] = ends[tp]
                while todo:
                    batch = await consumer.getmany(*todo, timeout_ms=500)
                    for tp, records in batch.items():
                        for record in records:
                            if record.offset < todo.get(tp, 0):
                                found.update(v.decode() for k, v in record.headers if k == "dedup")
                    for tp in [tp for tp, end in todo.items() if await consumer.position(tp) >= end]:
                        del todo[tp]
        except BusUnavailable:
            raise
        except (KafkaError, TimeoutError, OSError, UnicodeDecodeError) as exc:
            raise BusUnavailable(
                f"notifications topic {self.topic} could not be read back ({type(exc).__name__})"
            ) from None
        finally:
            if consumer is not None:
                await _stop(consumer)
        return found

    async def _reset(self) -> None:
        # After a failed batch the idempotent producer's sequence is in doubt: a fresh one.
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop(producer)

    async def aclose(self) -> None:
        """Flush what is in flight and stop (bounded); idempotent."""
        await self._reset()


def _retrieve(delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled():
        delivery.exception()


async def _stop(client: Any) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await client.stop()
    except (KafkaError, TimeoutError, OSError):
        log.warning("a notifications Kafka client did not stop cleanly")
