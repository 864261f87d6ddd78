"""Routing's private and direct rooms (chatsvc.chat.routed_members), with in-memory doubles:
two replicas on an in-process control channel sharing one memory store; the events log is
a recorder of what each replica was told to read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from chatsvc.chat.cluster import ClusterActions
from chatsvc.chat.conversations import Conversations
from chatsvc.chat.routed_members import RoutedMembers
from chatsvc.errors import BusUnavailable
from chatsvc.settings import Limits
from chatsvc.store.memory import MemoryStore
from tests.support.control_net import ControlNet


class Emitter:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    async def emit(self, event: str, data: Any = None, room: str | list[str] | None = None) -> None:
        self.sent.append((event, data))


class Follower:
    """What the events log was asked to read; ``delay``: a replay that takes time."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.followed: list[str] = []
        self.batches: list[list[str]] = []
        self.down = False

    async def follow(self, room: str) -> None:
        if self.down:
            raise BusUnavailable("fake events topic down")
        await asyncio.sleep(self.delay)
        self.followed.append(room)

    async def follow_rooms(self, rooms: Iterable[str]) -> None:
        if self.down:
            raise BusUnavailable("fake events topic down")
        self.batches.append(sorted(rooms))


class Replica:
    def __init__(
        self, net: ControlNet, rid: str, store: MemoryStore, peers: list[str], local: set[str]
    ) -> None:
        self.emitter = Emitter()
        self.conversations = Conversations(store, self.emitter, Limits())
        self.routed = RoutedMembers(self.conversations, per_user=500, members_per_room=100)
        self.log = Follower(delay=0.2)
        self.routed.use_log(self.log)
        self.local = local
        actions = ClusterActions(net.router(rid), lambda: peers, timeout=2.0)
        self.routed.use_actions(actions, local.__contains__)


@pytest.fixture
async def net() -> AsyncIterator[ControlNet]:
    net = ControlNet()
    yield net
    await net.close()


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore()
    await store.open()
    yield store
    await store.aclose()


async def test_a_new_dm_is_read_by_the_other_users_replica_before_open_dm_answers(
    net: ControlNet, store: MemoryStore
) -> None:
    a = Replica(net, "ra", store, ["rb"], {"alice"})
    b = Replica(net, "rb", store, ["ra"], {"bob"})
    dm = (await a.conversations.open_dm("alice", "bob"))["room"]
    # B has a socket of bob: it read the room (its follow took 0.2 s) before A answered.
    assert b.log.followed == [dm]
    assert a.log.followed == [dm]  # alice's replica too (her other sockets get it as well)
    assert list(b.routed.interest({"bob"}.__contains__)) == [dm]
    # Opening it again creates nothing and follows nothing.
    await a.conversations.open_dm("alice", "bob")
    await b.conversations.open_dm("bob", "alice")
    assert b.log.followed == [dm]


async def test_create_room_and_add_member_follow_only_where_the_added_user_has_a_socket(
    net: ControlNet, store: MemoryStore
) -> None:
    a = Replica(net, "ra", store, ["rb"], {"alice"})
    b = Replica(net, "rb", store, ["ra"], {"carol"})
    room = (await a.conversations.create_room("alice", "Club", ["dave"]))["room"]
    assert b.log.followed == []  # dave has no socket anywhere, alice none on B
    assert a.log.followed == [room]
    await a.conversations.add_member("alice", room, "carol")
    assert b.log.followed == [room]
    assert list(b.routed.interest({"carol"}.__contains__)) == [room]
    assert list(b.routed.interest(lambda _u: False)) == []  # carol's last socket went


async def test_connect_follows_every_member_room_in_one_batch(net: ControlNet, store: MemoryStore) -> None:
    a = Replica(net, "ra", store, [], set())
    rooms = [(await a.conversations.open_dm("erin", f"u{i}"))["room"] for i in range(5)]
    b = Replica(net, "rb", store, [], {"erin"})
    await b.routed.connected("erin")
    assert b.log.batches == [sorted(rooms)]
    assert sorted(b.routed.interest({"erin"}.__contains__)) == sorted(rooms)


async def test_a_follow_that_fails_does_not_fail_the_connect_or_the_add_and_is_logged_once(
    net: ControlNet, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    a = Replica(net, "ra", store, ["rb"], {"alice"})
    b = Replica(net, "rb", store, ["ra"], {"bob"})
    b.log.down = True
    with caplog.at_level(logging.WARNING, logger="chatsvc.chat.routed_members"):
        dm = (await a.conversations.open_dm("alice", "bob"))["room"]
        await b.routed.connected("bob")
        await b.routed.connected("bob")
    warnings = [r for r in caplog.records if "could not start reading" in r.getMessage()]
    assert len(warnings) == 1
    # Still registered: the events log starts its partition on its own (kafka_log._start_missed).
    assert list(b.routed.interest({"bob"}.__contains__)) == [dm]


async def test_a_malformed_follow_action_is_ignored(net: ControlNet, store: MemoryStore) -> None:
    b = Replica(net, "rb", store, [], {"bob"})
    bad: list[dict[str, Any]] = [{}, {"room": 1, "users": ["bob"]}, {"room": "d", "users": "bob"}]
    for args in [*bad, {"room": "d", "users": [1]}]:
        assert await b.routed._on_added(args) == 0
    assert b.log.followed == []
