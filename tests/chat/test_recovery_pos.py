"""chatsvc.chat.recovery_pos on its own (memory store): offsets, the bounded tail, the
stored form, and the replay's exactly-once, in-order and resync rules."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from chatsvc.chat.recovery_base import Request, requested
from chatsvc.chat.recovery_pos import PositionRecovery, PosSession, Tail, decode, encode
from chatsvc.chat.wire import message_wire, position
from chatsvc.model.ids import MessageIdGenerator
from chatsvc.model.messages import Message, RoomEvent, StreamSlice
from chatsvc.model.rooms import MEMBER, Member
from chatsvc.settings import Limits
from chatsvc.store.memory import MemoryStore
from chatsvc.transport.broadcast import Delivery

ROOM = "stock:005930"
OTHER = "stock:000660"
PRIVATE = "priv:club"
ids = MessageIdGenerator()


def limits(**overrides: Any) -> Limits:
    return Limits(**{"recovery_window_seconds": 60, "recovery_max_replay": 10, **overrides})


@pytest.fixture
async def store() -> MemoryStore:
    opened = MemoryStore()
    await opened.open()
    return opened


class Room:
    """Posts to the memory store and delivers like the broadcast path (every opted-in
    recipient asked once per record), remembering what each sid was sent."""

    def __init__(self, store: MemoryStore, recovery: PositionRecovery) -> None:
        self.store = store
        self.recovery = recovery
        self.got: dict[str, list[str]] = {}

    async def post(self, text: str, room: str = ROOM, *, to: tuple[str, ...] = ("s1",)) -> Message:
        now = int(time.time() * 1000)
        stored, _ = await self.store.append(Message(ids.new(), room, "bob", "Bob", text, now))
        await self.deliver("message", message_wire(stored, await self.store.stream_epoch()), to)
        return stored

    async def event(
        self, kind: str, event: str, target: Message, *, to: tuple[str, ...] = ("s1",)
    ) -> RoomEvent:
        event_id = ids.new()
        payload = {"id": target.id, "room": target.room, "event_id": event_id}
        stored = await self.store.append_event(RoomEvent(event_id, target.room, kind, target.id, payload))
        epoch = await self.store.stream_epoch()
        await self.deliver(event, {**payload, "pos": position(epoch, stored.pos or 0)}, to)
        return stored

    async def deliver(self, event: str, payload: dict[str, Any], to: tuple[str, ...]) -> None:
        offset = self.recovery.offset_of(event, [payload])
        for sid in to:
            if self.recovery.delivery(sid) is Delivery.WITH_OFFSET:
                self.got.setdefault(sid, []).append(str(offset))


async def restored(
    recovery: PositionRecovery, sid: str, during: Callable[[int], Awaitable[None]] | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """Resume and restore ``sid``; ``during(n)`` runs after the n-th replayed send."""
    sent: list[tuple[str, str]] = []
    entered: list[str] = []

    async def send(event: str, payload: dict[str, Any], offset: str) -> None:
        sent.append((event, offset))
        if during is not None:
            await during(len(sent))

    async def enter(room: str) -> None:
        entered.append(room)

    assert recovery.resume(sid) is not None
    assert await recovery.restore(sid, send, enter) == len(sent)
    return sent, entered


def offset(record: Message | RoomEvent, epoch: str) -> str:
    return f"{epoch}:{record.pos}:{record.room}"


async def connected(recovery: PositionRecovery, *rooms: str, sid: str = "s1") -> PosSession:
    live = recovery.start(sid, "alice")
    for room in rooms:
        recovery.joined(sid, room)
        await recovery.subscribed(sid, room)
    return live


async def claim(recovery: PositionRecovery, pid: str, offset: str | None) -> str | None:
    return await recovery.prepare(Request(True, pid, offset), "alice", lambda room: True)


def test_offsets_are_room_qualified_positions_and_parse_at_connect() -> None:
    recovery = PositionRecovery(MemoryStore(), limits())
    wire = {"id": "m", "room": ROOM, "pos": "ep0ch:7"}
    # No socket opted in: no recipient is asked for an offset, so none is made (issue 26).
    assert recovery.offset_of("message", [wire]) is None
    recovery.start("s1", "alice")
    assert recovery.offset_of("message", [wire]) == f"ep0ch:7:{ROOM}"
    for event in ("message_edited", "message_deleted", "message_updated", "reaction", "pinned", "unpinned"):
        assert recovery.offset_of(event, [{**wire, "event_id": "e"}]) == f"ep0ch:7:{ROOM}"
    assert recovery.offset_of("message", [{"id": "m", "room": ROOM}]) is None  # no pos: plain
    assert recovery.offset_of("message", [{**wire, "pos": "7"}]) is None
    assert recovery.offset_of("typing", [{"room": ROOM, "pos": "ep0ch:7"}]) is None
    assert recovery.delivery("nobody") is Delivery.PLAIN
    assert requested({"pid": "p" * 32, "offset": f"ep0ch:7:{ROOM}"}).offset == f"ep0ch:7:{ROOM}"
    assert requested({"pid": "p" * 32, "offset": "ep0ch:7:bad room"}).offset is None
    assert requested({"pid": "p" * 32, "offset": "x" * 200}).offset is None
    # The journal path's message-id offsets are gone with it.
    assert requested({"pid": "p" * 32, "offset": ids.new()}).offset is None


def test_tail_is_bounded_and_what_falls_out_raises_the_base() -> None:
    tail = Tail(3, {ROOM: 2})
    for pos in (3, 4, 5):
        tail.add((ROOM, pos))
    assert not tail.truncated and tail.queued((ROOM, 4)) and not tail.queued((ROOM, 2))
    tail.add((OTHER, 1), own=True)
    assert tail.truncated and tail.base == {ROOM: 3} and tail.queued((ROOM, 3))
    assert list(tail.entries) == [(ROOM, 4), (ROOM, 5), (OTHER, 1)] and tail.own == {(OTHER, 1)}


def test_stored_form_round_trips_and_rejects_garbage() -> None:
    tail = Tail(5, {ROOM: 3})
    tail.add((ROOM, 4))
    tail.add((ROOM, 5), own=True)
    live = PosSession("pid", "alice", "ep0ch", tail, {ROOM}, {PRIVATE})
    sid, back = decode(encode("sid1", live), "pid", "alice", 5)
    assert sid == "sid1" and (back.epoch, back.rooms, back.reach) == ("ep0ch", {ROOM}, {PRIVATE})
    assert list(back.tail.entries) == [(ROOM, 4), (ROOM, 5)] and back.tail.own == {(ROOM, 5)}
    assert back.tail.base == {ROOM: 3} and not back.tail.truncated
    for bad in ("[]", '{"v": 1}', '{"v": 2, "sid": "s"}', "x"):
        with pytest.raises((ValueError, KeyError, TypeError)):
            decode(bad, "pid", "alice", 5)


async def test_replay_is_every_record_after_the_received_prefix_once_in_order(store: MemoryStore) -> None:
    recovery = PositionRecovery(store, limits())
    room = Room(store, recovery)
    earlier = await room.post("before the join")
    live = await connected(recovery, ROOM, OTHER)
    one, two, three = [await room.post(t) for t in ("one", "two", "three")]
    own, _ = await store.append(Message(ids.new(), ROOM, "alice", "Alice", "mine", int(time.time() * 1000)))
    recovery.posted("s1", own)  # acked to it, never delivered or replayed to it
    await recovery.end("s1", "transport close")
    withheld = await room.post("while the session is saved")  # python-socketio may still deliver
    recovery.forget("s1")
    epoch = await store.stream_epoch()
    assert room.got["s1"] == [offset(m, epoch) for m in (one, two, three)]
    missed = [await room.post("missed", OTHER)]
    edited = await room.event("edited", "message_edited", one)
    reacted = await room.event("reaction", "reaction", two)
    pinned = await room.event("pinned", "pinned", one)
    missed.append(await room.post("missed too"))

    # The client received up to "two": "three" was in flight when the connection dropped.
    assert await claim(recovery, live.pid, offset(two, epoch)) == "s1"
    sent, entered = await restored(recovery, "s1")
    assert sorted(entered) == [OTHER, ROOM]
    # Merged across rooms by record id (time), each room in position order; the own
    # message, the received prefix and the join's past are not replayed.
    want = [three, withheld, missed[0], edited, reacted, pinned, missed[1]]
    assert [o for _, o in sent] == [offset(r, epoch) for r in want]
    assert [e for e, _ in sent] == [
        "message", "message", "message", "message_edited", "reaction", "pinned", "message",
    ]  # fmt: skip
    # Live from here on; a record that was replayed and comes again (a late bus copy) is not.
    for again in (missed[1], two, earlier):  # replayed, received, or below where it resumed
        assert recovery.offset_of("message", [message_wire(again, epoch)]) is not None
        assert recovery.delivery("s1") is Delivery.ALREADY_SENT
    after = await room.post("after")
    assert room.got["s1"][-1] == offset(after, epoch)


async def test_live_records_during_the_replay_are_dropped_and_sent_by_it_in_order(store: MemoryStore) -> None:
    recovery = PositionRecovery(store, limits())
    room = Room(store, recovery)
    live = await connected(recovery, ROOM)
    first = await room.post("first")
    await recovery.end("s1", "transport close")
    recovery.forget("s1")
    epoch = await store.stream_epoch()
    gone = [await room.post(f"missed {i}", to=()) for i in range(3)]
    assert await claim(recovery, live.pid, offset(first, epoch)) == "s1"
    racing: list[Message] = []

    async def post_live(n: int) -> None:
        if n <= 2:  # posted and delivered live while the replay is being sent
            racing.append(await room.post(f"racing {n}"))

    sent, _ = await restored(recovery, "s1", post_live)
    assert "s1" not in room.got or room.got["s1"] == [offset(first, epoch)]  # the live copies were dropped
    assert [o for _, o in sent] == [offset(m, epoch) for m in gone + racing]
    later = await room.post("live again")
    assert room.got["s1"][-1] == offset(later, epoch)


async def test_an_epoch_change_or_a_raised_floor_is_a_fresh_connect(store: MemoryStore) -> None:
    recovery = PositionRecovery(store, limits())
    room = Room(store, recovery)
    live = await connected(recovery, ROOM)
    seen = await room.post("seen")
    await recovery.end("s1", "transport close")
    recovery.forget("s1")
    await room.post("missed", to=())
    epoch = await store.stream_epoch()
    # Retention raised the room's floor past the client's position: not partially replayed.
    store._rooms[ROOM].floor = store._rooms[ROOM].head
    assert await claim(recovery, live.pid, offset(seen, epoch)) is None

    other = PositionRecovery(store, limits())
    back = await connected(other, ROOM, sid="s2")
    await other.end("s2", "transport close")
    store._epoch = "n3wdb"  # what a new database looks like to a running process
    fresh = PositionRecovery(store, limits())
    assert await fresh.prepare(Request(True, back.pid, None), "alice", bool) is None


async def test_an_unplaceable_offset_or_too_much_missed_is_a_fresh_connect(store: MemoryStore) -> None:
    recovery = PositionRecovery(store, limits(recovery_max_replay=3))
    room = Room(store, recovery)
    live = await connected(recovery, ROOM)
    early = [await room.post(f"m{i}") for i in range(5)]  # the tail (3) overflowed
    await recovery.end("s1", "transport close")
    recovery.forget("s1")
    epoch = await store.stream_epoch()
    assert await claim(recovery, live.pid, offset(early[0], epoch)) is None  # fell out

    second = await connected(recovery, ROOM, sid="s2")
    await recovery.end("s2", "transport close")
    recovery.forget("s2")
    for i in range(4):
        await room.post(f"missed {i}", to=())
    assert await claim(recovery, second.pid, None) is None  # 4 > CHATSVC_RECOVERY_MAX_REPLAY


async def test_private_rooms_reaching_it_without_a_join_are_replayed_not_entered(store: MemoryStore) -> None:
    recovery = PositionRecovery(store, limits())
    room = Room(store, recovery)
    await store.put_member(Member(PRIVATE, "alice", MEMBER, 0))
    await room.post("before it connected", PRIVATE)
    live = await connected(recovery, ROOM)
    seen = await room.post("seen through the user room", PRIVATE)
    await recovery.end("s1", "transport close")
    recovery.forget("s1")
    missed = await room.post("missed", PRIVATE)
    epoch = await store.stream_epoch()
    assert await claim(recovery, live.pid, offset(seen, epoch)) == "s1"
    sent, entered = await restored(recovery, "s1")
    assert entered == [ROOM] and [o for _, o in sent] == [offset(missed, epoch)]


async def test_a_socket_that_drops_mid_replay_gets_the_rest_next_time(store: MemoryStore) -> None:
    recovery = PositionRecovery(store, limits())
    room = Room(store, recovery)
    live = await connected(recovery, ROOM)
    await recovery.end("s1", "transport close")
    recovery.forget("s1")
    missed = [await room.post(f"missed {i}", to=()) for i in range(4)]
    epoch = await store.stream_epoch()
    assert await claim(recovery, live.pid, None) == "s1"

    async def drop(n: int) -> None:
        if n == 2:
            await recovery.end("s1", "transport close")

    sent, _ = await restored(recovery, "s1", drop)
    assert [o for _, o in sent] == [offset(m, epoch) for m in missed[:2]]
    recovery.forget("s1")
    # It received the first one only.
    assert await claim(recovery, live.pid, offset(missed[0], epoch)) == "s1"
    sent, _ = await restored(recovery, "s1")
    assert [o for _, o in sent] == [offset(m, epoch) for m in missed[1:]]


class HideFrom:
    """A recipient filter hiding one author's records from every socket (as blocks do)."""

    def __init__(self, author: str) -> None:
        self.author = author

    def skipped(self, event: str, args: Any) -> set[str] | None:
        user = args[0].get("user") if args and isinstance(args[0], dict) else None
        return {"s1"} if isinstance(user, dict) and user.get("id") == self.author else None


async def test_the_replay_leaves_out_what_the_recipient_filter_hides(store: MemoryStore) -> None:
    recovery = PositionRecovery(store, limits())
    recovery.use_filter(HideFrom("bob"))
    room = Room(store, recovery)
    live = await connected(recovery, ROOM)
    await recovery.end("s1", "transport close")
    recovery.forget("s1")
    await room.post("from bob", to=())
    now = int(time.time() * 1000)
    carol, _ = await store.append(Message(ids.new(), ROOM, "carol", "Carol", "from carol", now))
    assert await claim(recovery, live.pid, None) == "s1"
    sent, _ = await restored(recovery, "s1")
    assert [o for _, o in sent] == [offset(carol, await store.stream_epoch())]


class ClusterStreams:
    """Cluster mode's view of the streams (chatsvc.chat.service): the epoch carries the log's
    partition count, records and heads are read through it rather than the store."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.heads = 0

    async def epoch(self) -> str:
        return f"{await self.store.stream_epoch()}k3"

    async def stream_after(self, room: str, pos: int, limit: int) -> StreamSlice:
        return await self.store.stream_after(room, pos, limit)

    async def stream_head(self, room: str) -> int:
        self.heads += 1
        return (await self.store.stream_after(room, 0, 0)).head


async def test_cluster_mode_reads_through_its_streams_and_replays_what_a_lagging_consumer_queued(
    store: MemoryStore,
) -> None:
    """The head read at the join was ahead of this replica's consumer (the history writer
    elsewhere wrote records this replica delivers only afterwards): those records reach the
    socket live after the join, so one queued but not received is replayed, not skipped
    as if it were below where the socket started."""
    streams = ClusterStreams(store)
    recovery = PositionRecovery(store, limits(), streams=streams)
    epoch = await streams.epoch()
    now = int(time.time() * 1000)
    behind = [(await store.append(Message(ids.new(), ROOM, "bob", "Bob", t, now)))[0] for t in ("a", "b")]
    live = await connected(recovery, ROOM)
    assert streams.heads == 1 and live.tail.base[ROOM] == behind[-1].pos and live.epoch == epoch
    room = Room(store, recovery)
    for message in behind:  # the consumer here catches up: delivered live after the join
        await room.deliver("message", message_wire(message, epoch), ("s1",))
    later = (await store.append(Message(ids.new(), ROOM, "bob", "Bob", "c", now)))[0]
    await room.deliver("message", message_wire(later, epoch), ("s1",))
    await recovery.end("s1", "transport close")
    recovery.forget("s1")
    # Received "a" only; "b" and "c" were in flight. The offset is in the cluster's epoch.
    assert await claim(recovery, live.pid, offset(behind[0], epoch)) == "s1"
    sent, _ = await restored(recovery, "s1")
    assert [o for _, o in sent] == [offset(behind[1], epoch), offset(later, epoch)]
