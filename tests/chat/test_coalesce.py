"""The coalescing rules of big rooms, against an in-memory room size and delivery."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatsvc.chat.coalesce import MAX_TRACKED, TYPING_USERS_SHOWN, Coalescer

WINDOW = 0.2


class Sink:
    """Records what the coalescer delivers; the room sizes are set by the test."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.sent: list[tuple[str, dict[str, Any], str, float]] = []

    async def deliver(self, event: str, data: dict[str, Any], room: str) -> None:
        self.sent.append((event, data, room, asyncio.get_running_loop().time()))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [data for name, data, _, _ in self.sent if name == event]


@pytest.fixture
async def sink() -> Sink:
    return Sink()


@pytest.fixture
async def coalescer(sink: Sink) -> AsyncIterator[Coalescer]:
    c = Coalescer(
        sink.deliver,
        lambda room: sink.sizes.get(room, 0),
        big_room=5,
        typing_off=50,
        presence_window=WINDOW,
        typing_window=WINDOW,
        read_window=WINDOW,
    )
    yield c
    await c.aclose()


def presence(uid: str, action: str = "join", room: str = "big", online: int = 0) -> dict[str, Any]:
    return {"room": room, "user": {"id": uid, "name": uid.upper()}, "action": action, "online": online}


def typing(uid: str, on: bool = True, room: str = "big") -> dict[str, Any]:
    return {"room": room, "user": {"id": uid, "name": uid.upper()}, "typing": on}


async def test_small_rooms_are_not_touched(coalescer: Coalescer, sink: Sink) -> None:
    sink.sizes["small"] = 4
    assert not coalescer.absorb("presence", presence("u1", room="small"), "small")
    assert not coalescer.absorb("typing", typing("u1", room="small"), "small")
    assert not coalescer.absorb("read", {"room": "small", "user": {"id": "u"}, "message_id": "m"}, "small")
    await asyncio.sleep(WINDOW * 2)
    assert sink.sent == [] and coalescer.pending_rooms() == 0


async def test_other_events_and_aggregates_pass_through(coalescer: Coalescer, sink: Sink) -> None:
    sink.sizes["big"] = 10
    assert not coalescer.absorb("message", {"room": "big", "user": {"id": "u"}}, "big")
    assert not coalescer.absorb("presence", {"room": "big", "online": 10}, "big")  # our own aggregate
    assert not coalescer.absorb("typing", {"room": "big", "users": [], "count": 0}, "big")
    assert not coalescer.absorb("presence", presence("u"), None)
    assert sink.sent == []


async def test_a_burst_of_joins_is_one_count_per_window(coalescer: Coalescer, sink: Sink) -> None:
    sink.sizes["big"] = 5
    started = asyncio.get_running_loop().time()
    for i in range(50):
        sink.sizes["big"] = 5 + i
        assert coalescer.absorb("presence", presence(f"u{i}"), "big")
        await asyncio.sleep(WINDOW / 10)  # the burst spans about five windows
    elapsed = asyncio.get_running_loop().time() - started
    await asyncio.sleep(WINDOW * 1.5)
    sent = [(data, at) for name, data, _, at in sink.sent if name == "presence"]
    assert all(set(data) == {"room", "online"} for data, _ in sent), sent
    assert 2 <= len(sent) <= elapsed / WINDOW + 2, (len(sent), elapsed)
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(sent)]
    assert min(gaps) >= WINDOW * 0.9, gaps
    assert sent[0][0]["online"] == 5  # the first change goes out at once
    assert sent[-1][0]["online"] == 54  # the last window carries the final count


async def test_typing_is_capped_and_counted(coalescer: Coalescer, sink: Sink) -> None:
    sink.sizes["big"] = 20
    for i in range(8):
        assert coalescer.absorb("typing", typing(f"t{i}"), "big")
        await asyncio.sleep(0.01 if i == 0 else 0)  # the first goes out at once, alone
    first = sink.of("typing")
    assert first == [{"room": "big", "users": [{"id": "t0", "name": "T0"}], "count": 1}]
    await asyncio.sleep(WINDOW * 1.2)
    latest = sink.of("typing")[-1]
    assert latest["count"] == 8 and len(latest["users"]) == TYPING_USERS_SHOWN
    for i in range(8):
        coalescer.absorb("typing", typing(f"t{i}", on=False), "big")
    await asyncio.sleep(WINDOW * 1.5)
    assert sink.of("typing")[-1] == {"room": "big", "users": [], "count": 0}
    assert len(sink.of("typing")) == 3


async def test_a_leave_stops_typing(coalescer: Coalescer, sink: Sink) -> None:
    sink.sizes["big"] = 20
    coalescer.absorb("typing", typing("a"), "big")
    await asyncio.sleep(WINDOW * 1.5)
    coalescer.absorb("presence", presence("a", "leave"), "big")
    await asyncio.sleep(WINDOW * 1.5)
    assert sink.of("typing")[-1]["count"] == 0


async def test_typing_is_dropped_in_huge_rooms(coalescer: Coalescer, sink: Sink) -> None:
    sink.sizes["big"] = 50
    assert coalescer.absorb("typing", typing("a"), "big")
    await asyncio.sleep(WINDOW * 1.5)
    assert sink.of("typing") == []


async def test_typists_are_bounded(coalescer: Coalescer, sink: Sink) -> None:
    sink.sizes["big"] = 20
    for i in range(MAX_TRACKED + 50):
        coalescer.absorb("typing", typing(f"t{i}"), "big")
    await asyncio.sleep(WINDOW * 1.5)
    assert sink.of("typing")[-1]["count"] == MAX_TRACKED


async def test_read_receipts_are_one_event_per_window(coalescer: Coalescer, sink: Sink) -> None:
    sink.sizes["big"] = 20
    coalescer.absorb("read", {"room": "big", "user": {"id": "r0", "name": "R0"}, "message_id": "m1"}, "big")
    await asyncio.sleep(0.01)
    for i in range(1, 10):
        body = {"room": "big", "user": {"id": f"r{i}", "name": f"R{i}"}, "message_id": f"m{i % 4}"}
        assert coalescer.absorb("read", body, "big")
    await asyncio.sleep(WINDOW * 1.5)
    reads = sink.of("read")
    assert len(reads) == 2
    assert reads[0] == {
        "room": "big",
        "readers": [{"id": "r0", "name": "R0", "message_id": "m1"}],
        "count": 1,
        "message_id": "m1",
    }
    assert reads[1]["count"] == 9 and reads[1]["message_id"] == "m3" and len(reads[1]["readers"]) == 3


async def test_quiet_rooms_are_forgotten_and_aclose_stops_timers(coalescer: Coalescer, sink: Sink) -> None:
    sink.sizes["big"] = 20
    coalescer.absorb("presence", presence("a"), "big")
    await asyncio.sleep(WINDOW * 2.5)
    assert coalescer.pending_rooms() == 0
    coalescer.absorb("presence", presence("b"), "big")
    coalescer.absorb("presence", presence("c"), "big")
    await asyncio.sleep(0.01)
    before = len(sink.sent)
    await coalescer.aclose()
    await asyncio.sleep(WINDOW * 1.5)
    assert len(sink.sent) == before and coalescer.pending_rooms() == 0
    assert not coalescer.absorb("presence", presence("d"), "big")  # closed: delivered as it is


async def test_a_count_change_without_an_event_is_sent_in_big_rooms_only(
    coalescer: Coalescer, sink: Sink
) -> None:
    """A peer's presence delta can arrive after the per-user event it goes with: the
    count is sent again (within the window) when it changes."""
    sink.sizes.update(big=10, small=3)
    coalescer.touch("small")
    coalescer.touch("big")
    await asyncio.sleep(0.01)
    assert sink.of("presence") == [{"room": "big", "online": 10}]
    sink.sizes["big"] = 11
    coalescer.touch("big")
    coalescer.touch("big")
    await asyncio.sleep(WINDOW * 1.5)
    assert sink.of("presence") == [{"room": "big", "online": 10}, {"room": "big", "online": 11}]


async def test_a_typing_flood_is_still_one_event_per_window(coalescer: Coalescer, sink: Sink) -> None:
    """5,000 toggles from 50 typists over about three windows: a few events, each O(1) to take."""
    sink.sizes["big"] = 20
    started = asyncio.get_running_loop().time()
    for step in range(5000):
        coalescer.absorb("typing", typing(f"t{step % 50}", on=step % 3 != 0), "big")
        if step % 500 == 0:
            await asyncio.sleep(WINDOW / 3)
    elapsed = asyncio.get_running_loop().time() - started
    await asyncio.sleep(WINDOW * 1.5)
    events = sink.of("typing")
    assert 1 <= len(events) <= elapsed / WINDOW + 2, (len(events), elapsed)
    assert all(len(e["users"]) <= TYPING_USERS_SHOWN and e["count"] <= 50 for e in events)


async def test_the_senders_count_makes_a_room_big_before_this_replica_knows(
    coalescer: Coalescer, sink: Sink
) -> None:
    """A join from a peer says online 7; this replica has not had the peer's delta yet (3)."""
    sink.sizes["big"] = 3
    assert coalescer.absorb("presence", presence("p1", online=7), "big")
    assert not coalescer.absorb("presence", presence("p2", online=4), "big")  # small for both
    await asyncio.sleep(0.01)
    assert sink.of("presence") == [{"room": "big", "online": 3}]
    sink.sizes["big"] = 7  # the deltas arrive: presence's watcher touches the room
    coalescer.touch("big")
    await asyncio.sleep(WINDOW * 1.5)
    assert sink.of("presence")[-1] == {"room": "big", "online": 7}
