"""chatsvc.chat.membership in process: the four holders (python-socketio's real manager
rooms, the connection's rooms, the recovery session's rooms, LocalPresence) move together
on enter, leave, drop and restore, a failure after entering puts every one back, and
repeating a step changes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import socketio

from chatsvc.auth.identity import Identity
from chatsvc.bus.local import LocalManager
from chatsvc.chat.membership import NO_ROOMS, Membership
from chatsvc.chat.namespace import Connection
from chatsvc.chat.presence import LocalPresence
from chatsvc.chat.ratelimit import TokenBucket
from chatsvc.chat.recovery_base import NoRecovery, Request, SessionRecovery
from chatsvc.chat.recovery_pos import PositionRecovery, decode
from chatsvc.errors import InvalidPayload, StoreUnavailable, TooManyRooms
from chatsvc.metrics import Metrics
from chatsvc.settings import Limits
from chatsvc.store.memory import MemoryStore
from tests.support.managers import recorded_server

ROOM = "stock:005930"
OTHER = "stock:000660"
LOBBY = "lobby"  # every test socket starts in it (tests.support.managers), never touched here
ALICE = Identity("alice", "Alice")
BOB = Identity("bob", "Bob")


@dataclass
class World:
    """alice (sid ``a``, Engine.IO ``eio0``) and bob (``b``, ``eio1``) on a real
    python-socketio server and LocalManager, both opted in to recovery; nobody in any room."""

    sio: Any
    membership: Membership
    presence: LocalPresence
    recovery: SessionRecovery
    store: MemoryStore
    metrics: Metrics
    sent: list[tuple[str, str]]
    a: str
    b: str
    alice: Connection
    bob: Connection

    async def holders(self, sid: str, conn: Connection) -> dict[str, set[str]]:
        """Where each holder has ``sid``."""
        manager = set(self.sio.rooms(sid, namespace="/")) - {sid, LOBBY}
        live = self.recovery.live(sid) if isinstance(self.recovery, PositionRecovery) else None
        in_presence = set()
        for room in await self.presence.rooms():
            if conn.identity.user_id in {m["id"] for m in await self.presence.members(room)}:
                in_presence.add(room)
        return {
            "manager": manager,
            "connection": set(conn.rooms),
            "recovery": set(live.rooms) if live is not None else set(),
            "presence": in_presence,
        }

    def received(self, eio_sid: str, event: str) -> list[Any]:
        """Payloads of ``event`` queued to one socket, in order."""
        out = []
        for to, packet in self.sent:
            if to == eio_sid and packet.startswith("42"):
                name, *args = json.loads(packet[2:])
                if name == event:
                    out.append(args[0])
        return out

    def rooms_gauge(self) -> float:
        return self.metrics.registry.get_sample_value("chatsvc_rooms", {"scope": "local"}) or 0.0


def connection(identity: Identity) -> Connection:
    return Connection(identity, TokenBucket(10, 10))


async def world(*, recovery_on: bool = True, rooms_per_connection: int = 3) -> World:
    store = MemoryStore()
    await store.open()
    served = await recorded_server(LocalManager(), [LOBBY, LOBBY])
    namespace = socketio.AsyncNamespace("/")
    served.sio.register_namespace(namespace)
    recovery: SessionRecovery = (
        PositionRecovery(store, Limits(recovery_window_seconds=60, recovery_max_replay=10))
        if recovery_on
        else NoRecovery()
    )
    presence, metrics = LocalPresence(), Metrics()
    # As create_app wires it: the gauge is read from presence's counts at scrape time.
    metrics.rooms.labels("local").set_function(presence.local_room_count)
    membership = Membership(namespace, presence, recovery, metrics, rooms_per_connection=rooms_per_connection)
    a, b = served.sids
    alice, bob = connection(ALICE), connection(BOB)
    membership.resume(a, alice, opted_in=True)
    membership.resume(b, bob, opted_in=True)
    return World(served.sio, membership, presence, recovery, store, metrics, served.sent, a, b, alice, bob)


def everywhere(*rooms: str) -> dict[str, set[str]]:
    return {holder: set(rooms) for holder in ("manager", "connection", "recovery", "presence")}


async def enter(w: World, sid: str, conn: Connection, room: str) -> int:
    async with w.membership.enter(sid, conn, room) as entered:
        pass
    return entered.online


async def test_enter_puts_the_socket_in_every_holder_and_announces_it() -> None:
    w = await world()
    assert await enter(w, w.b, w.bob, ROOM) == 1
    async with w.membership.enter(w.a, w.alice, ROOM) as entered:
        # Subscribed before the block (the catch-up read) runs; not yet in presence.
        assert (await w.holders(w.a, w.alice))["manager"] == {ROOM}
        assert (await w.holders(w.a, w.alice))["presence"] == set()
        assert entered.newly
    assert entered.online == 2
    assert await w.holders(w.a, w.alice) == everywhere(ROOM)
    joined = {"room": ROOM, "user": ALICE.public(), "action": "join", "online": 2}
    assert w.received("eio1", "presence") == [joined]
    assert w.received("eio0", "presence") == []  # never told of itself
    assert w.rooms_gauge() == 1
    # The real manager delivers the room's broadcasts to it now.
    await w.sio.emit("message", {"room": ROOM, "id": "x"}, room=ROOM, namespace="/")
    assert [m["id"] for m in w.received("eio0", "message")] == ["x"]


async def test_entering_again_changes_nothing_and_announces_nothing() -> None:
    w = await world()
    await enter(w, w.b, w.bob, ROOM)
    await enter(w, w.a, w.alice, ROOM)
    live = w.recovery.live(w.a) if isinstance(w.recovery, PositionRecovery) else None
    assert live is not None
    since = dict(live.tail.base)
    before = await w.holders(w.a, w.alice)
    async with w.membership.enter(w.a, w.alice, ROOM) as again:
        assert not again.newly
    assert again.online == 2
    assert await w.holders(w.a, w.alice) == before == everywhere(ROOM)
    assert live.tail.base == since  # where it starts in the room does not move
    assert len(w.received("eio1", "presence")) == 1


async def test_too_many_rooms_is_refused_before_any_change() -> None:
    w = await world(rooms_per_connection=1)
    await enter(w, w.a, w.alice, ROOM)
    with pytest.raises(TooManyRooms):
        await enter(w, w.a, w.alice, OTHER)
    assert await w.holders(w.a, w.alice) == everywhere(ROOM)
    await enter(w, w.a, w.alice, ROOM)  # the room it holds is no new one


@pytest.mark.parametrize("failure", [StoreUnavailable("history store down"), RuntimeError("a bug")])
async def test_a_failure_after_entering_puts_every_holder_back(failure: Exception) -> None:
    """The catch-up read fails once the socket is subscribed: it is unsubscribed again, the
    room hears nothing, and the error reaches the caller (the namespace acks it)."""
    w = await world()
    await enter(w, w.b, w.bob, ROOM)
    await enter(w, w.a, w.alice, OTHER)
    before, gauge = await w.holders(w.a, w.alice), w.rooms_gauge()
    with pytest.raises(type(failure)):
        async with w.membership.enter(w.a, w.alice, ROOM):
            assert (await w.holders(w.a, w.alice))["connection"] == {OTHER, ROOM}
            raise failure
    assert await w.holders(w.a, w.alice) == before == everywhere(OTHER)
    assert w.received("eio1", "presence") == []
    assert w.rooms_gauge() == gauge
    await w.sio.emit("message", {"room": ROOM, "id": "x"}, room=ROOM, namespace="/")
    assert w.received("eio0", "message") == []
    # A failed re-read of a room it already holds does not take it out.
    with pytest.raises(StoreUnavailable):
        async with w.membership.enter(w.a, w.alice, OTHER):
            raise StoreUnavailable("again")
    assert await w.holders(w.a, w.alice) == everywhere(OTHER)
    # And the failed room can be entered cleanly afterwards.
    assert await enter(w, w.a, w.alice, ROOM) == 2
    assert await w.holders(w.a, w.alice) == everywhere(OTHER, ROOM)


async def test_leave_takes_it_out_of_every_holder_once() -> None:
    w = await world()
    await enter(w, w.b, w.bob, ROOM)
    await enter(w, w.a, w.alice, ROOM)
    await enter(w, w.a, w.alice, OTHER)
    seen: dict[str, set[str]] = {}

    async def then() -> None:
        seen.update(await w.holders(w.a, w.alice))

    assert await w.membership.leave(w.a, w.alice, ROOM, then=then)
    # ``then`` ran once the socket stopped receiving the room, before presence moved.
    assert seen == {**everywhere(OTHER), "presence": {OTHER, ROOM}}
    assert await w.holders(w.a, w.alice) == everywhere(OTHER)
    left = {"room": ROOM, "user": ALICE.public(), "action": "leave", "online": 1}
    assert w.received("eio1", "presence")[-1] == left
    announced = len(w.received("eio1", "presence"))
    assert not await w.membership.leave(w.a, w.alice, ROOM)
    assert await w.holders(w.a, w.alice) == everywhere(OTHER)
    assert len(w.received("eio1", "presence")) == announced
    assert w.rooms_gauge() == 2


async def test_drop_saves_the_session_with_its_rooms_then_leaves_them_announced() -> None:
    w = await world()
    for room in (ROOM, OTHER):
        await enter(w, w.b, w.bob, room)
        await enter(w, w.a, w.alice, room)
    pid = w.recovery.pid_for(w.a)
    assert pid is not None
    await w.membership.drop(w.a, w.alice, "transport close")
    record = await w.store.get_session(pid)
    assert record is not None and set(decode(record.data, pid, "alice", 10)[1].rooms) == {ROOM, OTHER}
    assert isinstance(w.recovery, PositionRecovery) and w.recovery.live(w.a) is None  # forgotten
    holders = await w.holders(w.a, w.alice)
    # python-socketio takes the socket out of its manager rooms itself, after the handler.
    assert holders == {**everywhere(), "manager": {ROOM, OTHER}}
    leaves = [p for p in w.received("eio1", "presence") if p["action"] == "leave"]
    assert sorted(p["room"] for p in leaves) == sorted([ROOM, OTHER])
    await w.membership.drop(w.a, w.alice, "transport close")
    assert len(w.received("eio1", "presence")) == 4
    # A socket that never finished connecting: the session is still ended and forgotten.
    await w.membership.drop(w.b, None, "client disconnect")
    assert w.recovery.pid_for(w.b) is None


async def test_a_recovered_socket_is_restored_into_every_holder() -> None:
    w = await world()
    await enter(w, w.b, w.bob, ROOM)
    await enter(w, w.a, w.alice, ROOM)
    pid = w.recovery.pid_for(w.a)
    assert pid is not None
    await w.membership.drop(w.a, w.alice, "ping timeout")
    await w.sio.leave_room(w.a, ROOM, namespace="/")  # what python-socketio does next
    claimed = await w.recovery.prepare(Request(True, pid, None), "alice", lambda room: True)
    assert claimed == w.a
    back = connection(ALICE)
    w.membership.resume(w.a, back, opted_in=True)
    assert back.rooms == {ROOM}  # entered by restore()
    assert (await w.holders(w.a, back))["manager"] == set()
    sent: list[str] = []

    async def send(event: str, payload: dict[str, Any], offset: str) -> None:
        sent.append(offset)

    await w.membership.restore(w.a, back, send, lambda: True)
    assert await w.holders(w.a, back) == everywhere(ROOM)
    assert w.received("eio1", "presence")[-1]["action"] == "join"
    assert w.metrics.registry.get_sample_value("chatsvc_recoveries_total", {"outcome": "recovered"}) == 1
    # Restoring again: nothing is being recovered under that sid any more.
    await w.membership.restore(w.a, back, send, lambda: True)
    assert len(w.received("eio1", "presence")) == 3
    assert w.metrics.registry.get_sample_value("chatsvc_recoveries_total", {"outcome": "recovered"}) == 1


async def test_a_socket_gone_while_being_restored_is_not_put_in_presence() -> None:
    w = await world()
    await enter(w, w.a, w.alice, ROOM)
    pid = w.recovery.pid_for(w.a)
    assert pid is not None
    await w.membership.drop(w.a, w.alice, "ping timeout")
    await w.sio.leave_room(w.a, ROOM, namespace="/")
    assert await w.recovery.prepare(Request(True, pid, None), "alice", lambda room: True) == w.a
    back = connection(ALICE)
    w.membership.resume(w.a, back, opted_in=True)

    async def send(event: str, payload: dict[str, Any], offset: str) -> None:
        raise AssertionError("nothing was missed")

    await w.membership.restore(w.a, back, send, lambda: False)
    assert (await w.holders(w.a, back))["presence"] == set()
    assert w.metrics.registry.get_sample_value("chatsvc_recoveries_total", {"outcome": "recovered"}) is None


async def test_with_recovery_off_membership_works_and_nothing_is_kept() -> None:
    w = await world(recovery_on=False)
    assert w.recovery.pid_for(w.a) is None  # resume started no session
    await enter(w, w.b, w.bob, ROOM)
    assert await enter(w, w.a, w.alice, ROOM) == 2
    assert await w.holders(w.a, w.alice) == {**everywhere(ROOM), "recovery": set()}
    with pytest.raises(InvalidPayload):
        async with w.membership.enter(w.a, w.alice, OTHER):
            raise InvalidPayload("bad since")
    assert w.alice.rooms == {ROOM}
    await w.membership.leave(w.a, w.alice, ROOM)
    assert await w.holders(w.a, w.alice) == everywhere()
    await enter(w, w.a, w.alice, ROOM)
    await w.membership.drop(w.a, w.alice, "transport close")
    assert w.alice.rooms == set()
    assert (await w.holders(w.a, w.alice))["presence"] == set()

    async def send(event: str, payload: dict[str, Any], offset: str) -> None:
        raise AssertionError("nothing is replayed with recovery off")

    back = connection(ALICE)
    w.membership.resume(w.a, back, opted_in=True)
    await w.membership.restore(w.a, back, send, lambda: True)
    assert back.rooms == set()
    assert w.metrics.registry.get_sample_value("chatsvc_recoveries_total", {"outcome": "recovered"}) is None


async def test_a_socket_kicked_or_dropped_while_entering_is_not_left_in_presence() -> None:
    """An admin kick (or a disconnect) can run while the join's catch-up read waits: the
    join then completes without putting the socket in presence, where nothing would ever
    take it out again."""
    w = await world()
    await enter(w, w.b, w.bob, ROOM)
    async with w.membership.enter(w.a, w.alice, ROOM) as entered:
        assert await w.membership.leave(w.a, w.alice, ROOM)  # the kick
    assert entered.online == 1
    assert await w.holders(w.a, w.alice) == everywhere()
    assert w.received("eio1", "presence") == []
    async with w.membership.enter(w.a, w.alice, OTHER):
        await w.membership.drop(w.a, w.alice, "transport close")
    assert (await w.holders(w.a, w.alice))["presence"] == set()
    assert await w.presence.online(OTHER) == 0


async def test_a_room_kicked_from_while_being_restored_is_not_reentered() -> None:
    w = await world()
    for room in (ROOM, OTHER):
        await enter(w, w.a, w.alice, room)
    pid = w.recovery.pid_for(w.a)
    assert pid is not None
    await w.membership.drop(w.a, w.alice, "ping timeout")
    for room in (ROOM, OTHER):
        await w.sio.leave_room(w.a, room, namespace="/")
    assert await w.recovery.prepare(Request(True, pid, None), "alice", lambda room: True) == w.a
    back = connection(ALICE)
    w.membership.resume(w.a, back, opted_in=True)
    assert await w.membership.leave(w.a, back, ROOM)  # kicked before the replay ended

    async def send(event: str, payload: dict[str, Any], offset: str) -> None:
        raise AssertionError("nothing was missed")

    await w.membership.restore(w.a, back, send, lambda: True)
    assert await w.holders(w.a, back) == everywhere(OTHER)


async def test_a_socket_holds_the_shared_empty_rooms_until_its_first_join() -> None:
    """Idle memory: no set of its own per connection that never joins a room."""
    w = await world(recovery_on=False)
    assert w.alice.rooms is NO_ROOMS and w.bob.rooms is NO_ROOMS
    assert not await w.membership.leave(w.a, w.alice, ROOM)  # nothing to leave: still shared
    assert w.alice.rooms is NO_ROOMS and len(NO_ROOMS) == 0
    await enter(w, w.a, w.alice, ROOM)
    assert w.alice.rooms == {ROOM} and isinstance(w.alice.rooms, set)
    assert w.bob.rooms is NO_ROOMS  # bob's is not alice's
    await enter(w, w.a, w.alice, OTHER)
    assert await w.membership.leave(w.a, w.alice, ROOM)
    assert w.alice.rooms == {OTHER}
    await w.membership.drop(w.a, w.alice, "transport close")
    assert w.alice.rooms is NO_ROOMS and len(NO_ROOMS) == 0
