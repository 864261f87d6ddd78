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
from chatsvc.bus.log import LogRecord
from chatsvc.chat.service import ChatService, Draft
from chatsvc.chat.streams import DEDUP_WINDOW, RoomStreams, message_body
from chatsvc.chat.wire import parse_position
from chatsvc.errors import BusUnavailable, StoreUnavailable
from chatsvc.model.messages import Message, ReplyRef
from chatsvc.store.sqlite import SqliteStore
from tests.chat.log_double import Topic, delivered, settle, two_replicas
from tests.chat.test_service import Recorder

ALICE = Identity("alice", "Alice")
ROOM = "stocks.AAPL"


Replica = tuple[ChatService, Recorder]


@pytest.fixture
async def replicas(store: SqliteStore) -> AsyncIterator[tuple[Topic, Replica, Replica]]:
    async with two_replicas(store, lambda service, emitter: (service, emitter)) as made:
        yield made


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


async def test_records_of_a_room_nobody_here_is_in_are_applied_but_not_delivered(store: SqliteStore) -> None:
    """Issue 26: r2 has nobody in ROOM, so its records reach no socket there: r2 applies them
    (dedup window, tail, a reply's count) without building their wire form or emitting; a
    private room's records are delivered all the same (to their audience's user rooms).
    Once a socket there is in ROOM, the next record is delivered, and the tail has the rest."""
    here: set[str] = set()
    built: list[str] = []
    async with two_replicas(
        store,
        lambda service, emitter: (service, emitter),
        audiences=(None, None),
        presents=(lambda room: True, here.__contains__),
    ) as (_, (r1, e1), (r2, e2)):
        wire = r2._record_wire

        def counted(record: Any, live: str) -> dict[str, Any]:
            built.append(live)
            return wire(record, live)

        assert r2._streams is not None
        r2._streams._wire = counted
        first, _ = await r1.post(Draft(ROOM, ALICE, "nobody on r2", "c1"))
        parent = ReplyRef(first.id, "alice", "Alice", "nobody", base=0)
        reply, _ = await r1.post(Draft(ROOM, ALICE, "a reply", None, reply_to=parent))
        await r1.edit(ROOM, first.id, "still nobody", ALICE)
        await settle()
        assert e1.names() == ["message", "message", "message_updated", "message_edited"]
        assert e2.events == [] and built == [], "nothing built, nothing emitted on r2"
        assert r2._metrics.events_unheard.value == 3 and r1._metrics.events_unheard.value == 0
        again, created = await r2.post(Draft(ROOM, ALICE, "nobody on r2", "c1"))
        assert not created and again.id == first.id, "r2's dedup window has it"
        assert await r2.stream_head(ROOM) == (reply.pos or 0) + 1, "and its tail"
        here.add(ROOM)
        later, _ = await r1.post(Draft(ROOM, ALICE, "someone now", None))
        await settle()
        assert [m["text"] for m in delivered(e2)] == ["someone now"] and built == ["message"]
        found = await r2.stream_after(ROOM, 0, 10)
        assert found.covered and [r.pos for r in found.records][-1] == later.pos


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
    room = "priv:deal-desk"

    async def members(name: str) -> list[str]:
        return [name, "user:alice", "user:bob"]

    async def unreadable(name: str) -> list[str]:
        raise StoreUnavailable("no ScyllaDB node reachable")

    pair = two_replicas(store, lambda service, emitter: (service, emitter), audiences=(members, unreadable))
    async with pair as (_topic, (r1, e1), (_, e2)):
        await r1.post(Draft(room, ALICE, "numbers", None))
        await settle()
        for emitter in (e1, e2):
            assert [(name, to) for name, _, to, _ in emitter.events] == [
                ("message", [room, "user:alice", "user:bob"])
            ]
