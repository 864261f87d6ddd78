"""ClusterPresence: every replica's view merged, kept right through loss and crashes."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from chatsvc.auth.identity import Identity
from chatsvc.chat import cluster_presence
from chatsvc.chat.cluster_presence import ClusterPresence
from chatsvc.errors import BusUnavailable
from tests.support.control_net import ControlNet, eventually

ALICE = Identity("alice", "Alice")
BOB = Identity("bob", "Bob")
HEARTBEAT = 0.05


class Clock:
    """A monotonic clock the test moves by hand (expiry), starting at a large value."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def net() -> AsyncIterator[ControlNet]:
    net = ControlNet()
    yield net
    await net.close()


@pytest.fixture
async def cluster(net: ControlNet) -> AsyncIterator[Callable[..., ClusterPresence]]:
    started: list[ClusterPresence] = []

    def make(replica_id: str, *, clock: Callable[[], float] | None = None) -> ClusterPresence:
        presence = ClusterPresence(
            net.router(replica_id),
            version="1.2.3",
            connections=lambda: 7,
            heartbeat_seconds=HEARTBEAT,
            **({"clock": clock} if clock else {}),
        )
        started.append(presence)
        return presence

    yield make
    for presence in started:
        await presence.aclose()


async def _members(presence: ClusterPresence, room: str) -> list[str]:
    return [m["id"] for m in await presence.members(room)]


async def test_without_peers_it_is_local_presence(cluster: Callable[..., ClusterPresence]) -> None:
    a = cluster("a")
    await a.start()
    first = await a.join("AAPL", ALICE, "s1")
    second = await a.join("AAPL", ALICE, "s2")
    assert (first.changed, first.online, second.changed, second.online) == (True, 1, False, 1)
    assert await a.rooms() == {"AAPL": 1}
    assert (await a.leave("AAPL", ALICE, "s1")).changed is False
    last = await a.leave("AAPL", ALICE, "s2")
    assert (last.changed, last.online) == (True, 0)
    assert await a.rooms() == {} and await a.user_count() == 0
    assert a.room_count() == a.local_room_count() == 0


async def test_members_counts_and_rooms_merge_every_replica(cluster: Callable[..., ClusterPresence]) -> None:
    a, b = cluster("a"), cluster("b")
    await a.start()
    await b.start()
    await a.join("AAPL", ALICE, "s1")
    await b.join("AAPL", BOB, "s2")
    await b.join("TSLA", BOB, "s2")

    async def merged() -> bool:
        return await _members(a, "AAPL") == ["alice", "bob"] and await _members(b, "AAPL") == ["alice", "bob"]

    await eventually(merged, what="both replicas see alice and bob")
    assert await a.online("AAPL") == 2
    assert await a.rooms() == {"AAPL": 2, "TSLA": 1}
    assert (a.room_count(), a.local_room_count(), b.local_room_count()) == (2, 1, 2)
    assert await a.user_count() == 2
    assert a.peers() == ["b"] and b.peers() == ["a"]
    views = await a.replicas()
    assert [(v.replica_id, v.local, v.rooms, v.users, v.connections, v.version) for v in views] == [
        ("a", True, 1, 1, 7, "1.2.3"),
        ("b", False, 2, 1, 7, "1.2.3"),
    ]

    await b.leave("AAPL", BOB, "s2")
    await eventually(lambda: _is(a, "AAPL", ["alice"]), what="bob's leave reaches a")


async def _is(presence: ClusterPresence, room: str, users: list[str]) -> bool:
    return await _members(presence, room) == users


async def test_a_user_on_two_replicas_joins_and_leaves_the_room_once(
    cluster: Callable[..., ClusterPresence],
) -> None:
    a, b = cluster("a"), cluster("b")
    await a.start()
    await b.start()
    assert (await a.join("AAPL", ALICE, "s1")).changed is True
    await eventually(lambda: _is(b, "AAPL", ["alice"]), what="b sees alice")
    on_b = await b.join("AAPL", ALICE, "s2")
    assert (on_b.changed, on_b.online) == (False, 1), "alice was already in the room (on a)"
    await eventually(lambda: _peer_users(a, "b", 1), what="a sees alice on b too")
    assert (await a.leave("AAPL", ALICE, "s1")).changed is False, "still there through b"
    await eventually(lambda: _peer_users(b, "a", 0), what="b sees alice leave a")
    assert (await b.leave("AAPL", ALICE, "s2")).changed is True


async def _peer_users(presence: ClusterPresence, peer: str, users: int) -> bool:
    return any(v.replica_id == peer and v.users == users for v in await presence.replicas())


async def test_a_late_replica_gets_everyone_from_snapshots(cluster: Callable[..., ClusterPresence]) -> None:
    a = cluster("a")
    await a.start()
    await a.join("AAPL", ALICE, "s1")
    await a.join("TSLA", BOB, "s2")
    b = cluster("b")
    await b.start()
    await eventually(lambda: _is(b, "TSLA", ["bob"]), what="b learns a's state at startup")
    assert await _members(b, "AAPL") == ["alice"]


async def test_large_snapshots_are_sent_in_parts(
    cluster: Callable[..., ClusterPresence], net: ControlNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_presence, "SNAPSHOT_PART_ENTRIES", 3)
    a = cluster("a")
    await a.start()
    for i in range(10):
        await a.join(f"room{i % 4}", Identity(f"u{i}", f"U{i}"), f"s{i}")
    b = cluster("b")
    await b.start()
    await eventually(lambda: _count(b, 10), what="b assembles every part")
    parts = [m for m in net.sent if m["type"] == "presence.snapshot" and m["parts"] > 1]
    assert parts and all(sum(len(u) for u in m["rooms"].values()) <= 3 for m in parts)


async def _count(presence: ClusterPresence, users: int) -> bool:
    return await presence.user_count() == users


async def test_a_lost_delta_is_repaired_by_a_snapshot(
    cluster: Callable[..., ClusterPresence], net: ControlNet
) -> None:
    a, b = cluster("a"), cluster("b")
    await a.start()
    await b.start()
    await a.join("AAPL", ALICE, "s1")
    await eventually(lambda: _is(b, "AAPL", ["alice"]))
    net.drop_types.add("presence.delta")
    await a.join("AAPL", BOB, "s2")
    await a.leave("AAPL", ALICE, "s1")
    await net.settle()
    assert await _members(b, "AAPL") == ["alice"], "the deltas were lost"
    net.drop_types.clear()
    # The next heartbeat carries a newer seq than b has seen: b asks for a snapshot.
    await eventually(lambda: _is(b, "AAPL", ["bob"]), what="b repairs its view")


async def test_a_stale_delta_never_resurrects_a_user(
    cluster: Callable[..., ClusterPresence], net: ControlNet
) -> None:
    a, b = cluster("a"), cluster("b")
    await a.start()
    await b.start()
    await a.join("AAPL", ALICE, "s1")
    await eventually(lambda: _is(b, "AAPL", ["alice"]))
    join = next(m for m in net.sent if m["type"] == "presence.delta")
    await a.leave("AAPL", ALICE, "s1")
    await eventually(lambda: _is(b, "AAPL", []))
    await net.routers["b"].dispatch(join)  # a duplicate/reordered record of the old join
    assert await _members(b, "AAPL") == []


async def test_a_silent_replica_expires_after_three_heartbeats(
    cluster: Callable[..., ClusterPresence], net: ControlNet
) -> None:
    clock = Clock()
    a, b = cluster("a", clock=clock), cluster("b")
    await a.start()
    await b.start()
    await b.join("AAPL", BOB, "s1")
    await eventually(lambda: _is(a, "AAPL", ["bob"]))
    net.cut.add("b")  # b crashes: nothing more from it, and no goodbye
    await net.settle()
    clock.now += 3 * HEARTBEAT * 0.9
    assert await _members(a, "AAPL") == ["bob"], "not yet expired"
    clock.now += 3 * HEARTBEAT * 0.2
    assert await _members(a, "AAPL") == [] and a.peers() == []
    assert [v.replica_id for v in await a.replicas()] == ["a"]
    # The count drops when the heartbeat loop prunes the silent view.
    await eventually(lambda: _room_count(a, 0), what="b's room leaves a's count once pruned")


async def _room_count(presence: ClusterPresence, rooms: int) -> bool:
    return presence.room_count() == rooms


async def _counts_agree(presences: list[ClusterPresence]) -> bool:
    for presence in presences:
        merged = await presence.rooms()
        if presence.room_count() != len(merged):
            return False
        if presence.local_room_count() != len(await presence._local.rooms()):
            return False
        for room in [*merged, "never-joined"]:
            # The O(1) online count of each room is what the full merge of members says.
            online = presence.online_now(room)
            if online != len(await presence.members(room)) or online != merged.get(room, 0):
                return False
    return True


async def test_incremental_room_counts_agree_with_the_merged_view(
    cluster: Callable[..., ClusterPresence], net: ControlNet
) -> None:
    """Random joins and leaves on three replicas, a lost delta (snapshot repair) and a
    replica saying goodbye: the O(1) counts always settle on what the full merge says."""
    a, b, c = cluster("a"), cluster("b"), cluster("c")
    for presence in (a, b, c):
        await presence.start()
    rng = random.Random(23)
    users = [Identity(f"u{i}", f"U{i}") for i in range(6)]
    joined: set[tuple[int, int, int]] = set()  # (replica, user, room)
    replicas = [a, b, c]
    for step in range(300):
        if step == 150:
            net.drop_types.add("presence.delta")  # lose some: the snapshot repairs views
        if step == 200:
            net.drop_types.clear()
        r, u, room = rng.randrange(3), rng.randrange(6), rng.randrange(8)
        if (r, u, room) in joined:
            await replicas[r].leave(f"room{room}", users[u], f"s{r}-{u}")
            joined.discard((r, u, room))
        else:
            await replicas[r].join(f"room{room}", users[u], f"s{r}-{u}")
            joined.add((r, u, room))
    expected = len({room for _, _, room in joined})
    await eventually(lambda: _all_count(replicas, expected), what="every replica counts every room")
    assert await _counts_agree(replicas)
    await c.aclose()  # goodbye: its rooms leave the others' counts at once
    left = len({room for r, _, room in joined if r != 2})
    await eventually(lambda: _all_count([a, b], left), what="c's rooms dropped")
    assert await _counts_agree([a, b])


async def _all_count(presences: list[ClusterPresence], rooms: int) -> bool:
    return all(p.room_count() == rooms for p in presences) and await _counts_agree(presences)


def _presence_lines(run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[int]]:
    """How many lines of chatsvc/chat/*presence*.py ``run`` executes: work, not time."""
    here = str(Path(cluster_presence.__file__).parent)

    async def counted() -> int:
        lines = 0

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            nonlocal lines
            if event == "line":
                lines += 1
            return local

        def tracer(frame: FrameType, event: str, arg: Any) -> Any:
            filename = frame.f_code.co_filename
            return local if filename.startswith(here) and "presence" in filename else None

        sys.settrace(tracer)
        try:
            await run()
        finally:
            sys.settrace(None)
        return lines

    return counted


async def _join_storm(joins: int) -> int:
    """``joins`` sockets joining rooms of 5 on a replica that knows one peer, with the
    rooms gauge read after every join (as if scraped that often)."""
    presence = ClusterPresence(ControlNet().router("a"), version="1", connections=lambda: 0)
    peer = {"replica": "b", "seq": 0, "part": 0, "parts": 1, "rooms": {"peer-room": [["p", "P"]]}}
    await presence._on_snapshot(peer)

    async def storm() -> None:
        for i in range(joins):
            await presence.join(f"room{i // 5}", Identity(f"u{i}", "U"), f"s{i}")
            presence.room_count()
            presence.local_room_count()

    lines = await _presence_lines(storm)()
    assert presence.room_count() == joins // 5 + 1 and presence.local_room_count() == joins // 5
    return lines


async def test_a_join_storm_does_work_linear_in_joins() -> None:
    """5,000 joins at 5 per room: five times the joins of 1,000, so about five times the
    lines executed. Rebuilding the merged presence per join (what the gauge used to do)
    makes that ratio about 25."""
    small, large = await _join_storm(1000), await _join_storm(5000)
    assert large <= 5.5 * small, (small, large)


async def test_a_replica_that_stops_cleanly_leaves_at_once(cluster: Callable[..., ClusterPresence]) -> None:
    a, b = cluster("a"), cluster("b")
    await a.start()
    await b.start()
    await b.join("AAPL", BOB, "s1")
    await eventually(lambda: _is(a, "AAPL", ["bob"]))
    await b.aclose()
    await eventually(lambda: a.peers() == [], what="a drops b on its goodbye")
    assert await a.online("AAPL") == 0


async def test_a_bus_outage_is_survived_and_repaired(
    cluster: Callable[..., ClusterPresence], net: ControlNet
) -> None:
    a, b = cluster("a"), cluster("b")
    await a.start()
    await b.start()
    await eventually(lambda: a.peers() == ["b"] and b.peers() == ["a"])
    net.up = False
    await a.join("AAPL", ALICE, "s1")  # never fails because of the bus
    net.up = True
    await eventually(lambda: _is(b, "AAPL", ["alice"]), within=10, what="state repaired after the outage")


async def _one_room_storm(joins: int) -> int:
    """``joins`` sockets joining one room (the market-open case) on a replica with a peer
    that has members there too; each join reports the room's online count."""
    presence = ClusterPresence(ControlNet().router("a"), version="1", connections=lambda: 0)
    peer = {"replica": "b", "seq": 0, "part": 0, "parts": 1, "rooms": {"hot": [["p", "P"], ["u0", "U"]]}}
    await presence._on_snapshot(peer)

    async def storm() -> None:
        for i in range(joins):
            change = await presence.join("hot", Identity(f"u{i}", "U"), f"s{i}")
            assert change.online == max(i + 1, 2) + 1 - (i == 0)
            presence.online_now("hot")

    lines = await _presence_lines(storm)()
    assert await presence.online("hot") == joins + 1
    return lines


async def test_a_join_storm_into_one_room_is_linear_in_joins() -> None:
    """1,000 then 5,000 joins of one room: about five times the work. Merging the room's
    members for each join's ``online`` (as before issue 26) makes the ratio about 25."""
    small, large = await _one_room_storm(1000), await _one_room_storm(5000)
    assert large <= 5.5 * small, (small, large)


async def test_the_watcher_hears_every_count_change_local_or_remote() -> None:
    presence = ClusterPresence(ControlNet().router("a"), version="1", connections=lambda: 0)
    changed: list[str] = []
    presence.watch(changed.append)
    await presence.join("hot", ALICE, "s1")
    await presence.join("hot", ALICE, "s2")  # a second socket: no change
    peer = {"replica": "b", "seq": 1, "part": 0, "parts": 1, "rooms": {"hot": [["bob", "Bob"]]}}
    await presence._on_snapshot(peer)
    leave = {"replica": "b", "seq": 2, "change": {"room": "hot", "user": {"id": "bob"}, "action": "leave"}}
    await presence._on_delta(leave)
    await presence._on_bye({"replica": "b"})
    await presence.leave("hot", ALICE, "s1")
    await presence.leave("hot", ALICE, "s2")
    assert changed == ["hot", "hot", "hot", "hot"]
    assert presence.online_now("hot") == 0


async def test_presence_resyncs_within_a_heartbeat_of_the_bus_returning(
    cluster: Callable[..., ClusterPresence], net: ControlNet
) -> None:
    """Issue 21: publish retries used to back off to 30 s, so presence stayed stale for
    seconds after the bus came back. They now stop growing at one heartbeat interval.
    (Before: after 4 s down the sender slept until 7.5 s, so 1.5 s below could not hold.)"""
    a, b = cluster("a"), cluster("b")
    await a.start()
    await b.start()
    await eventually(lambda: a.peers() == ["b"] and b.peers() == ["a"])
    net.up = False
    await a.join("TSLA", ALICE, "s1")
    await asyncio.sleep(4.0)  # long enough for the old backoff to reach a 4 s sleep
    net.up = True
    await eventually(lambda: _is(b, "TSLA", ["alice"]), within=1.5, what="state resynced at once")


async def test_presence_resyncs_the_moment_the_bus_is_back_not_at_the_next_retry(net: ControlNet) -> None:
    """Issue 21 phase 2: with a long heartbeat the publish retries back off for seconds; the
    sender polls the bus's health instead and sends a snapshot as soon as it is back."""

    async def bus_ready() -> None:
        if not net.up:
            raise BusUnavailable("Kafka unavailable: connection refused")

    a = ClusterPresence(
        net.router("a"), version="1", connections=lambda: 0, heartbeat_seconds=8.0, bus_ready=bus_ready
    )
    b = ClusterPresence(net.router("b"), version="1", connections=lambda: 0, heartbeat_seconds=HEARTBEAT)
    try:
        await a.start()
        await b.start()
        await eventually(lambda: b.peers() == ["a"])
        net.up = False
        await a.join("TSLA", ALICE, "s1")
        await asyncio.sleep(3.6)  # the retries' backoff has grown to 4 s by now
        net.up = True
        await eventually(
            lambda: _is(b, "TSLA", ["alice"]), within=1.0, what="a snapshot as soon as the bus is back"
        )
    finally:
        await a.aclose()
        await b.aclose()
