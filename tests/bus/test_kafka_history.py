"""The events topic's history writer on the real broker (issue 21 phase 2 item 4): a
consumer group writes every record in partition order, pauses through a store outage
(logged once) without skipping anything, rewrites from its last commit when an outage
begins (the store may have lost what it acked last), commits only what has settled, and a
writer that restarts resumes after the last settled record. In-process: the store is a
recording double that can fail (and crash) like CQL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from chatsvc.bus import kafka_history
from chatsvc.bus.kafka_history import history_group
from chatsvc.bus.kafka_log import KafkaRoomLog
from chatsvc.bus.log import LogRecord
from chatsvc.errors import StoreUnavailable
from tests.bus.helpers import new_topic

pytestmark = pytest.mark.integration


class History:
    """Records what was written, per room in order; ``down`` makes writes fail."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[int]] = defaultdict(list)
        self.down = False
        self.refused = 0
        self.changed = asyncio.Event()

    async def write(self, record: LogRecord) -> None:
        if self.down:
            self.refused += 1
            self.changed.set()
            raise StoreUnavailable("no ScyllaDB node reachable (ConnectionRefusedError)")
        self.rooms[record.room].append(record.body["n"])
        self.changed.set()

    async def until(self, total: int, within: float = 30.0) -> None:
        await self.wait(lambda: sum(map(len, self.rooms.values())) >= total, within)

    async def wait(self, done: Callable[[], bool], within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not done():
                self.changed.clear()
                await self.changed.wait()


#: Longer than any of these tests: nothing settles (is committed) unless a test says so.
NEVER_SETTLES = 600.0


def room_log(
    kafka: dict[str, str], topic: str, history: History | CrashingStore, settle: float = NEVER_SETTLES
) -> KafkaRoomLog:
    options = {"bootstrap_servers": [kafka["KAFKA_TEST_PLAINTEXT"]], "request_timeout_ms": 5000}
    log = KafkaRoomLog(topic, lambda: dict(options), backoff_seconds=0.1, history_settle_seconds=settle)

    async def ignore(_: LogRecord) -> None:
        return None

    log.on_record(ignore)
    log.on_history(history.write, settled=history.ping if isinstance(history, CrashingStore) else None)
    return log


def written_in_order(seq: list[int], want: list[int]) -> bool:
    """``seq`` is ``want`` written in order, going back to an earlier record now and then (a
    rewind) and on from there: every run between two steps back is a gapless slice of
    ``want``, and together they cover it."""
    runs: list[list[int]] = []
    for n in seq:
        if runs and n > runs[-1][-1]:
            runs[-1].append(n)
        else:
            runs.append([n])
    for run in runs:
        if run[0] not in want:
            return False
        start = want.index(run[0])
        if run != want[start : start + len(run)]:
            return False
    return set(seq) == set(want)


def test_written_in_order_accepts_rewinds_and_refuses_gaps_and_disorder() -> None:
    assert written_in_order([0, 4, 8, 0, 4, 8, 12], [0, 4, 8, 12])
    assert written_in_order([0, 4, 4, 8], [0, 4, 8])
    assert not written_in_order([0, 8, 0, 8], [0, 4, 8]), "4 never written"
    assert not written_in_order([0, 8, 4], [0, 4, 8]), "8 before 4, then 4 alone"
    assert not written_in_order([0, 4], [0, 4, 8])


async def test_history_is_written_in_order_through_an_outage_rewinds_and_resumes_after_a_restart(
    kafka: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatsvc.bus.kafka_history")
    topic = new_topic()
    assert history_group(topic) == f"{topic}.history" and history_group("chatsvc.events") == "chatsvc.history"
    rooms = [f"room-{i}" for i in range(4)]
    history = History()
    first = room_log(kafka, topic, history)
    await first.start()
    try:
        for n in range(12):
            await first.append(rooms[n % 4], {"n": n})
        await history.until(12)
        history.down = True  # the store goes away mid-stream
        for n in range(12, 24):
            await first.append(rooms[n % 4], {"n": n})
        await history.wait(lambda: history.refused >= 3, within=10)  # retried, not skipped
        assert sum(map(len, history.rooms.values())) == 12, "nothing written while the store is down"
        history.down = False
        await history.wait(lambda: all(history.rooms[r][-1:] == [20 + i] for i, r in enumerate(rooms)))
    finally:
        await first.aclose()
    for i, room in enumerate(rooms):
        # Nothing had settled when the outage began: the writer went back to the start and
        # wrote everything again once the store was back, in stream order.
        assert history.rooms[room] == [i, i + 4, i + 8, *range(i, 24, 4)], history.rooms[room]
    paused = [r for r in caplog.records if "history writer paused" in r.getMessage()]
    resumed = [r for r in caplog.records if "history writer resumed" in r.getMessage()]
    assert len(paused) == 1 and len(resumed) == 1, [r.getMessage() for r in caplog.records]

    # Another writer of the group (a replica restarted, or the partitions moved): nothing was
    # committed (nothing settled), so it writes the whole stream again.
    after = History()
    second = room_log(kafka, topic, after)
    await second.start()
    try:
        for n in range(24, 28):
            await second.append(rooms[n % 4], {"n": n})
        await after.until(28)
    finally:
        await second.aclose()
    assert dict(after.rooms) == {room: list(range(i, 28, 4)) for i, room in enumerate(rooms)}


async def test_settled_records_are_committed_and_a_restarted_writer_resumes_after_them(
    kafka: dict[str, str],
) -> None:
    topic = new_topic()
    rooms = [f"room-{i}" for i in range(4)]
    history = History()
    first = room_log(kafka, topic, history, settle=0.3)
    await first.start()
    try:
        for n in range(12):
            await first.append(rooms[n % 4], {"n": n})
        await history.until(12)
        await asyncio.sleep(2.0)  # settled, and committed at the next (idle) poll
    finally:
        await first.aclose()
    after = History()
    second = room_log(kafka, topic, after, settle=0.3)
    await second.start()
    try:
        for n in range(12, 16):
            await second.append(rooms[n % 4], {"n": n})
        await after.until(4)
        await asyncio.sleep(1.0)  # a re-write of older records would have come by now
    finally:
        await second.aclose()
    assert dict(after.rooms) == {room: [12 + i] for i, room in enumerate(rooms)}


class CrashingStore:
    """A store double that can crash like a CQL node with ``commitlog_sync: periodic``: the
    writes it acked last are gone (not synced yet), and it refuses writes until restarted."""

    def __init__(self) -> None:
        self.rows: dict[str, set[int]] = defaultdict(set)
        self.acked: list[tuple[str, int]] = []
        self.down = False
        self.refused = 0
        self.unanswered = 0
        self.changed = asyncio.Event()

    async def ping(self) -> None:
        """What the writer asks before a commit."""
        self.changed.set()
        if self.down:
            self.unanswered += 1
            raise StoreUnavailable("no ScyllaDB node reachable (ConnectionRefusedError)")

    async def write(self, record: LogRecord) -> None:
        self.changed.set()
        if self.down:
            self.refused += 1
            raise StoreUnavailable("no ScyllaDB node reachable (ConnectionShutdown)")
        self.rows[record.room].add(record.body["n"])
        self.acked.append((record.room, record.body["n"]))

    def crash(self, lose: int) -> list[tuple[str, int]]:
        """Lose the last ``lose`` acked writes and go down; what was lost."""
        self.down = True
        lost = self.acked[-lose:]
        for room, n in lost:
            self.rows[room].discard(n)
        return lost

    async def wait(self, done: Callable[[], bool], within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not done():
                self.changed.clear()
                await self.changed.wait()


async def test_writes_a_crashed_store_lost_are_written_again_once_it_is_back(kafka: dict[str, str]) -> None:
    """The chaos run's lost row (issue 21): the CQL node acked a message's row, the writer
    went on (and, before the fix, committed it), then the node was killed before its commit
    log synced that write. The writer must write it again once the node is back."""
    topic = new_topic()
    rooms = [f"room-{i}" for i in range(4)]
    store = CrashingStore()
    writer = room_log(kafka, topic, store)
    await writer.start()
    try:
        for n in range(12):
            await writer.append(rooms[n % 4], {"n": n})
        await store.wait(lambda: len(store.acked) >= 12)
        lost = store.crash(lose=3)
        for n in range(12, 16):  # live chat goes on; the writer meets the dead store
            await writer.append(rooms[n % 4], {"n": n})
        await store.wait(lambda: store.refused >= 2, within=10)
        store.down = False
        await store.wait(lambda: sum(map(len, store.rows.values())) >= 16)
    finally:
        await writer.aclose()
    assert {room: sorted(ns) for room, ns in store.rows.items()} == {
        room: list(range(i, 16, 4)) for i, room in enumerate(rooms)
    }, f"lost in the crash: {lost}"


async def test_every_replica_reads_every_record_and_replays_the_recent_ones_at_startup(
    kafka: dict[str, str],
) -> None:
    topic = new_topic()
    seen: list[tuple[str, Any, bool]] = []

    async def read(record: LogRecord) -> None:
        seen.append((record.room, record.body["n"], record.replay))

    options = {"bootstrap_servers": [kafka["KAFKA_TEST_PLAINTEXT"]], "request_timeout_ms": 5000}
    writer = KafkaRoomLog(topic, lambda: dict(options))
    writer.on_record(read)
    await writer.start()
    try:
        offsets = [await writer.append("r", {"n": n}) for n in range(3)]
        assert offsets == sorted(offsets) and len(set(offsets)) == 3
    finally:
        await writer.aclose()
    later: list[tuple[str, Any, bool]] = []
    four = asyncio.Event()

    async def read_later(record: LogRecord) -> None:
        later.append((record.room, record.body["n"], record.replay))
        if len(later) >= 4:
            four.set()

    reader = KafkaRoomLog(topic, lambda: dict(options))
    reader.on_record(read_later)
    await reader.start()
    try:
        await reader.append("r", {"n": 3})
        async with asyncio.timeout(15):
            await four.wait()
    finally:
        await reader.aclose()
    assert later == [("r", 0, True), ("r", 1, True), ("r", 2, True), ("r", 3, False)]


class Lanes:
    """A store double that records how many rooms are written at the same moment, and
    refuses the rooms in ``failing`` (one room's store partition unreachable)."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[int]] = defaultdict(list)
        self.failing: set[str] = set()
        self.refused: dict[str, int] = defaultdict(int)
        self.busy = 0
        self.most_busy = 0
        self.changed = asyncio.Event()

    async def write(self, record: LogRecord) -> None:
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            await asyncio.sleep(0.005)  # a store round trip: lets other rooms' writes overlap
            if record.room in self.failing:
                self.refused[record.room] += 1
                raise StoreUnavailable("ScyllaDB request timed out")
            self.rooms[record.room].append(record.body["n"])
        finally:
            self.busy -= 1
            self.changed.set()

    async def wait(self, done: Callable[[], bool], within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not done():
                self.changed.clear()
                await self.changed.wait()


def lanes_log(kafka: dict[str, str], topic: str, lanes: Lanes | None) -> KafkaRoomLog:
    """A room log writing history to ``lanes`` (None: no history writer, append only)."""
    options = {"bootstrap_servers": [kafka["KAFKA_TEST_PLAINTEXT"]], "request_timeout_ms": 5000}
    log = KafkaRoomLog(topic, lambda: dict(options), backoff_seconds=0.1)

    async def ignore(_: LogRecord) -> None:
        return None

    log.on_record(ignore)
    if lanes is not None:
        log.on_history(lanes.write)
    return log


async def test_history_batches_write_rooms_concurrently_in_order_and_commit_only_whole_batches(
    kafka: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A batch's rooms are written at the same time, each in stream order; a room whose
    writes fail holds up only itself (after one rewind to the last commit, which seeks every
    partition at once, so the batch after it holds them all), and its records are not
    committed past: a writer that takes over after a restart writes them (and may rewrite
    the rest of that batch). The outage is logged once, though other rooms' writes go
    through meanwhile."""
    topic = new_topic()
    rooms = [f"room-{i}" for i in range(8)]
    producer = lanes_log(kafka, topic, None)
    await producer.start()
    try:
        # Appended before any writer runs, so the writer fetches them in a few big batches.
        for n in range(160):
            await producer.append(rooms[n % 8], {"n": n})
    finally:
        await producer.aclose()
    first = Lanes()
    first.failing = {"room-3"}
    writer = lanes_log(kafka, topic, first)
    await writer.start()
    try:
        others = [r for r in rooms if r != "room-3"]
        want = {r: list(range(rooms.index(r), 160, 8)) for r in rooms}
        await first.wait(lambda: all(written_in_order(first.rooms[r], want[r]) for r in others))
        await first.wait(lambda: first.refused["room-3"] >= 3, within=10)
    finally:
        await writer.aclose()
    assert first.most_busy > 1, "rooms of a batch are written concurrently"
    assert first.rooms["room-3"] == []
    paused = [r for r in caplog.records if r.getMessage().startswith("history writer paused")]
    assert len(paused) == 1, [r.getMessage() for r in paused]
    for room in others:
        # In stream order; the first failure rewound the writer to its last commit (the
        # store may have lost what it acked last), so a room may go back once and on again.
        assert written_in_order(first.rooms[room], want[room]), f"{room}: {first.rooms[room]}"

    second = Lanes()
    takeover = lanes_log(kafka, topic, second)
    await takeover.start()
    try:
        await second.wait(lambda: len(second.rooms["room-3"]) == 20)
    finally:
        await takeover.aclose()
    assert second.rooms["room-3"] == list(range(3, 160, 8)), "nothing of the failed room was lost"
    for room in rooms:
        assert second.rooms[room] == sorted(set(second.rooms[room])), f"{room}: each once, in order"


async def test_batched_history_on_the_cql_node_is_complete_ordered_and_first_wins_through_an_outage(
    kafka: dict[str, str],
) -> None:
    """The real store behind the batched writer: a store outage in the middle of the stream,
    then a writer taking over (rewriting at most its last batch): every room's history holds
    each message once, at its stream position, the first of two records with one client
    message id, and reads back in stream order."""
    from chatsvc.chat.streams import message_body, record_of  # noqa: PLC0415
    from chatsvc.model.ids import MessageIdGenerator  # noqa: PLC0415
    from chatsvc.model.messages import Message  # noqa: PLC0415
    from chatsvc.settings import Settings  # noqa: PLC0415
    from chatsvc.store.scylla.store import ScyllaStore  # noqa: PLC0415
    from tests.store.conftest import drop_keyspace, new_keyspace, scylla_env  # noqa: PLC0415
    from tests.support.servers import TEST_JWT_SECRET  # noqa: PLC0415

    keyspace = new_keyspace()
    env = scylla_env(keyspace)
    settings = Settings.from_env({"CHATSVC_JWT_SECRET": TEST_JWT_SECRET, **env})
    assert settings.scylla is not None
    store = ScyllaStore(settings.scylla, positions=False)  # positions come from the topic
    await store.open()
    down = False
    refused = 0

    async def write(record: LogRecord) -> None:
        nonlocal refused
        if down:
            refused += 1
            raise StoreUnavailable("no ScyllaDB node reachable (ConnectionRefusedError)")
        found = record_of(record)
        assert isinstance(found, Message)
        await store.append(found)

    topic = new_topic()
    rooms = [f"room-{i}" for i in range(5)]
    ids = MessageIdGenerator()
    positions: dict[str, list[tuple[int, str]]] = defaultdict(list)
    try:
        await store.migrate()
        log = lanes_log(kafka, topic, None)
        log.on_history(write)
        await log.start()
        try:

            async def send(n: int, cmid: str | None = None) -> None:
                room = rooms[n % len(rooms)]
                message = Message(
                    ids.new(), room, "u1", "U1", f"n{n}", int(time.time() * 1000), cmid or f"c{n}"
                )
                pos = await log.append(room, message_body(message, skip_sid=None, host="h"))
                positions[room].append((pos, message.id))

            for n in range(30):
                await send(n)
            down = True
            for n in range(30, 60):
                await send(n)
            await send(60, cmid="c0")  # a late retry of n=0 (room-0): a second record, same key
            await asyncio.sleep(1.0)
            assert refused >= 1, "the writer met the outage"
            down = False
            await wait_for_history(store, rooms, {r: len(positions[r]) - (r == "room-0") for r in rooms})
        finally:
            await log.aclose()
        # Another writer of the group takes over; it rewrites what had not settled.
        again = lanes_log(kafka, topic, None)
        again.on_history(write)
        await again.start()
        try:
            await asyncio.sleep(1.5)
        finally:
            await again.aclose()
        for room in rooms:
            page = await store.history(room, before=None, limit=100)
            got = [(m.pos, m.id) for m in reversed(page.messages)]
            want = [p for p in positions[room] if not (room == "room-0" and p == positions[room][-1])]
            assert got == want, f"{room}: each message once, at its position, in stream order"
            stream = await store.stream_after(room, 0, 100)
            assert [(r.pos, r.id) for r in stream.records] == want
    finally:
        await store.aclose()
        drop_keyspace(env, keyspace)


async def wait_for_history(store: Any, rooms: list[str], counts: dict[str, int]) -> None:
    from tests.support.clients import until  # noqa: PLC0415

    for room in rooms:

        async def written(room: str = room) -> bool:
            return len((await store.history(room, before=None, limit=100)).messages) >= counts[room]

        await until(written, f"{room}'s history written", within=60)


async def test_writes_lost_while_the_writer_had_nothing_to_write_are_written_again(
    kafka: dict[str, str],
) -> None:
    """The store crashes (losing the writes it acked last) and nothing more comes to write, so
    no write fails: the store check before the commit finds it down, the writer goes back to
    its last commit and writes them again once the store is back."""
    topic = new_topic()
    rooms = [f"room-{i}" for i in range(4)]
    store = CrashingStore()
    writer = room_log(kafka, topic, store, settle=1.0)
    await writer.start()
    try:
        for n in range(8):
            await writer.append(rooms[n % 4], {"n": n})
        await store.wait(lambda: len(store.acked) >= 8)
        lost = store.crash(lose=3)
        await store.wait(lambda: store.unanswered >= 1, within=15)
        store.down = False
        await store.wait(lambda: sum(map(len, store.rows.values())) >= 8)
    finally:
        await writer.aclose()
    assert {room: sorted(ns) for room, ns in store.rows.items()} == {
        room: list(range(i, 8, 4)) for i, room in enumerate(rooms)
    }, f"lost in the crash: {lost}"


async def test_a_record_the_store_refuses_for_itself_is_skipped_after_a_few_attempts(
    kafka: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A write failing with anything but an outage (the store refuses that record: one of
    another version, or a bug) is tried BAD_RECORD_ATTEMPTS times, then skipped with one
    error line: the room's later records and the other rooms are written, in order, with no
    rewind and no "paused" outage. (Before, it was retried for ever as if the store were
    down, and the partition's history stopped there.)"""
    topic = new_topic()
    history = History()
    attempts = 0
    write = history.write

    async def refuses_one(record: LogRecord) -> None:
        nonlocal attempts
        if record.room == "bad" and record.body["n"] == 5:
            attempts += 1
            history.changed.set()
            raise ValueError("a record this version cannot store")
        await write(record)

    history.write = refuses_one  # type: ignore[method-assign]
    log = room_log(kafka, topic, history)
    await log.start()
    try:
        for n in range(10):
            await log.append("bad", {"n": n})
            await log.append("good", {"n": n})
        await history.wait(lambda: len(history.rooms["bad"]) == 9 and len(history.rooms["good"]) == 10)
        await asyncio.sleep(0.5)  # nothing more comes
    finally:
        await log.aclose()
    assert history.rooms["bad"] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert history.rooms["good"] == list(range(10))
    assert attempts == kafka_history.BAD_RECORD_ATTEMPTS
    messages = [r.getMessage() for r in caplog.records]
    skipped = [m for m in messages if m.startswith("history writer skipped bad offset")]
    assert len(skipped) == 1 and "ValueError" in skipped[0] and "cannot store" not in skipped[0], skipped
    assert not [m for m in messages if m.startswith("history writer paused") or "rewriting" in m]
