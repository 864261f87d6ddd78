"""The history writer of the events topic (issue 21): every record written to the history
store once, in stream order, by one replica per partition.

A consumer group (``chatsvc.history``; ``<topic>.history`` for a topic of another name) gives
each partition one writer among the replicas, moved by Kafka when a replica goes. Records are
written in batches (up to ``HISTORY_BATCH_RECORDS`` fetched at once): each room's records in
stream order, the batch's rooms concurrently; a failed write is retried with capped backoff
(logged once per outage) and nothing after it in its room is written first; the group offsets
are committed only after the whole batch is written, so a writer that dies resumes, wherever
it resumes, after the last batch written (a record may be written twice: the writes are
idempotent). Started by :class:`chatsvc.bus.kafka_log.KafkaRoomLog` when the chat layer asks
for history (``on_history``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from chatsvc.bus.kafka_client import BACKOFF_CAP_SECONDS, classify, decoded_record, position_of, stop_clients
from chatsvc.bus.log import LogRecord, RecordHandler

log = logging.getLogger(__name__)

POLL_MS = 500
#: How long :meth:`KafkaHistoryWriter.aclose` lets the batch in hand finish (write and commit).
CLOSE_GRACE_SECONDS = 5.0
#: A history writer paused by a store outage keeps its partitions this long before the group
#: gives them to another replica (which would be paused by the same outage).
HISTORY_MAX_POLL_INTERVAL_MS = 1_800_000
#: Records the history writer takes per batch (its offsets are committed once all are written).
HISTORY_BATCH_RECORDS = 500
#: Rooms of one batch written at the same time (each room's records stay in stream order).
HISTORY_ROOMS_IN_FLIGHT = 32


def history_group(topic: str) -> str:
    """The history writers' consumer group of ``topic``."""
    return "chatsvc.history" if topic == "chatsvc.events" else f"{topic}.history"


class KafkaHistoryWriter:
    """Writes every record of the events topic to history with ``write`` (see the module
    docstring); :meth:`start` runs it in the background, :meth:`aclose` stops it."""

    def __init__(
        self,
        topic: str,
        options: Callable[[], dict[str, Any]],
        write: RecordHandler,
        *,
        backoff_seconds: float = 0.5,
    ) -> None:
        """``options``: the Kafka client options (brokers, TLS, SASL)."""
        self._topic = topic
        self._options = options
        self._write = write
        self._base_delay = backoff_seconds
        self._history: Any = None
        self._task: asyncio.Task[None] | None = None
        #: Set by :meth:`aclose`: finish the batch in hand (written and committed), then stop.
        self._stopping = asyncio.Event()
        self._down: str | None = None

    def start(self) -> None:
        """Run the writer in the background (it connects, and reconnects, by itself)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="chatsvc-history-writer")

    async def _connect(self) -> Any:
        consumer = AIOKafkaConsumer(
            self._topic,
            **self._options(),
            group_id=history_group(self._topic),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=HISTORY_MAX_POLL_INTERVAL_MS,
        )
        try:
            await consumer.start()
        except BaseException:
            await stop_clients(None, consumer)
            raise
        return consumer

    async def _run(self) -> None:
        """Write every batch (:meth:`_write_batch`), then commit its offsets; rebuild the
        consumer after a failure (resuming after the last commit: writes are idempotent)."""
        delay = self._base_delay
        while not self._stopping.is_set():
            try:
                if self._history is None:
                    self._history = await self._connect()
                batch = await self._history.getmany(timeout_ms=POLL_MS, max_records=HISTORY_BATCH_RECORDS)
                if batch:
                    await self._write_batch([r for records in batch.values() for r in records])
                    await self._history.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "history writer: %s; resuming from the last committed record",
                    classify(exc, topic=self._topic),
                )
                consumer, self._history = self._history, None
                await stop_clients(None, consumer)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_SECONDS)
                continue
            delay = self._base_delay

    async def _write_batch(self, records: list[Any]) -> None:
        """Write one fetched batch: each room's records in stream order, one after the other
        (a room's history must never show a record before an earlier one: catch-up fills
        from the tail only after the store's last record), different rooms concurrently, at
        most ``HISTORY_ROOMS_IN_FLIGHT`` at a time. Returns once every record is written, so
        the batch's offsets may then be committed. A failing write holds up only its room's
        later records (retried until written); the other rooms of the batch go on."""
        by_room: dict[bytes, list[Any]] = {}
        for record in records:
            by_room.setdefault(record.key or b"", []).append(record)
        rooms = list(by_room.values())
        if len(rooms) == 1:
            await self._write_room(rooms[0])
            return
        lanes = asyncio.Semaphore(HISTORY_ROOMS_IN_FLIGHT)

        async def lane(room_records: list[Any]) -> None:
            async with lanes:
                await self._write_room(room_records)

        async with asyncio.TaskGroup() as group:
            for room_records in rooms:
                group.create_task(lane(room_records))

    async def _write_room(self, records: list[Any]) -> None:
        for record in records:
            await self._write_one(record)

    async def _write_one(self, record: Any) -> None:
        """Hand one record to the writer until it takes it (capped backoff, logged once)."""
        assert self._write is not None
        body, room = decoded_record(record)
        if body is None or room is None:
            return  # not a room event (counted and logged by the reader)
        delay = self._base_delay
        while True:
            try:
                await self._write(LogRecord(room, position_of(record.offset), body))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = getattr(exc, "message", None) or repr(exc)
                if self._down is None:
                    log.warning(
                        "history writer paused at %s offset %d: %s; retrying (backoff up to %.0fs, "
                        "live chat goes on; logged once per outage)",
                        room,
                        record.offset,
                        reason,
                        BACKOFF_CAP_SECONDS,
                    )
                self._down = reason
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_SECONDS)
                continue
            if self._down is not None:
                log.info("history writer resumed at %s offset %d", room, record.offset)
                self._down = None
            return

    async def aclose(self) -> None:
        """Stop the writer and its consumer; idempotent. A batch already fetched is written
        and committed first (bounded by ``CLOSE_GRACE_SECONDS``), so the partition's next
        writer does not write it again; a writer stuck on a store outage is cancelled."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait([task], timeout=CLOSE_GRACE_SECONDS)
            if not done:
                task.cancel()
                await asyncio.wait([task], timeout=5)
        consumer, self._history = self._history, None
        await stop_clients(None, consumer)
