"""The surge decision with in-memory doubles (issue 25): thresholds with hysteresis, the
same store seen by two "replicas" deciding at once announces each change once, private
rooms never surge, and slow mode's per-user interval."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chatsvc.auth.identity import Identity
from chatsvc.chat.service import ChatService, Draft
from chatsvc.chat.slowmode import SlowModes
from chatsvc.chat.surge import SurgeMonitor
from chatsvc.errors import SlowMode
from chatsvc.metrics import Metrics
from chatsvc.settings import Limits, ModeSettings
from chatsvc.store.memory import MemoryStore

SETTINGS = ModeSettings(surge_rate=1.0, surge_window_seconds=4, surge_slow_mode_seconds=3)


class Emitted:
    """Stands in for socketio.AsyncServer.emit: records what was delivered."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def emit(self, event: str, data: Any = None, **kw: Any) -> None:
        self.events.append((event, data))

    def modes(self) -> list[tuple[str, int]]:
        return [(d["reason"], d["slow_mode_seconds"]) for e, d in self.events if e == "room_mode"]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store() -> MemoryStore:
    s = MemoryStore()
    await s.open()
    return s


def replica(
    store: MemoryStore, emitted: Emitted, clock: Clock
) -> tuple[ChatService, SlowModes, SurgeMonitor]:
    service = ChatService(store, emitted, Metrics(), Limits(), clock=clock)
    slow = SlowModes(service, store, SETTINGS, None, clock=clock)
    return service, slow, SurgeMonitor(store, slow, SETTINGS, clock=clock)


async def test_two_replicas_on_one_store_enter_and_leave_once_with_hysteresis(store: MemoryStore) -> None:
    clock, emitted = Clock(), Emitted()
    (svc_a, slow_a, surge_a), (_svc_b, _slow_b, surge_b) = (
        replica(store, emitted, clock),
        replica(store, emitted, clock),
    )
    room = "stock:hot"
    poster = Identity("u", "U")

    async def post(n: int) -> None:
        for i in range(n):
            await svc_a.post(Draft(room, Identity(f"u{i}", "U"), "x"))
            surge_a.posted(room)
            surge_b.posted(room)

    await post(4)  # 4 in 4 s: at the threshold, not above
    await surge_a.tick()
    await surge_b.tick()
    assert emitted.modes() == []
    await post(1)
    await surge_a.tick()
    await surge_b.tick()
    assert emitted.modes() == [("surge", 3)], "entered once though both replicas saw it"
    assert (await store.get_room_mode(room)).surge
    await slow_a.check(room, poster)
    with pytest.raises(SlowMode) as refused:
        await slow_a.check(room, poster)
    assert 0 < refused.value.retry_after_ms <= 3000
    clock.now += 2.5  # the window still holds 5: no change
    await surge_b.tick()
    assert emitted.modes() == [("surge", 3)]
    clock.now += 2.0  # the window is empty: leave, once
    await surge_a.tick()
    await surge_b.tick()
    assert emitted.modes() == [("surge", 3), ("surge_end", 0)]
    clock.now += 10  # quiet rooms are forgotten
    await surge_a.tick()
    assert emitted.modes() == [("surge", 3), ("surge_end", 0)]


async def test_private_rooms_and_surge_off_never_surge(store: MemoryStore) -> None:
    clock, emitted = Clock(), Emitted()
    service, slow, _ = replica(store, emitted, clock)
    off = SurgeMonitor(store, slow, ModeSettings(surge_rate=0), clock=clock)
    on = SurgeMonitor(store, slow, SETTINGS, clock=clock)
    assert not off.enabled
    private = "priv:" + "0" * 32
    for i in range(10):
        await service.post(Draft(private, Identity(f"u{i}", "U"), "x"))
        on.posted(private)
        off.posted("stock:x")
    await on.tick()
    await off.tick()
    assert emitted.modes() == []


async def test_slow_mode_interval_per_user_and_admins_exempt(store: MemoryStore) -> None:
    clock, emitted = Clock(), Emitted()
    _, slow, _ = replica(store, emitted, clock)
    await slow.set("stock:s", 10, "moderator")
    assert emitted.modes() == [("moderator", 10)]
    alice, bob, admin = Identity("a", "A"), Identity("b", "B"), Identity("root", "R", frozenset({"admin"}))
    await slow.check("stock:s", alice)
    await slow.check("stock:s", bob)
    await slow.check("stock:t", alice)  # another room: its own interval
    for _ in range(3):
        await slow.check("stock:s", admin)
    clock.now += 4
    with pytest.raises(SlowMode) as refused:
        await slow.check("stock:s", alice)
    assert refused.value.retry_after_ms == 6000
    assert refused.value.to_wire() == {
        "code": "slow_mode",
        "message": "slow mode: one message per 10 s in stock:s",
        "retry_after_ms": 6000,
    }
    clock.now += 6
    await slow.check("stock:s", alice)
