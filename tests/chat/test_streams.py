"""Cluster mode's room streams (issue 21 phase 2) on an in-memory log double standing in for
the Kafka events topic, two replicas' ChatServices each on its own recording emitter and one
shared SQLite store: positions are the log's offsets, acks wait for the sender's own
replica, the first record with a client message id wins everywhere, a refused append
delivers nothing, history is written from the log and catches up after a store outage.
The real broker: tests/bus/test_kafka_streams.py and test_kafka_history.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatsvc.auth.identity import Identity
from chatsvc.bus.log import LogRecord, RecordHandler
from chatsvc.chat.service import ChatService, Draft
from chatsvc.chat.streams import DEDUP_WINDOW, RoomStreams, message_body
from chatsvc.chat.wire import parse_position
from chatsvc.errors import BusUnavailable, StoreUnavailable
from chatsvc.metrics import Metrics
from chatsvc.model.messages import Message
from chatsvc.settings import Limits
from chatsvc.store.sqlite import SqliteStore
from tests.chat.test_service import Recorder

ALICE = Identity("alice", "Alice")
ROOM = "stocks.AAPL"


class Topic:
    """One partition every replica reads: offsets shared by all rooms, like Kafka's."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.readers: list[MemoryLog] = []
        #: The history writers' group: the first replica's writer has the only partition.
        self.writer: RecordHandler | None = None
        self.unwritten: asyncio.Queue[LogRecord] = asyncio.Queue()
        self.refuse = False
        #: The broker takes the record but the producer's ack is lost (a timed-out produce).
        self.lose_acks = False
        #: The history writer holds off (tests/chat/test_changes.py); ``written`` counts.
        self.writing = asyncio.Event()
        self.writing.set()
        self.written = 0

    def append(self, room: str, body: dict[str, Any]) -> int:
        if self.refuse:
            raise BusUnavailable("Kafka unavailable: connection refused")
        self.records.append((room, body))
        offset = len(self.records) + 99  # not starting at 1: offsets are opaque
        for reader in self.readers:
            reader.pending.put_nowait(LogRecord(room, offset, body))
        self.unwritten.put_nowait(LogRecord(room, offset, body))
        if self.lose_acks:
            raise BusUnavailable("Kafka did not acknowledge the event within 3s")
        return offset


class MemoryLog:
    """A replica's view of :class:`Topic` (a :class:`~chatsvc.bus.log.RoomLog`)."""

    partitions = 1

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        self.pending: asyncio.Queue[LogRecord] = asyncio.Queue()
        self.handler: RecordHandler | None = None
        self.task: asyncio.Task[None] | None = None
        topic.readers.append(self)

    def on_record(self, handler: RecordHandler) -> None:
        self.handler = handler

    def on_release(self, handler: Any) -> None:
        """Every replica reads the one partition: nothing is ever released."""

    async def follow(self, room: str) -> None:
        """Every replica reads the one partition already."""

    def on_history(self, writer: RecordHandler) -> None:
        if self.topic.writer is None:
            self.topic.writer = writer
            self.writes = True

    writes = False
    writer_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._read())
        if self.writes:
            self.writer_task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        """In order; a failed write is retried until it succeeds, nothing after it first."""
        while True:
            record = await self.topic.unwritten.get()
            assert self.topic.writer is not None
            await self.topic.writing.wait()
            while True:
                try:
                    await self.topic.writer(record)
                    self.topic.written += 1
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.01)

    async def _read(self) -> None:
        while True:
            record = await self.pending.get()
            assert self.handler is not None
            await self.handler(record)

    async def check(self) -> None:
        if self.topic.refuse:
            raise BusUnavailable("down")

    async def aclose(self) -> None:
        for task in (self.task, self.writer_task):
            if task is not None:
                task.cancel()

    async def append(self, room: str, body: dict[str, Any]) -> int:
        await asyncio.sleep(0)
        return self.topic.append(room, body)


Replica = tuple[ChatService, Recorder]


@pytest.fixture
async def replicas(store: SqliteStore) -> AsyncIterator[tuple[Topic, Replica, Replica]]:
    topic = Topic()
    made: list[Replica] = []
    for name in ("r1", "r2"):
        emitter = Recorder()
        log = MemoryLog(topic)
        service = ChatService(store, emitter, Metrics(), Limits(), room_log=log, host=name)
        await service.start_streams()
        made.append((service, emitter))
    yield topic, made[0], made[1]
    for service, _ in made:
        await service.aclose_streams()


def delivered(emitter: Recorder, event: str = "message") -> list[dict[str, Any]]:
    return [data for name, data, _, _ in emitter.events if name == event]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def written(store: SqliteStore, room: str, count: int, within: float = 5.0) -> list[Any]:
    """The room's stream in history once the writer has written ``count`` records (bounded)."""
    deadline = asyncio.get_running_loop().time() + within
    while len(records := (await store.stream_after(room, 0, 100)).records) < count:
        assert asyncio.get_running_loop().time() < deadline, f"history has {records}"
        await asyncio.sleep(0.02)
    return records


async def test_the_ack_carries_the_log_offset_and_both_replicas_deliver_it_there(
    replicas: tuple[Topic, Replica, Replica], store: SqliteStore
) -> None:
    _topic, (r1, e1), (r2, e2) = replicas
    first, created = await r1.post(Draft(ROOM, ALICE, "one", "c1"), skip_sid="sid-alice")
    second, _ = await r2.post(Draft(ROOM, ALICE, "two", None))
    assert created and (first.pos, second.pos) == (100, 101), "positions are the log's offsets"
    epoch = await r1.epoch()
    assert epoch.endswith("k1") and epoch == await r2.epoch()
    assert r1.wire(first)["pos"] == f"{epoch}:100"
    await settle()
    for emitter in (e1, e2):
        assert [(m["text"], m["pos"]) for m in delivered(emitter)] == [
            ("one", f"{epoch}:100"),
            ("two", f"{epoch}:101"),
        ]
    # The sender's own socket is skipped on its replica only (it has the message in its ack).
    assert [skip for name, _, _, skip in e1.events if name == "message"] == ["sid-alice", None]
    assert [skip for name, _, _, skip in e2.events if name == "message"] == [None, None]
    stream = await written(store, ROOM, 2)
    assert [m.pos for m in stream] == [100, 101], "history, written from the log, has the same positions"


async def test_a_refused_append_is_bus_unavailable_and_delivers_nothing(
    replicas: tuple[Topic, Replica, Replica], store: SqliteStore
) -> None:
    topic, (r1, e1), (_, e2) = replicas
    topic.refuse = True
    with pytest.raises(BusUnavailable) as caught:
        await r1.post(Draft(ROOM, ALICE, "lost?", "c1"))
    assert caught.value.code == "bus_unavailable"
    await settle()
    assert delivered(e1) == delivered(e2) == []
    assert (await store.history(ROOM, before=None, limit=10)).messages == []
    topic.refuse = False
    retried, created = await r1.post(Draft(ROOM, ALICE, "lost?", "c1"))
    assert created and retried.pos == 100


async def test_a_retry_after_a_lost_ack_is_deduplicated_everywhere(
    replicas: tuple[Topic, Replica, Replica], store: SqliteStore
) -> None:
    topic, (r1, e1), (r2, e2) = replicas
    topic.lose_acks = True
    with pytest.raises(BusUnavailable):
        await r1.post(Draft(ROOM, ALICE, "hello", "c1"))
    topic.lose_acks = False
    await settle()
    # The record landed: both replicas delivered it once. The retry comes in on the other
    # replica, which knows the key: the original is acked, no second record is even written.
    retry, created = await r2.post(Draft(ROOM, ALICE, "hello", "c1"))
    assert not created and retry.pos == 100
    assert len(topic.records) == 1
    await settle()
    assert [m["text"] for m in delivered(e1)] == [m["text"] for m in delivered(e2)] == ["hello"]
    assert [m.id for m in await written(store, ROOM, 1)] == [retry.id]


async def test_a_second_record_with_the_same_key_is_dropped_by_every_consumer(
    replicas: tuple[Topic, Replica, Replica],
) -> None:
    topic, (r1, e1), (_, e2) = replicas
    # Two attempts racing (neither replica had applied the first when the second was sent):
    # both records are in the log; the first in the stream wins, on every replica.
    winner = Message("01J00000000000000000000001", ROOM, "alice", "Alice", "first", 1, "c9")
    loser = Message("01J00000000000000000000002", ROOM, "alice", "Alice", "second", 2, "c9")
    topic.append(ROOM, message_body(winner, skip_sid=None, host="elsewhere"))
    pending = asyncio.ensure_future(r1.post(Draft(ROOM, ALICE, "second", "c9")))
    await settle()
    # r1 already applied the winner before its own attempt: acked the original at once.
    original, created = await pending
    assert not created and original.id == winner.id and original.pos == 100
    topic.append(ROOM, message_body(loser, skip_sid=None, host="elsewhere"))
    await settle()
    assert [m["id"] for m in delivered(e1)] == [m["id"] for m in delivered(e2)] == [winner.id]


async def test_edits_and_deletes_go_through_the_log_at_their_own_positions(
    replicas: tuple[Topic, Replica, Replica], store: SqliteStore
) -> None:
    topic, (r1, e1), (r2, e2) = replicas
    message, _ = await r1.post(Draft(ROOM, ALICE, "typo", None))
    await r2.edit(ROOM, message.id, "fixed", ALICE)
    await r1.delete(ROOM, message.id, ALICE)
    await settle()
    epoch = await r1.epoch()
    for emitter in (e1, e2):
        assert [(name, data.get("pos")) for name, data, _, _ in emitter.events] == [
            ("message", f"{epoch}:100"),
            ("message_edited", f"{epoch}:101"),
            ("message_deleted", f"{epoch}:102"),
        ]
    other, _ = await r1.post(Draft(ROOM, ALICE, "other", None))
    await written(store, ROOM, 4)
    assert (await store.get(ROOM, message.id)).deleted  # type: ignore[union-attr]
    topic.refuse = True
    with pytest.raises(BusUnavailable):
        await r1.edit(ROOM, other.id, "again", ALICE)
    await settle()
    assert [name for name, _, _, _ in e2.events][-1] == "message", "a refused edit is delivered nowhere"
    assert (await store.get(ROOM, other.id)).text == "other", "and changes nothing"  # type: ignore[union-attr]


async def test_join_since_fills_from_the_tail_what_history_does_not_hold(
    replicas: tuple[Topic, Replica, Replica], store: SqliteStore
) -> None:
    _, (r1, _), (r2, _) = replicas
    await r1.post(Draft(ROOM, ALICE, "stored", None))
    await written(store, ROOM, 1)
    epoch = await r2.epoch()
    down = StoreDown(store)
    down.on()  # history down: live chat goes on, the tail answers catch-ups
    second, created = await r1.post(Draft(ROOM, ALICE, "not stored yet", None))
    third, _ = await r2.post(Draft(ROOM, ALICE, "neither", None))
    assert created and (second.pos, third.pos) == (101, 102)
    await settle()
    assert [m.text for m in (await store.history(ROOM, before=None, limit=10)).messages] == ["stored"]
    answer = await r2.catch_up_from(ROOM, epoch, 100)
    assert not answer.reset and [m.text for m in answer.messages] == ["not stored yet", "neither"]
    assert parse_position(answer.last) == (epoch, 102)
    page = await r1.history(ROOM, None, 10)
    # History is in id order (ids minted on two replicas in one millisecond may cross).
    assert sorted(m.text for m in page.messages) == ["neither", "not stored yet", "stored"], (
        "the newest page too"
    )
    assert [m.id for m in page.messages] == sorted((m.id for m in page.messages), reverse=True)
    down.off()  # the writer catches up, in order, nothing lost
    assert [(m.text, m.pos) for m in await written(store, ROOM, 3)] == [
        ("stored", 100),
        ("not stored yet", 101),
        ("neither", 102),
    ]


async def test_join_since_a_message_id_and_recovery_reads_fill_from_the_tail_too(
    replicas: tuple[Topic, Replica, Replica], store: SqliteStore
) -> None:
    """The best-effort ``join {since: <message id>}`` (a client that lost its connection
    when its replica drained) and connection state recovery's reads (``stream_after``,
    ``stream_head``) see what the history writer has not written yet."""
    _, (r1, _), (r2, _) = replicas
    first, _ = await r1.post(Draft(ROOM, ALICE, "stored", None))
    await written(store, ROOM, 1)
    assert await r2.stream_head(ROOM) == first.pos
    down = StoreDown(store)
    down.on()
    second, _ = await r1.post(Draft(ROOM, ALICE, "not stored yet", None))
    third, _ = await r2.post(Draft(ROOM, ALICE, "neither", None))
    await settle()
    messages, more = await r2.catch_up(ROOM, first.id)
    # In id order (ids minted on two replicas in one millisecond may cross).
    assert sorted(m.text for m in messages if m.id > first.id) == ["neither", "not stored yet"]
    assert [m.id for m in messages] == sorted(m.id for m in messages) and not more
    # Recovery reads the same: the head is the last record applied here, not the store's.
    assert await r2.stream_head(ROOM) == third.pos
    found = await r2.stream_after(ROOM, first.pos or 0, 10)
    assert found.covered and [r.pos for r in found.records] == [second.pos, third.pos]
    found = await r2.stream_after(ROOM, second.pos or 0, 10)
    assert found.covered and [r.pos for r in found.records] == [third.pos]
    down.off()


class StoreDown:
    """Makes the store's appends fail like a CQL outage, and heal."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.append = store.append

    def on(self) -> None:
        async def refuse(*_: Any) -> Any:
            raise StoreUnavailable("no ScyllaDB node reachable")

        self.store.append = refuse  # type: ignore[method-assign]

    def off(self) -> None:
        self.store.append = self.append  # type: ignore[method-assign]


async def test_the_dedup_window_is_bounded_per_room() -> None:
    async def nowhere(*_: Any) -> None:
        return None

    streams = RoomStreams(nowhere, lambda record, live: {}, "r1")
    streams.ready.set()
    for i in range(DEDUP_WINDOW + 5):
        m = Message(f"01J{i:023d}", ROOM, "alice", "Alice", "x", 1, f"k{i}")
        await streams.apply(LogRecord(ROOM, i, message_body(m, skip_sid=None, host="r2")))
    assert streams.original(ROOM, "alice", "k0") is None
    assert streams.original(ROOM, "alice", f"k{DEDUP_WINDOW + 4}") is not None


async def test_replayed_records_rebuild_windows_without_delivering(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[Any] = []

    async def deliver(*args: Any) -> None:
        sent.append(args)

    streams = RoomStreams(deliver, lambda record, live: {"pos": record.pos}, "r1")
    streams.ready.set()
    m = Message("01J00000000000000000000007", ROOM, "alice", "Alice", "x", 1, "k")
    await streams.apply(LogRecord(ROOM, 5, message_body(m, skip_sid=None, host="r2"), replay=True))
    assert sent == [] and streams.original(ROOM, "alice", "k") is not None
    assert streams.tail_after(ROOM, 5) == [] and streams.tail_after(ROOM, 4) is None
    await streams.apply(LogRecord(ROOM, 6, {"t": "nonsense"}))
    await streams.apply(LogRecord(ROOM, 7, {"t": "message"}))
    assert sent == []
    assert sum("malformed" in r.getMessage() for r in caplog.records) == 1, "logged once"


async def test_a_private_rooms_audience_is_resolved_once_by_the_sender(store: SqliteStore) -> None:
    """Every replica delivers a private room's record to the audience its sender resolved:
    no membership read per record per replica, and none at all on the receiving side (a
    store outage there does not stop its live delivery)."""
    topic = Topic()
    room = "priv:deal-desk"

    async def members(name: str) -> list[str]:
        return [name, "user:alice", "user:bob"]

    async def unreadable(name: str) -> list[str]:
        raise StoreUnavailable("no ScyllaDB node reachable")

    made: list[tuple[ChatService, Recorder]] = []
    for name, audience in (("r1", members), ("r2", unreadable)):
        emitter = Recorder()
        service = ChatService(
            store, emitter, Metrics(), Limits(), audience=audience, room_log=MemoryLog(topic), host=name
        )
        await service.start_streams()
        made.append((service, emitter))
    try:
        (r1, e1), (_, e2) = made
        await r1.post(Draft(room, ALICE, "numbers", None))
        await settle()
        for emitter in (e1, e2):
            assert [(name, to) for name, _, to, _ in emitter.events] == [
                ("message", [room, "user:alice", "user:bob"])
            ]
    finally:
        for service, _ in made:
            await service.aclose_streams()
