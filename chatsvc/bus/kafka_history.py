"""The history writer of the events topic (issue 21): every record written to the history
store, in stream order, by one replica per partition, and counted as written only once the
store can no longer lose it.

A consumer group (``chatsvc.history``; ``<topic>.history`` for a topic of another name) gives
each partition one writer among the replicas, moved by Kafka when a replica goes. Records are
written in batches (up to ``HISTORY_BATCH_RECORDS`` fetched at once): each room's records in
stream order, the batch's rooms concurrently; a failed write is retried with capped backoff
(logged once per outage) and nothing after it in its room is written first. A record the
store refuses for itself rather than for an outage is skipped after ``BAD_RECORD_ATTEMPTS``
(logged as an error), so one bad record cannot stop a partition's history.

A write the store acked is not yet durable: a CQL node that crashes loses the writes it
acked but had not synced to its commit log (``commitlog_sync: periodic``, the default of
Cassandra and ScyllaDB), and when it held the only copy (one replica, or all of them down at
once) nothing brings them back. The chaos run of issue 21 lost exactly such a row: written
and committed a few milliseconds before the CQL node was killed. So a batch's offsets are
committed only once it has *settled* (``HISTORY_SETTLE_SECONDS`` after its writes, longer
than the store's sync period), and the first failure of a store outage rewinds the writer to
the last commit: everything written since is written again, in stream order, once the store
is back. A writer that meets no failure (nothing to write while the node was down) asks the
store before each commit (``store_ok``, a ping): a store that does not answer then may have
lost what was written, so the writer rewinds once and holds its commits until the store
answers. A writer that stops or dies likewise leaves the unsettled records to the next one.
Every write is idempotent, so a record written twice is harmless. Started by
:class:`chatsvc.bus.kafka_log.KafkaRoomLog` when the chat layer asks for history
(``on_history``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from chatsvc.bus.kafka_client import BACKOFF_CAP_SECONDS, classify, decoded_record, position_of, stop_clients
from chatsvc.bus.log import LogRecord, RecordHandler, StoreCheck
from chatsvc.errors import Unavailable

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
#: How long after its writes a batch is committed (see the module docstring): the store's
#: commit log sync period (10 s by default in Cassandra and ScyllaDB), plus the time a dead
#: node takes to show as a failed request (the request timeout, 5 s by default), plus margin.
#: The price: a store outage, or a writer taking over, writes this much of the stream again.
HISTORY_SETTLE_SECONDS = 20.0
#: At most one commit (and its store check) per this many seconds: a busy writer fetches many
#: batches a second, and each check is a store round trip.
COMMIT_EVERY_SECONDS = 1.0
#: A write that fails with anything but an outage (``Unavailable``: the store refused the
#: record itself, e.g. a record of another version it cannot hold, or a bug) is tried this
#: many times with backoff, then skipped and logged: one bad record must not stop its
#: partition's history for good, and rewinding for it would not help.
BAD_RECORD_ATTEMPTS = 5


class _Rewind(Exception):
    """A store outage began: what was written since the last commit may be lost with it."""


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
        settle_seconds: float = HISTORY_SETTLE_SECONDS,
        store_ok: StoreCheck | None = None,
    ) -> None:
        """``options``: the Kafka client options (brokers, TLS, SASL); ``settle_seconds``:
        how long after its writes a batch is committed; ``store_ok``: asked before each
        commit (raising: the store may have lost what was written)."""
        self._topic = topic
        self._options = options
        self._write = write
        self._base_delay = backoff_seconds
        self._settle = settle_seconds
        self._history: Any = None
        self._task: asyncio.Task[None] | None = None
        #: Set by :meth:`aclose`: finish the batch in hand (written), then stop.
        self._stopping = asyncio.Event()
        self._down: str | None = None
        #: The room whose failure began the outage: only its next write ends it (another
        #: room's write going through while it still fails must not log the outage again).
        self._down_room: str | None = None
        #: Batches written and not committed yet, oldest first: (monotonic time written,
        #: the offsets to commit for them).
        self._unsettled: deque[tuple[float, dict[Any, int]]] = deque()
        #: Set when an outage began: seek back to the last commit before fetching on.
        self._rewind = False
        #: The record (partition, offset) whose failure made the last rewind: until it is
        #: written, its failures are retried in place (a room whose writes keep failing must
        #: not rewind the whole partition over and over).
        self._rewound_at: tuple[int, int] | None = None
        self._store_ok = store_ok
        #: Set when a failed store check rewound the writer: commits wait for the store to
        #: answer again, without rewinding again.
        self._held = False
        self._next_commit = 0.0
        #: Records skipped as unwritable (``BAD_RECORD_ATTEMPTS``), for tests and operators.
        self.skipped = 0

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
        """Write every batch (:meth:`_write_batch`), commit what has settled; rewind to the
        last commit when a store outage begins; rebuild the consumer after a Kafka failure
        (resuming after the last commit: writes are idempotent)."""
        delay = self._base_delay
        while not self._stopping.is_set():
            try:
                if self._history is None:
                    self._history = await self._connect()
                    self._unsettled.clear()  # a new consumer resumes from the last commit
                    self._rewound_at = None
                if self._rewind:
                    await self._seek_to_committed()
                batch = await self._history.getmany(timeout_ms=POLL_MS, max_records=HISTORY_BATCH_RECORDS)
                if batch:
                    started = time.monotonic()
                    await self._write_batch([r for records in batch.values() for r in records])
                    self._unsettled.append(
                        (time.monotonic(), {tp: records[-1].offset + 1 for tp, records in batch.items()})
                    )
                    log.debug(
                        "history writer: wrote %s in %.2fs",
                        ", ".join(
                            f"{tp.partition}@{rs[0].offset}-{rs[-1].offset}" for tp, rs in batch.items()
                        ),
                        time.monotonic() - started,
                    )
                await self._commit_settled()
            except asyncio.CancelledError:
                raise
            except _Rewind:
                self._rewind = True  # no sleep: the writes back off by themselves
                continue
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

    async def _commit_settled(self) -> None:
        """Commit the offsets of the batches written at least ``settle_seconds`` ago (of the
        partitions still assigned: a partition moved away is rewritten from its last commit by
        its new writer), once the store answers (see the module docstring); at most once per
        ``COMMIT_EVERY_SECONDS``."""
        now = time.monotonic()
        cutoff = now - self._settle
        if not self._unsettled or self._unsettled[0][0] > cutoff or now < self._next_commit:
            return
        self._next_commit = now + COMMIT_EVERY_SECONDS
        if self._store_ok is not None and not await self._store_answers():
            return
        offsets: dict[Any, int] = {}
        while self._unsettled and self._unsettled[0][0] <= cutoff:
            offsets.update(self._unsettled.popleft()[1])
        assigned = self._history.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if offsets:
            await self._history.commit(offsets)
            log.debug("history writer: committed %s", offsets)

    async def _store_answers(self) -> bool:
        """Ask the store before a commit. Not answering the first time raises
        :class:`_Rewind` (what was written may be lost with the node); after that the
        commits wait until it answers (False)."""
        assert self._store_ok is not None
        try:
            await self._store_ok()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._held:
                return False
            self._held = True
            reason = getattr(exc, "message", None) or repr(exc)
            log.warning(
                "history writer: the store does not answer before a commit (%s); what was written "
                "since the last commit is written again once it does (logged once per outage)",
                reason,
            )
            raise _Rewind from exc
        if self._held:
            log.info("history writer: the store answers again; commits go on")
            self._held = False
        return True

    async def _seek_to_committed(self) -> None:
        """Fetch on from the last commit of every partition (from the start of one never
        committed): what was written since is written again."""
        consumer = self._history
        self._unsettled.clear()
        # Every partition's commit is read first and all are sought together, with no await
        # between: a fetch issued while the others were still being looked up went out for
        # the partitions sought so far, and the next batch held only those, so a room stuck
        # in it held up the rest of the stream behind a batch that never completes.
        assigned = list(consumer.assignment())
        committed = {tp: await consumer.committed(tp) for tp in assigned}
        never = [tp for tp in assigned if committed[tp] is None]
        if never:  # never committed: from the partition's first record still kept
            committed.update(await consumer.beginning_offsets(never))
        for tp in assigned:
            consumer.seek(tp, committed[tp])
            log.debug("history writer: partition %d rewound to %s", tp.partition, committed[tp])
        self._rewind = False

    async def _write_batch(self, records: list[Any]) -> None:
        """Write one fetched batch: each room's records in stream order, one after the other
        (a room's history must never show a record before an earlier one: catch-up fills
        from the tail only after the store's last record), different rooms concurrently, at
        most ``HISTORY_ROOMS_IN_FLIGHT`` at a time. Returns once every record is written.
        A failing write holds up only its room's later records (retried until written, or
        skipped if the store refuses the record itself); the other rooms of the batch go
        on. Raises :class:`_Rewind` when a store outage begins
        (the batch is then abandoned, and fetched again from the last commit)."""
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

        rewind = False
        try:
            async with asyncio.TaskGroup() as group:
                for room_records in rooms:
                    group.create_task(lane(room_records))
        except* _Rewind:
            rewind = True
        if rewind:
            raise _Rewind

    async def _write_room(self, records: list[Any]) -> None:
        for record in records:
            await self._write_one(record)

    async def _write_one(self, record: Any) -> None:
        """Hand one record to the writer until it takes it (capped backoff, logged once);
        the first failure of an outage raises :class:`_Rewind` instead."""
        assert self._write is not None
        body, room = decoded_record(record)
        if body is None or room is None:
            return  # not a room event (counted and logged by the reader)
        delay = self._base_delay
        attempts = 0
        while True:
            try:
                await self._write(LogRecord(room, position_of(record.offset), body))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = getattr(exc, "message", None) or repr(exc)
                log.debug("history writer: %s offset %d not written: %s", room, record.offset, reason)
                if not isinstance(exc, Unavailable):
                    attempts += 1
                    if attempts >= BAD_RECORD_ATTEMPTS:
                        self.skipped += 1
                        log.error(
                            "history writer skipped %s offset %d after %d attempts (%s: not a store "
                            "outage; the record was delivered live but is not in history)",
                            room,
                            record.offset,
                            attempts,
                            type(exc).__name__,
                        )
                        return
                else:
                    self._outage(record, room, reason, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_SECONDS)
                continue
            if self._down is not None and room == self._down_room:
                log.info("history writer resumed at %s offset %d", room, record.offset)
                self._down = self._down_room = None
            if self._rewound_at == (record.partition, record.offset):
                self._rewound_at = None  # past the outage's first failure: the next may rewind
            return

    def _outage(self, record: Any, room: str, reason: str, exc: Exception) -> None:
        """A write failed for a store outage: log it once per outage; raise
        :class:`_Rewind` for the outage's first failure."""
        if self._down is None:
            self._down_room = room
            log.warning(
                "history writer paused at %s offset %d: %s; retrying (backoff up to %.0fs, "
                "live chat goes on; logged once per outage)",
                room,
                record.offset,
                reason,
                BACKOFF_CAP_SECONDS,
            )
        self._down = reason
        if self._rewound_at is None:
            # The store may have lost writes it acked just before (see the module
            # docstring): go back to the last commit and write everything again.
            self._rewound_at = (record.partition, record.offset)
            log.info("history writer: rewriting from the last commit once the store is back")
            raise _Rewind from exc

    async def aclose(self) -> None:
        """Stop the writer and its consumer; idempotent. A batch already fetched is written
        first (bounded by ``CLOSE_GRACE_SECONDS``), and what has settled is committed; the
        rest is the partition's next writer's to write again. A writer stuck on a store
        outage is cancelled."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait([task], timeout=CLOSE_GRACE_SECONDS)
            if not done:
                task.cancel()
                await asyncio.wait([task], timeout=5)
        consumer, self._history = self._history, None
        await stop_clients(None, consumer)
