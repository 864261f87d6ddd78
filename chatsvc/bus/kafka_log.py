"""The room streams on Kafka (issue 21): the events topic as a :class:`~chatsvc.bus.log.RoomLog`.

The second half of the Kafka adapter (chatsvc.bus.kafka is the fan-out half and lends its
connection options; chatsvc.bus.kafka_client the error classification and client shutdown). Design, and why:

* **One topic, keyed by room** (``KAFKA_EVENTS_TOPIC``, default ``chatsvc.events``): a room's
  records share one partition, so a record's offset there, plus one, is its position in
  the room's stream, assigned once by the broker, in the order every reader reads it (plus
  one: position 0 means "before every record", as in the other stores, so the first record
  of a partition, at offset 0, is not taken as already seen). Offsets of a partition are
  shared by its rooms: a room's positions grow but are not contiguous.
* **Durable before acked.** The producer is idempotent with ``acks=all``; :meth:`append`
  returns the offset only once the broker acknowledged the record, and gives up after
  ``APPEND_TIMEOUT_SECONDS`` with ``BusUnavailable`` (the record may still land later: the
  chat layer deduplicates a retried message, docs/delivery.md).
* **Every replica reads every partition** (no consumer group), from the end at startup, but
  first re-reads the last ``REPLAY_RECORDS`` of each partition marked ``replay``: the
  consumers' dedup windows and in-memory tails are rebuilt from the stream, not lost with
  a restart. After a broker outage reading resumes from the offsets reached.
* **History is written from the log** (:meth:`KafkaRoomLog.on_history`): one writer per
  partition among the replicas, through a consumer group (chatsvc.bus.kafka_history).
* **Interest-based routing** (``KAFKA_EVENTS_ROUTING``, off by default; docs/scaling.md):
  every partition stays assigned but only the wanted ones are fetched
  (chatsvc.bus.interest): :meth:`KafkaRoomLog.follow` (a local socket entering a room, a
  send) starts reading a room's partition from its last ``REPLAY_RECORDS`` (marked
  ``replay``, rebuilding windows and tails as at startup) and returns once they are handed
  over, so everything after is live (:meth:`KafkaRoomLog.follow_rooms`: many rooms, one start
  per partition); a partition no longer wanted is paused and its rooms released
  (:meth:`KafkaRoomLog.on_release`), and one wanted but not read (a follow that failed) is
  started by the reader itself.
* **Failures are loud once**: the reader logs an outage once and retries with capped
  exponential backoff; a record that is not JSON is counted and skipped (logged once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from chatsvc.bus.interest import PartitionInterest
from chatsvc.bus.kafka_client import (
    BACKOFF_CAP_SECONDS,
    REQUEST_TIMEOUT_MS,
    acked_send,
    classify,
    decoded_record,
    position_of,
    stop_clients,
)
from chatsvc.bus.kafka_history import HISTORY_SETTLE_SECONDS, KafkaHistoryWriter
from chatsvc.bus.kafka_retention import check_events_topic
from chatsvc.bus.log import LogRecord, RecordHandler, ReleaseHandler, StoreCheck
from chatsvc.errors import BusUnavailable, StartupError
from chatsvc.metrics import Metrics

log = logging.getLogger(__name__)

APPEND_TIMEOUT_SECONDS = 3.0
"""Longest a send waits for the broker's ack before it is refused ``bus_unavailable``."""
REPLAY_RECORDS = 2_000
"""Records per partition re-read at startup to rebuild dedup windows and tails."""
POLL_MS = 500
START_ATTEMPTS = 5
#: Routing: a partition is read on this long after its last local room there was left.
RELEASE_AFTER_SECONDS = 60.0
#: Routing: the longest a join or send waits for its partition's replay.
FOLLOW_TIMEOUT_SECONDS = 5.0


def reader_fetch_options() -> dict[str, int]:
    """How the events reader fetches: always eagerly (issue 26). Every record is on some
    sender's ack path (the sender waits for its own reader) and on every other replica's
    live delivery, so the broker answers a fetch as soon as one record is committed
    (``fetch_min_bytes=1``); the fan-out bus's batched mode (``KAFKA_FETCH_*``, or adaptive)
    would add its wait to every message. An idle reader's fetch waits ``POLL_MS`` at the
    broker, one empty answer per half second. Measured in docs/delivery.md."""
    return {"fetch_min_bytes": 1, "fetch_max_wait_ms": POLL_MS}


class KafkaRoomLog:
    """The events topic: append with ``acks=all`` and read every partition in order."""

    def __init__(
        self,
        topic: str,
        options: Callable[[], dict[str, Any]],
        *,
        probe: Callable[[], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
        backoff_seconds: float = 0.5,
        min_retention_hours: int | None = None,
        routing: bool = False,
        interest: Callable[[], Iterable[str]] | None = None,
        release_after: float = RELEASE_AFTER_SECONDS,
        history_settle_seconds: float = HISTORY_SETTLE_SECONDS,
    ) -> None:
        """``options``: the Kafka client options (brokers, TLS, SASL); ``probe``: the fan-out
        bus's health check, so an outage it knows of refuses appends at once;
        ``min_retention_hours``: check the topic's retention against it at startup
        (chatsvc.bus.kafka_retention; None: no check); ``routing``: read only wanted
        partitions, ``interest`` giving the rooms with a local member;
        ``history_settle_seconds``: how long after its writes the history writer commits a
        batch (chatsvc.bus.kafka_history)."""
        self._min_retention_hours = min_retention_hours
        self._history_settle = history_settle_seconds
        self._topic = topic
        self._options = options
        self._probe = probe
        self._metrics = metrics or Metrics()
        self._base_delay = backoff_seconds
        self._producer: Any = None
        self._consumer: Any = None
        self._handler: RecordHandler | None = None
        self._positions: dict[int, int] = {}
        self._live_from: dict[int, int] = {}
        self._partitions: list[int] = []
        self._reader: asyncio.Task[None] | None = None
        self._down: str | None = None
        self._closed = False
        self._undecodable = False
        self._write_record: RecordHandler | None = None
        self._store_ok: StoreCheck | None = None
        self._history: KafkaHistoryWriter | None = None
        self._routing = routing
        self._interest_rooms = interest or (lambda: ())
        self._release_after = release_after
        self._interest: PartitionInterest | None = None
        self._reading: set[int] = set()
        self._catching_up: dict[int, tuple[int, asyncio.Future[None]]] = {}
        self._release: ReleaseHandler | None = None
        self._next_release = 0.0
        self._follow_lock = asyncio.Lock()
        self._starter: asyncio.Task[None] | None = None

    @property
    def partitions(self) -> int:
        """The topic's partition count (known after :meth:`start`)."""
        return len(self._partitions)

    def on_record(self, handler: RecordHandler) -> None:
        """The one handler of every record read."""
        self._handler = handler

    def on_history(self, writer: RecordHandler, *, settled: StoreCheck | None = None) -> None:
        """Write every record to history with ``writer``; ``settled`` is asked before a
        commit (see the module docstring)."""
        self._write_record = writer
        self._store_ok = settled

    async def start(self) -> None:
        """Start producer and reader; retry a few times (the topic may be being created)."""
        delay, reason = self._base_delay, ""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = classify(exc, topic=self._topic)
                log.warning(
                    "Kafka events topic %s: attempt %d/%d failed: %s",
                    self._topic,
                    attempt,
                    START_ATTEMPTS,
                    reason,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_SECONDS)
                continue
            self._reader = asyncio.create_task(self._read(), name="chatsvc-room-log")
            if self._write_record is not None:
                self._history = KafkaHistoryWriter(
                    self._topic,
                    self._options,
                    self._write_record,
                    backoff_seconds=self._base_delay,
                    settle_seconds=self._history_settle,
                    store_ok=self._store_ok,
                )
                self._history.start()
            log.info("Kafka events topic %s: %d partition(s)", self._topic, len(self._partitions))
            if self._min_retention_hours is not None:
                await check_events_topic(self._options(), self._topic, self._min_retention_hours)
            return
        raise StartupError(f"cannot use the Kafka events topic {self._topic}: {reason}")

    async def _connect(self) -> None:
        options = self._options()
        producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True, linger_ms=0)
        try:
            async with asyncio.timeout(3 * REQUEST_TIMEOUT_MS / 1000):
                await producer.start()
                partitions = sorted(await producer.partitions_for(self._topic) or ())
                if not partitions:
                    raise BusUnavailable(f"topic {self._topic} has no partitions yet")
                consumer = await self._start_consumer(options, partitions)
        except BaseException:
            await stop_clients(producer, None)
            raise
        self._producer, self._consumer, self._partitions = producer, consumer, partitions
        if self._routing:
            self._interest = PartitionInterest(
                room_partitioner(partitions), self._interest_rooms, self._release_after
            )

    async def _start_consumer(self, options: dict[str, Any], partitions: list[int]) -> Any:
        consumer = AIOKafkaConsumer(
            **options,
            **reader_fetch_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
            tps = [TopicPartition(self._topic, p) for p in partitions]
            consumer.assign(tps)
            if not self._positions:  # first start: replay a little, then live from the end
                ends = await consumer.end_offsets(tps)
                begins = await consumer.beginning_offsets(tps)
                for tp in tps:
                    self._live_from[tp.partition] = ends[tp]
                    self._positions[tp.partition] = max(begins[tp], ends[tp] - REPLAY_RECORDS)
            for tp in tps:
                consumer.seek(tp, self._positions[tp.partition])
            self._pause_unread(consumer, tps)
        except BaseException:
            await stop_clients(None, consumer)
            raise
        return consumer

    async def check(self) -> None:
        """``BusUnavailable`` while closed, while the reader is down, or while the fan-out
        bus (same brokers) knows Kafka to be down."""
        if self._closed or self._producer is None:
            raise BusUnavailable("Kafka events topic not connected")
        if self._down is not None:
            raise BusUnavailable(f"Kafka events topic unavailable: {self._down}")
        if self._probe is not None:
            await self._probe()

    async def append(self, room: str, body: dict[str, Any]) -> int:
        """Produce to ``room``'s partition; the position (offset + 1) once the broker acked
        (``acks=all``)."""
        await self.check()
        value = json.dumps(body, separators=(",", ":")).encode()
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + APPEND_TIMEOUT_SECONDS
        try:
            metadata = await acked_send(self._producer, self._topic, deadline, value=value, key=room.encode())
        except TimeoutError:
            self._metrics.bus_errors.labels("append").inc()
            raise BusUnavailable(
                f"Kafka did not acknowledge the event within {APPEND_TIMEOUT_SECONDS:.0f}s"
            ) from None
        except KafkaError as exc:
            self._metrics.bus_errors.labels("append").inc()
            raise BusUnavailable(f"Kafka refused the event: {classify(exc, topic=self._topic)}") from None
        finally:
            self._metrics.bus_latency.observe(loop.time() - started)
        return position_of(int(metadata.offset))

    async def _read(self) -> None:
        """Hand every record to the handler in partition order, forever; reconnect with
        capped backoff after a failure (logged once per outage)."""
        delay = self._base_delay
        while True:
            try:
                if self._consumer is None:
                    self._consumer = await self._start_consumer(self._options(), self._partitions)
                batch = await self._consumer.getmany(timeout_ms=POLL_MS)
                for records in batch.values():
                    for record in records:
                        await self._hand_over(record)
                        self._positions[record.partition] = record.offset + 1
                    self._metrics.events_read.inc(len(records))
                    self._caught_up(records[-1].partition)
                self._release_unwanted()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = classify(exc, topic=self._topic)
                if self._down is None:
                    log.warning(
                        "Kafka events topic unavailable: %s; retrying (backoff up to %.0fs)",
                        reason,
                        BACKOFF_CAP_SECONDS,
                    )
                self._down = reason
                consumer, self._consumer = self._consumer, None
                await stop_clients(None, consumer)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_SECONDS)
                continue
            if self._down is not None:
                log.info("Kafka events topic readable again")
                self._down = None
            delay = self._base_delay

    async def _hand_over(self, record: Any) -> None:
        body, room = decoded_record(record)
        if body is None or room is None:
            self._metrics.bus_errors.labels("decode").inc()
            if not self._undecodable:
                self._undecodable = True
                log.warning(
                    "skipping records of %s that are not room events (first: offset %d)",
                    self._topic,
                    record.offset,
                )
            return
        if self._handler is None:
            return
        replay = record.offset < self._live_from.get(record.partition, 0)
        try:
            await self._handler(LogRecord(room, position_of(record.offset), body, replay))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The handler's own failure: skipping the record keeps every other room going.
            log.warning("room event at %s offset %d not applied: %r", room, record.offset, exc)

    # -- interest-based routing (KAFKA_EVENTS_ROUTING, docs/scaling.md) -----------------------

    def on_release(self, handler: ReleaseHandler) -> None:
        """Call ``handler(owns)`` when partitions stop being read (routing only)."""
        self._release = handler

    async def follow(self, room: str) -> None:
        """Read ``room``'s partition (see :class:`~chatsvc.bus.log.RoomLog`): a no-op without
        routing or when it is read already; else start it at its last ``REPLAY_RECORDS`` and
        wait (bounded) until they are handed over."""
        if not self._routing:
            return
        interest, consumer = self._interest, self._consumer
        if interest is None or consumer is None:
            raise BusUnavailable("Kafka events topic not connected")
        await self._follow_partition(consumer, interest, interest.partition_of(room), room)

    async def follow_rooms(self, rooms: Iterable[str]) -> None:
        """:meth:`follow` every room of ``rooms``, each partition once (a user's many private
        rooms cost one start per partition they are on, at most the topic's partitions), all
        at the same time; ``BusUnavailable`` if any partition could not be started in time."""
        if not self._routing:
            return
        interest, consumer = self._interest, self._consumer
        if interest is None or consumer is None:
            raise BusUnavailable("Kafka events topic not connected")
        by_partition: dict[int, str] = {}
        for room in rooms:
            by_partition.setdefault(interest.partition_of(room), room)
        await asyncio.gather(
            *(self._follow_partition(consumer, interest, p, room) for p, room in by_partition.items())
        )

    async def _follow_partition(
        self, consumer: Any, interest: PartitionInterest, partition: int, room: str
    ) -> None:
        interest.hold(partition, time.monotonic())
        if partition not in self._reading:
            async with self._follow_lock:
                if partition not in self._reading:
                    await self._start_reading(consumer, partition)
        waiting = self._catching_up.get(partition)
        if waiting is None:
            return
        try:
            async with asyncio.timeout(FOLLOW_TIMEOUT_SECONDS):
                await asyncio.shield(waiting[1])
        except TimeoutError:
            raise BusUnavailable(f"the room stream of {room} was not read in time; retry") from None

    async def _start_reading(self, consumer: Any, partition: int) -> None:
        tp = TopicPartition(self._topic, partition)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_MS / 1000):
                end = (await consumer.end_offsets([tp]))[tp]
                begin = (await consumer.beginning_offsets([tp]))[tp]
        except (KafkaError, TimeoutError) as exc:
            raise BusUnavailable(
                f"Kafka events topic unavailable: {classify(exc, topic=self._topic)}"
            ) from None
        if consumer is not self._consumer:
            raise BusUnavailable("Kafka events topic reconnecting; retry")
        start = max(begin, end - REPLAY_RECORDS)
        self._live_from[partition] = end
        self._positions[partition] = start
        if start < end:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._catching_up[partition] = (end, future)
        consumer.seek(tp, start)
        consumer.resume(tp)
        self._reading.add(partition)
        self._metrics.events_partitions_read.set(len(self._reading))

    def _caught_up(self, partition: int) -> None:
        waiting = self._catching_up.get(partition)
        if waiting is not None and self._positions.get(partition, 0) >= waiting[0]:
            del self._catching_up[partition]
            if not waiting[1].done():
                waiting[1].set_result(None)

    def _pause_unread(self, consumer: Any, tps: list[Any]) -> None:
        """Routing: fetch only the partitions being read (a new consumer fetches all)."""
        if not self._routing:
            return
        for tp in tps:
            if tp.partition not in self._reading:
                consumer.pause(tp)
        self._metrics.events_partitions_read.set(len(self._reading))

    def _release_unwanted(self) -> None:
        """Routing, about once a second: stop fetching partitions no longer wanted."""
        now = time.monotonic()
        interest, consumer = self._interest, self._consumer
        if interest is None or consumer is None or now < self._next_release:
            return
        self._next_release = now + 1.0
        wanted = interest.wanted(now)
        self._start_missed(consumer, interest, wanted)
        gone = {p for p in self._reading if p not in wanted and p not in self._catching_up}
        if not gone:
            return
        for partition in gone:
            consumer.pause(TopicPartition(self._topic, partition))
            self._reading.discard(partition)
        self._metrics.events_partitions_read.set(len(self._reading))
        log.debug("events topic: stopped reading partition(s) %s", sorted(gone))
        if self._release is not None:
            self._release(lambda room: interest.partition_of(room) in gone)

    def _start_missed(self, consumer: Any, interest: PartitionInterest, wanted: set[int]) -> None:
        """Start, in the background, wanted partitions that are not read: a follow that
        failed (broker briefly unreachable at a connect), so interest registered without a
        successful follow is read from the next second on, not never. One start at a time."""
        missed = sorted(wanted - self._reading)
        if not missed or (self._starter is not None and not self._starter.done()):
            return

        async def start() -> None:
            try:
                for partition in missed:
                    await self._follow_partition(consumer, interest, partition, f"partition {partition}")
            except BusUnavailable as exc:
                log.debug("events topic: could not start a wanted partition yet: %s", exc.message)

        self._starter = asyncio.create_task(start(), name="chatsvc-room-log-start")

    async def aclose(self) -> None:
        """Stop the reader, the history writer and the clients (bounded); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._history is not None:
            await self._history.aclose()
        for task in (self._reader, self._starter):
            if task is not None:
                task.cancel()
                await asyncio.wait([task], timeout=5)
        producer, consumer = self._producer, self._consumer
        self._producer = self._consumer = None
        await stop_clients(producer, consumer)


def room_partitioner(partitions: list[int]) -> Callable[[str], int]:
    """A room's partition, as the producer's default partitioner picks it for the key."""
    ordered = sorted(partitions)

    def partition_of(room: str) -> int:
        return ordered[(int(murmur2(room.encode())) & 0x7FFFFFFF) % len(ordered)]

    return partition_of
