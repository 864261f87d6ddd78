"""Bans and mutes: stored, cached per replica, invalidated cluster-wide, enforced on sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatsvc.chat.cluster import ClusterActions, Reach
from chatsvc.chat.moderation import Disconnected, ModerationRecords, Moderator
from chatsvc.errors import ChatError, StoreUnavailable
from chatsvc.model.messages import Moderation
from chatsvc.store.sqlite import SqliteStore
from tests.support.control_net import ControlNet


class CountingStore(SqliteStore):
    """SQLite that counts moderation reads and can be taken down."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0
        self.down = False

    async def get_moderation(self, kind: str, room: str, user_id: str) -> Moderation | None:
        if self.down:
            raise StoreUnavailable()
        self.reads += 1
        return await super().get_moderation(kind, room, user_id)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeSockets:
    """A replica's sockets: who is connected where, and what was done to them."""

    def __init__(self, users: dict[str, int]) -> None:
        self.users = users
        self.ended: list[tuple[str, dict[str, str]]] = []
        self.kicked: list[tuple[str, str, str]] = []

    async def disconnect_user(self, user_id: str, reason: ChatError) -> int:
        self.ended.append((user_id, reason.to_wire()))
        return self.users.pop(user_id, 0)

    async def kick(self, room: str, user_id: str, reason: str) -> int:
        self.kicked.append((room, user_id, reason))
        return self.users.get(user_id, 0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    store = CountingStore(tmp_path / "db.sqlite3")
    await store.open()
    await store.migrate()
    yield store
    await store.aclose()


@pytest.fixture
async def net() -> AsyncIterator[ControlNet]:
    net = ControlNet()
    yield net
    await net.close()


async def test_ban_and_mute_apply_until_lifted_or_expired(store: CountingStore, net: ControlNet) -> None:
    wall, mono = Clock(), Clock(0.0)
    records = ModerationRecords(store, net.router("a"), clock=wall, monotonic=mono)
    assert not await records.is_banned("mallory")
    await records.set(Moderation("ban", "", "mallory", None, "spam"))
    assert await records.is_banned("mallory")
    await records.clear("ban", "", "mallory")
    assert not await records.is_banned("mallory")

    await records.set(Moderation("mute", "AAPL", "mallory", int(wall.now * 1000) + 60_000))
    assert await records.is_muted("AAPL", "mallory")
    assert not await records.is_muted("TSLA", "mallory"), "a mute is per room"
    wall.now += 61
    assert not await records.is_muted("AAPL", "mallory"), "expired (from the cache, by the wall clock)"


async def test_checks_are_served_from_the_cache_until_the_ttl(store: CountingStore, net: ControlNet) -> None:
    mono = Clock(0.0)
    records = ModerationRecords(store, net.router("a"), ttl=30, monotonic=mono)
    for _ in range(5):
        assert not await records.is_muted("AAPL", "alice")
    assert store.reads == 1
    mono.now += 31
    assert not await records.is_muted("AAPL", "alice")
    assert store.reads == 2


async def test_the_cache_is_bounded(store: CountingStore, net: ControlNet) -> None:
    records = ModerationRecords(store, net.router("a"), max_entries=2)
    for user in ("u1", "u2", "u3", "u1"):
        await records.is_banned(user)
    assert store.reads == 4, "u1 was evicted by u3"


async def test_a_change_on_one_replica_reaches_the_others_cache(
    store: CountingStore, net: ControlNet
) -> None:
    a = ModerationRecords(store, net.router("a"), ttl=3600)
    b = ModerationRecords(store, net.router("b"), ttl=3600)
    assert not await b.is_muted("AAPL", "mallory")  # cached on b
    await a.set(Moderation("mute", "AAPL", "mallory", None))
    await net.settle()
    assert await b.is_muted("AAPL", "mallory")
    await a.clear("mute", "AAPL", "mallory")
    await net.settle()
    assert not await b.is_muted("AAPL", "mallory")


async def test_with_the_bus_down_a_change_is_stored_and_others_catch_up_by_ttl(
    store: CountingStore, net: ControlNet, caplog: pytest.LogCaptureFixture
) -> None:
    mono = Clock(0.0)
    a = ModerationRecords(store, net.router("a"), ttl=30, monotonic=mono)
    b = ModerationRecords(store, net.router("b"), ttl=30, monotonic=mono)
    assert not await b.is_banned("mallory")
    net.up = False
    await a.set(Moderation("ban", "", "mallory", None))  # does not fail
    assert "not announced" in caplog.text
    assert await a.is_banned("mallory")
    assert not await b.is_banned("mallory"), "b's cache is stale..."
    mono.now += 31
    assert await b.is_banned("mallory"), "...for at most the TTL"


async def test_a_store_outage_serves_what_is_known_and_guesses_nothing(
    store: CountingStore, net: ControlNet
) -> None:
    mono = Clock(0.0)
    records = ModerationRecords(store, net.router("a"), ttl=30, monotonic=mono)
    await records.set(Moderation("ban", "", "mallory", None))
    assert await records.is_banned("mallory") and not await records.is_banned("alice")
    store.down = True
    mono.now += 31  # both entries expired: the store would be asked again
    assert await records.is_banned("mallory"), "a known ban keeps holding"
    assert not await records.is_banned("alice"), "a known user keeps connecting"
    with pytest.raises(StoreUnavailable):
        await records.is_banned("stranger")


def _moderators(
    store: CountingStore, net: ControlNet, sockets: dict[str, FakeSockets]
) -> dict[str, Moderator]:
    out = {}
    for rid, socks in sockets.items():
        router = net.router(rid)
        peers = [p for p in sockets if p != rid]
        actions = ClusterActions(router, lambda peers=peers: peers)  # type: ignore[misc]
        out[rid] = Moderator(ModerationRecords(store, router, ttl=3600), actions, socks)
    return out


async def test_disconnect_and_kick_reach_every_replica(store: CountingStore, net: ControlNet) -> None:
    sockets = {"a": FakeSockets({"alice": 1}), "b": FakeSockets({"alice": 2, "bob": 1})}
    mods = _moderators(store, net, sockets)
    assert await mods["a"].kick("AAPL", "alice", "off topic") == Reach(3, 2, ())
    assert sockets["b"].kicked == [("AAPL", "alice", "off topic")]
    assert await mods["a"].disconnect_user("alice", "bye") == Reach(3, 2, ())
    wire = {"code": Disconnected.code, "message": "bye"}
    assert sockets["a"].ended == [("alice", wire)] and sockets["b"].ended == [("alice", wire)]


async def test_a_ban_is_stored_enforced_everywhere_and_closes_sockets(
    store: CountingStore, net: ControlNet
) -> None:
    sockets = {"a": FakeSockets({}), "b": FakeSockets({"mallory": 1})}
    mods = _moderators(store, net, sockets)
    assert not await mods["b"].records.is_banned("mallory")  # cached "not banned" on b
    record, reach = await mods["a"].ban("mallory", 3600, "spam")
    assert (record.kind, record.room, record.reason, reach) == ("ban", "", "spam", Reach(1, 2, ()))
    assert record.until_ms is not None
    assert sockets["b"].ended == [("mallory", {"code": "forbidden", "message": "you are banned: spam"})]
    assert await mods["b"].records.is_banned("mallory")
    await mods["b"].unban("mallory")
    await net.settle()
    assert not await mods["a"].records.is_banned("mallory")


async def test_mute_duration_and_unmute(store: CountingStore, net: ControlNet) -> None:
    mods = _moderators(store, net, {"a": FakeSockets({})})
    forever = await mods["a"].mute("AAPL", "mallory", None, "")
    assert forever.until_ms is None
    assert await mods["a"].records.is_muted("AAPL", "mallory")
    await mods["a"].unmute("AAPL", "mallory")
    assert not await mods["a"].records.is_muted("AAPL", "mallory")


async def test_malformed_remote_requests_touch_nothing(store: CountingStore, net: ControlNet) -> None:
    sockets = {"a": FakeSockets({"alice": 1})}
    _moderators(store, net, sockets)
    router = net.routers["a"]
    bad: list[dict[str, Any]] = [
        {"action": "disconnect", "args": {"user_id": 5, "message": "x"}},
        {"action": "kick", "args": {"room": "AAPL"}},
        {"action": "explode", "args": {}},
    ]
    for body in bad:
        await router.dispatch({"type": "action", "replica": "z", "v": 1, "id": "r1", **body})
    assert sockets["a"].ended == [] and sockets["a"].kicked == []
