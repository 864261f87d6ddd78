"""chatsvc.chat.recovery on its own: opt-in parsing, journals, the stored form, claims and
the replay's bounds and exactly-once rules (with the memory store)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from chatsvc.chat.recovery import Journal, LiveSession, Recovery, Request, decode, encode, requested
from chatsvc.chat.wire import message_wire
from chatsvc.model.ids import MessageIdGenerator, id_at
from chatsvc.model.messages import Message, RoomEvent, SessionRecord
from chatsvc.settings import Limits
from chatsvc.store.memory import MemoryStore
from chatsvc.transport.broadcast import Delivery
from tests.support.managers import recorded_server

ROOM = "stock:005930"
ids = MessageIdGenerator()


def limits(**overrides: Any) -> Limits:
    return Limits(**{"recovery_window_seconds": 60, "recovery_max_replay": 10, **overrides})


@pytest.fixture
async def store() -> MemoryStore:
    opened = MemoryStore()
    await opened.open()
    return opened


def message(text: str, *, msg_id: str | None = None, room: str = ROOM) -> Message:
    mid = msg_id or ids.new()
    return Message(mid, room, "bob", "Bob", text, int(time.time() * 1000))


async def deliver(recovery: Recovery, sids: list[str], m: Message) -> None:
    """What the broadcast path does for one local room emit."""
    wire = message_wire(m)
    assert recovery.offset_of("message", [wire]) == m.id
    for sid in sids:
        recovery.delivery(sid)


def test_requested() -> None:
    offset = id_at(1_700_000_000_000)
    assert requested({"token": "t"}) == Request(False, None, None)
    assert requested({"token": "t", "recover": True}) == Request(True, None, None)
    assert requested({"token": "t", "recover": "yes"}) == Request(False, None, None)
    # A pid without recover counts as opting in (what socket.io-client sends on reconnect
    # when the app's auth lacks the flag).
    assert requested({"pid": "p" * 32, "offset": offset}) == Request(True, "p" * 32, offset)
    assert requested({"pid": 5, "offset": "not-an-id"}) == Request(False, None, None)
    assert requested({"pid": "x" * 65}) == Request(False, None, None)
    assert requested("a token string") == Request(False, None, None)
    assert requested(None) == Request(False, None, None)


def test_journal_is_bounded_and_remembers_what_fell_out() -> None:
    journal = Journal(3)
    for offset in ["B", "A", "D", "C"]:
        journal.add(offset)
    assert list(journal.entries) == ["A", "D", "C"] and journal.dropped_max == "B"
    journal.add("E")
    assert list(journal.entries) == ["D", "C", "E"] and journal.dropped_max == "B"
    journal.add("F")
    assert journal.dropped_max == "D" and journal.truncated
    assert not Journal(3, ["x"]).truncated


def test_stored_form_round_trips_and_rejects_garbage() -> None:
    live = LiveSession("pid", "alice", Journal(5, ["a", "b"]), Journal(5, ["c"], "0"), {ROOM: 123})
    saved = decode(encode("sid1", live, 99))
    assert (saved.sid, saved.rooms, saved.journal, saved.dropped_max) == ("sid1", {ROOM: 123}, ["a", "b"], "")
    assert (saved.own, saved.own_dropped_max) == (["c"], "0")
    for bad in (
        "[]",
        '{"v": 2}',
        json.dumps({"v": 1, "sid": "s", "rooms": [], "journal": [], "own": []}),
        "x",
    ):
        with pytest.raises(ValueError):
            decode(bad)


def test_offsets_of_recoverable_events_only() -> None:
    recovery = Recovery(MemoryStore(), limits())
    assert recovery.offset_of("message_edited", [{"id": "m", "event_id": "E1", "room": ROOM}]) == "E1"
    assert recovery.offset_of("message_deleted", [{"id": "m", "event_id": "E2", "room": ROOM}]) == "E2"
    assert recovery.offset_of("message_deleted", [{"id": "m"}]) is None  # logged without an id
    assert recovery.offset_of("typing", [{"room": ROOM}]) is None
    assert recovery.offset_of("message", [{"id": "M"}, "extra"]) is None
    assert recovery.delivery("nobody") is Delivery.PLAIN
    recovery.start("s1", "alice")
    recovery.offset_of("message", [{"id": "M1", "room": ROOM}])
    assert recovery.delivery("s1") is Delivery.WITH_OFFSET
    live = recovery.live("s1")
    assert live is not None and list(live.journal.entries) == ["M1"]
    # The same offset again (it came back over the bus): not a second time.
    recovery.offset_of("message", [{"id": "M1", "room": ROOM}])
    assert recovery.delivery("s1") is Delivery.ALREADY_SENT
    assert list(live.journal.entries) == ["M1"]


async def claim(recovery: Recovery, pid: str, offset: str | None, user: str = "alice") -> str | None:
    return await recovery.prepare(Request(True, pid, offset), user, lambda room: True)


async def test_only_dropped_sockets_are_kept_and_claims_are_one_use(store: MemoryStore) -> None:
    recovery = Recovery(store, limits())
    for reason in ("client disconnect", "server disconnect"):
        live = recovery.start("gone", "alice")
        await recovery.end("gone", reason)
        assert await store.get_session(live.pid) is None
    live = recovery.start("s1", "alice")
    await recovery.end("s1", "transport close")
    assert await claim(recovery, live.pid, None, user="mallory") is None
    assert await store.get_session(live.pid) is not None  # another user cannot consume it
    assert await claim(recovery, live.pid, None) == "s1"
    assert await claim(recovery, live.pid, None) is None  # one use
    drained = recovery.start("s2", "alice")
    recovery.mark_resumable("s2")
    await recovery.end("s2", "server disconnect")
    assert await store.get_session(drained.pid) is not None


async def test_recovery_window_zero_disables_everything(store: MemoryStore) -> None:
    recovery = Recovery(store, limits(recovery_window_seconds=0))
    assert not recovery.enabled
    live = recovery.start("s1", "alice")
    await recovery.end("s1", "transport close")
    assert await store.get_session(live.pid) is None


async def restored(recovery: Recovery, sid: str) -> tuple[list[tuple[str, str]], list[str]]:
    sent: list[tuple[str, str]] = []
    entered: list[str] = []

    async def send(event: str, payload: dict[str, Any], offset: str) -> None:
        sent.append((event, offset))

    async def enter(room: str) -> None:
        entered.append(room)

    assert recovery.resume(sid) is not None
    await recovery.restore(sid, send, enter)
    return sent, entered


async def test_replay_is_exactly_what_was_missed_with_ids_out_of_order(store: MemoryStore) -> None:
    recovery = Recovery(store, limits())
    live = recovery.start("s1", "alice")
    recovery.joined("s1", ROOM)
    now = int(time.time() * 1000)
    older = message("from the other replica, older id", msg_id=id_at(now - 500))
    newer = message("newer id, delivered first")
    received_last = message("the client's offset")
    unreceived = message("queued, never read")
    own = message("alice's own (sent to others only)")
    for m in (newer, received_last, unreceived):
        await store.append(m)
        await deliver(recovery, ["s1"], m)
    await store.append(own)
    recovery.posted("s1", own)
    await store.append(older)  # stored, but its delivery had not reached this replica
    await recovery.end("s1", "ping timeout")
    edit_id = ids.new()
    await store.append_event(
        RoomEvent(edit_id, ROOM, "edited", newer.id, {"id": newer.id, "event_id": edit_id})
    )
    after = message("posted while away")
    await store.append(after)

    assert await claim(recovery, live.pid, received_last.id) == "s1"
    sent, entered = await restored(recovery, "s1")
    # In id order; the received prefix and alice's own message are not repeated.
    assert sent == sorted(
        [
            ("message", older.id),
            ("message", unreceived.id),
            ("message_edited", edit_id),
            ("message", after.id),
        ],
        key=lambda s: s[1],
    )
    assert entered == [ROOM]
    # The next drop continues the same journal: nothing is replayed twice.
    again = recovery.live("s1")
    assert again is not None and again.pid == live.pid
    await recovery.end("s1", "transport close")
    assert await claim(recovery, live.pid, after.id) == "s1"
    assert (await restored(recovery, "s1"))[0] == []


async def test_replay_bounds_mean_a_fresh_connect(store: MemoryStore) -> None:
    recovery = Recovery(store, limits(recovery_max_replay=3))
    live = recovery.start("s1", "alice")
    recovery.joined("s1", ROOM)
    await recovery.end("s1", "transport close")
    for i in range(3):
        await store.append(message(f"missed {i}"))
    assert await claim(recovery, live.pid, None) == "s1"  # 3 missed: recoverable
    recovery.abandon("s1")

    live = recovery.start("s2", "alice")
    recovery.joined("s2", ROOM)
    await recovery.end("s2", "transport close")
    for i in range(4):
        await store.append(message(f"too many {i}"))
    assert await claim(recovery, live.pid, None) is None  # 3 + 4 > 3: fresh connect


async def test_an_offset_the_overflowed_journal_cannot_place_is_a_fresh_connect(store: MemoryStore) -> None:
    recovery = Recovery(store, limits(recovery_max_replay=2))
    live = recovery.start("s1", "alice")
    recovery.joined("s1", ROOM)
    sent = [message(f"m{i}") for i in range(4)]
    for m in sent:
        await store.append(m)
        await deliver(recovery, ["s1"], m)
    await recovery.end("s1", "transport close")
    assert await claim(recovery, live.pid, sent[0].id) is None  # fell out: 3 unread after it
    live = recovery.start("s2", "alice")
    await recovery.end("s2", "transport close")
    assert await claim(recovery, live.pid, None) == "s2"  # an empty journal never overflowed


async def test_what_arrives_while_restoring_is_sent_once(store: MemoryStore) -> None:
    recovery = Recovery(store, limits())
    live = recovery.start("s1", "alice")
    recovery.joined("s1", ROOM)
    await recovery.end("s1", "transport close")
    assert await claim(recovery, live.pid, None) == "s1"
    assert recovery.resume("s1") is not None
    during = message("broadcast during the replay")
    sent: list[str] = []

    async def send(event: str, payload: dict[str, Any], offset: str) -> None:
        sent.append(offset)
        if len(sent) == 1:
            await deliver(recovery, [], during)  # not stored yet, socket not in the room yet

    async def enter(room: str) -> None:
        # The socket is in the room now: a live delivery reaches it (and is journaled).
        live_now = message("live after entering")
        await deliver(recovery, ["s1"], live_now)

    first = message("missed")
    await store.append(first)
    # The bus must hand this replica the room's emits while the hold is open (no local
    # socket is in the room yet), and may skip them again once it is closed.
    assert recovery.holds(ROOM) and not recovery.holds("another")
    await recovery.restore("s1", send, enter)
    assert sent == [first.id, during.id]
    assert not recovery.holds(ROOM)


async def test_a_replayed_message_arriving_later_over_the_bus_is_not_sent_again(store: MemoryStore) -> None:
    """Stored on another replica, replayed from the store, and only then delivered here by
    the bus, after the socket entered its rooms: socket.io-client would show it twice."""
    recovery = Recovery(store, limits())
    live = recovery.start("s1", "alice")
    recovery.joined("s1", ROOM)
    await recovery.end("s1", "transport close")
    late = message("stored elsewhere, still on its way here")
    await store.append(late)
    assert await claim(recovery, live.pid, None) == "s1"
    assert recovery.resume("s1") is not None
    sent: list[str] = []

    async def send(event: str, payload: dict[str, Any], offset: str) -> None:
        sent.append(offset)

    async def enter(room: str) -> None:
        pass

    assert await recovery.restore("s1", send, enter) == 1
    assert sent == [late.id]
    assert recovery.offset_of("message", [message_wire(late)]) == late.id
    assert recovery.delivery("s1") is Delivery.ALREADY_SENT
    newer = message("new")
    assert recovery.offset_of("message", [message_wire(newer)]) == newer.id
    assert recovery.delivery("s1") is Delivery.WITH_OFFSET


class SlowSaves(MemoryStore):
    """Session saves wait for ``release``: the disconnect handler suspends there while the
    broadcast path goes on."""

    def __init__(self) -> None:
        super().__init__()
        self.saving = asyncio.Event()
        self.release = asyncio.Event()

    async def save_session(self, record: SessionRecord) -> None:
        self.saving.set()
        await self.release.wait()
        await super().save_session(record)


async def test_what_is_broadcast_while_the_session_is_saved_is_withheld_then_replayed() -> None:
    """python-socketio still delivers to a socket while its disconnect handler runs, and
    over a draining websocket the packets still go out: the client would get an event the
    saved journal lacks, and the replay would send it again."""
    store = SlowSaves()
    await store.open()
    recovery = Recovery(store, limits())
    live = recovery.start("s1", "alice")
    recovery.joined("s1", ROOM)
    received = message("received before the drop")
    await store.append(received)
    await deliver(recovery, ["s1"], received)
    recovery.mark_resumable("s1")
    ending = asyncio.create_task(recovery.end("s1", "server disconnect"))
    await store.saving.wait()
    during = message("broadcast while the session is saved")
    await store.append(during)
    assert recovery.offset_of("message", [message_wire(during)]) == during.id
    assert recovery.delivery("s1") is Delivery.WITHHELD
    store.release.set()
    await ending
    after = message("broadcast before the socket left its rooms")
    await store.append(after)
    assert recovery.offset_of("message", [message_wire(after)]) == after.id
    assert recovery.delivery("s1") is Delivery.WITHHELD
    assert recovery.local_sid_of(live.pid, "alice") is None  # ending, not a stale connection
    recovery.forget("s1")
    assert recovery.live("s1") is None and recovery.delivery("s1") is Delivery.PLAIN

    assert await claim(recovery, live.pid, received.id) == "s1"
    sent, _ = await restored(recovery, "s1")
    assert sent == [("message", during.id), ("message", after.id)]
    recovery.forget("s1")  # a restored session is not an ended one: kept
    assert recovery.live("s1") is not None


async def test_a_socket_that_drops_mid_replay_gets_the_rest_at_its_next_recovery(store: MemoryStore) -> None:
    recovery = Recovery(store, limits())
    live = recovery.start("s1", "alice")
    recovery.joined("s1", ROOM)
    await recovery.end("s1", "transport close")
    recovery.forget("s1")
    missed = [message(f"missed {i}") for i in range(3)]
    for m in missed:
        await store.append(m)
    assert await claim(recovery, live.pid, None) == "s1"
    assert recovery.resume("s1") is not None
    sent: list[str] = []
    entered: list[str] = []

    async def send(event: str, payload: dict[str, Any], offset: str) -> None:
        sent.append(offset)
        if len(sent) == 1:
            await recovery.end("s1", "transport close")  # the client is gone again

    async def enter(room: str) -> None:
        entered.append(room)

    assert await recovery.restore("s1", send, enter) == 1
    assert sent == [missed[0].id] and entered == []
    recovery.forget("s1")
    assert await claim(recovery, live.pid, missed[0].id) == "s1"
    assert (await restored(recovery, "s1"))[0] == [("message", m.id) for m in missed[1:]]


def test_journal_membership_follows_what_it_holds() -> None:
    journal = Journal(2, ["a", "b"])
    assert "a" in journal and "b" in journal
    journal.add("c")
    assert "a" not in journal and list(journal.entries) == ["b", "c"] and journal.dropped_max == "a"


@dataclass
class ServedRoom:
    """Three sockets (eio0..eio2) in ROOM on a real LocalManager with recovery, the first two
    opted in (alice, bob); ``queued`` holds every packet the server sends, encoded."""

    sio: Any
    manager: Any
    recovery: Recovery
    sids: list[str]
    queued: list[tuple[str, str]]


async def served_room(server_class: Any) -> ServedRoom:
    """A ``server_class`` (a python-socketio AsyncServer) on LocalManager, set up as the app does."""
    from chatsvc.bus.local import LocalManager  # noqa: PLC0415

    manager = LocalManager()
    served = await recorded_server(manager, [ROOM] * 3, server_class)
    recovery = Recovery(MemoryStore(), limits())
    manager.use_offsets(recovery)
    recovery.start(served.sids[0], "alice")
    recovery.start(served.sids[1], "bob")
    return ServedRoom(served.sio, manager, recovery, served.sids, served.sent)


async def test_the_broadcast_path_journals_what_it_queues_to_opted_in_sockets() -> None:
    """With the real LocalManager (chatsvc.transport.broadcast): offsets on opted-in sockets only,
    journaled in queueing order, never for the skipped sender."""
    import socketio  # noqa: PLC0415

    served = await served_room(socketio.AsyncServer)
    manager, recovery, sids, sent = served.manager, served.recovery, served.sids, served.queued
    first, second = message("one"), message("two")
    await manager.emit("message", message_wire(first), namespace="/", room=ROOM)
    await manager.emit("typing", {"room": ROOM}, namespace="/", room=ROOM)
    await manager.emit("message", message_wire(second), namespace="/", room=ROOM, skip_sid=sids[1])
    journals = [recovery.live(sid) for sid in sids[:2]]
    assert [list(j.journal.entries) for j in journals if j] == [[first.id, second.id], [first.id]]
    plain = [json.loads(p[p.index("[") :]) for eio, p in sent if eio == "eio2" and '"message"' in p]
    assert plain == [["message", message_wire(first)], ["message", message_wire(second)]]
    opted = [json.loads(p[p.index("[") :]) for eio, p in sent if eio == "eio0" and '"message"' in p]
    assert opted == [["message", message_wire(first), first.id], ["message", message_wire(second), second.id]]


async def test_journals_are_the_same_whether_the_frame_is_written_or_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app's server (RecoveringServer on EngineIOServer): opted-in sockets whose
    websocket takes the pre-built frame and those that get the packets queued are
    journaled alike, and each gets its offset on the wire."""
    from chatsvc.transport.engine import EngineIOServer  # noqa: PLC0415
    from chatsvc.transport.frames import frame  # noqa: PLC0415
    from chatsvc.transport.sioserver import RecoveringServer  # noqa: PLC0415

    served = await served_room(RecoveringServer)
    manager, recovery, sids, queued = served.manager, served.recovery, served.sids, served.queued
    assert isinstance(served.sio.eio, EngineIOServer)  # the broadcast path's fast path applies
    written: list[tuple[str, bytes]] = []

    def write_frames(eio_sids: list[str], data: bytes, now: float) -> list[str]:
        written.extend((eio_sid, data) for eio_sid in eio_sids if eio_sid != "eio1")
        return [eio_sid for eio_sid in eio_sids if eio_sid == "eio1"]  # polling, or packets pending

    monkeypatch.setattr(served.sio.eio, "write_frames", write_frames)
    first, second = message("one"), message("two")
    for m in (first, second):
        await manager.emit("message", message_wire(m), namespace="/", room=ROOM)
    journals = [recovery.live(sid) for sid in sids[:2]]
    assert [list(j.journal.entries) for j in journals if j] == [[first.id, second.id]] * 2

    def wire(m: Message, *extra: str) -> str:
        return "42" + json.dumps(["message", message_wire(m), *extra], separators=(",", ":"))

    assert queued == [("eio1", wire(first, first.id)), ("eio1", wire(second, second.id))]
    # Each socket's frames in order (across sockets a broadcast's order is not a contract).
    assert sorted(written, key=lambda w: w[0]) == [
        ("eio0", frame(wire(first, first.id))),
        ("eio0", frame(wire(second, second.id))),
        ("eio2", frame(wire(first))),
        ("eio2", frame(wire(second))),
    ]


async def test_replayed_messages_and_events_carry_their_stream_positions(store: MemoryStore) -> None:
    recovery = Recovery(store, limits())
    live = recovery.start("s1", "alice")
    recovery.joined("s1", ROOM)
    seen = message("seen")
    await store.append(seen)
    await deliver(recovery, ["s1"], seen)
    await recovery.end("s1", "ping timeout")
    missed, _ = await store.append(message("missed"))
    edit_id = ids.new()
    edit = await store.append_event(
        RoomEvent(edit_id, ROOM, "edited", seen.id, {"id": seen.id, "event_id": edit_id})
    )
    assert await claim(recovery, live.pid, seen.id) == "s1"
    replayed: list[tuple[str, Any]] = []

    async def send(event: str, payload: dict[str, Any], offset: str) -> None:
        replayed.append((event, payload.get("pos")))

    async def enter(room: str) -> None:
        pass

    assert recovery.resume("s1") is not None
    await recovery.restore("s1", send, enter)
    epoch = await store.stream_epoch()
    assert missed.pos == 2 and edit.pos == 3
    assert replayed == [("message", f"{epoch}:2"), ("message_edited", f"{epoch}:3")]
