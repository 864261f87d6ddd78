"""The Notifier over the outbox, with and without the relay to the topic (in-memory
doubles), and offline detection across replicas over the in-process control channel
(issue 24)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from chatsvc.auth.identity import Identity
from chatsvc.bus.notify_kafka import notification_record
from chatsvc.chat.cluster_presence import ClusterPresence
from chatsvc.chat.notify import Notifier
from chatsvc.chat.notify_relay import NotificationRelay
from chatsvc.chat.online import OnlineUsers
from chatsvc.errors import StoreUnavailable
from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message
from chatsvc.model.rooms import Conversation, Member, Notification
from chatsvc.settings import Limits
from chatsvc.store.base import NotificationOutbox
from chatsvc.store.memory import MemoryStore
from chatsvc.store.sqlite import SqliteStore
from tests.chat.outbox_double import FlakyOutbox
from tests.support.control_net import ControlNet, eventually

DM = "dm:0123456789abcdef"
BOB = Identity("bob", "Bob")


@pytest.fixture
async def store() -> MemoryStore:
    store = MemoryStore()
    await store.open()
    members = [Member(DM, u, "member", 1) for u in ("alice", "bob")]
    await store.create_conversation(Conversation(DM, "direct", "", "alice", 1), members)
    return store


def message(text: str = "hello", mentions: tuple[str, ...] = ()) -> Message:
    return Message(id_at(1_700_000_000_000), DM, "alice", "Alice", text, 1_700_000_000_000, mentions=mentions)


async def test_each_offline_member_once_per_message_in_the_outbox(store: MemoryStore) -> None:
    notifier = Notifier(store, Limits(), outbox=store)
    sent = message("x" * 300)
    assert await notifier.posted(sent) == 1
    assert await notifier.posted(sent) == 0  # the same message again (a replay): there already
    assert [n for _, n in await store.notifications_after(0, 10)] == [
        Notification("bob", DM, sent.id, "alice", "x" * 100, "direct", sent.created_at_ms)
    ]
    notifier.online = lambda user: user == "bob"
    assert await notifier.posted(message("later")) == 0  # online somewhere: nothing
    assert len(await store.notifications_after(0, 10)) == 1


async def test_a_failed_write_costs_the_notification_never_the_message_nor_the_others(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    club = "priv:0123456789abcdef"
    members = [Member(club, u, "member", 1) for u in ("alice", "bob", "carol")]
    await store.create_conversation(Conversation(club, "private", "Club", "alice", 1), members)
    bob_fails = FlakyOutbox(store, lambda n: n.user_id == "bob")
    sent = Message(id_at(1_700_000_000_000), club, "alice", "Alice", "hi", 1_700_000_000_000)
    with caplog.at_level(logging.WARNING):
        assert await Notifier(store, Limits(), outbox=bob_fails).posted(sent) == 1
    assert [n.user_id for _, n in await store.notifications_after(0, 10)] == ["carol"]
    assert "store_unavailable" in caplog.text and "Traceback" not in caplog.text


async def test_with_a_relay_a_write_wakes_it_and_the_stream_still_reads_the_outbox(
    store: MemoryStore,
) -> None:
    class Topic:
        topic = "chatsvc.notify"

        async def start(self) -> None:
            return None

        async def aclose(self) -> None:
            return None

        async def produce(self, notifications: Sequence[Notification]) -> None:
            produced.extend(notifications)

        async def recent_ids(self, per_partition: int) -> set[str]:
            return set()

    produced: list[Notification] = []
    relay = NotificationRelay(store, Topic(), owner="ra", lease_seconds=10)
    notifier = Notifier(store, Limits(), outbox=store, relay=relay)
    await notifier.start()
    try:
        stream = notifier.stream(0)
        sent = message()
        assert await notifier.posted(sent) == 1
        _, streamed = await asyncio.wait_for(anext(stream), 2.0)
        assert (streamed.user_id, streamed.message_id) == ("bob", sent.id)
        # Woken by the write, well before its one-second poll.
        await eventually(lambda: [n.message_id for n in produced] == [sent.id], within=0.5, what="relayed")
        await stream.aclose()
    finally:
        await notifier.aclose()


def test_the_record_is_keyed_by_user_with_the_dedup_key() -> None:
    n = Notification("bob", DM, "01J00000000000000000000001", "alice", "héllo", "direct", 5)
    key, value, headers = notification_record(n)
    assert key == b"bob"
    assert headers == [("dedup", b"bob:01J00000000000000000000001")]
    assert json.loads(value) == {
        "id": "bob:01J00000000000000000000001",
        "user": "bob",
        "room": DM,
        "message_id": "01J00000000000000000000001",
        "sender": "alice",
        "preview": "héllo",
        "kind": "direct",
        "created_at_ms": 5,
    }


@pytest.fixture
async def net() -> AsyncIterator[ControlNet]:
    net = ControlNet()
    yield net
    await net.close()


async def test_a_user_connected_to_another_replica_is_online_here(net: ControlNet) -> None:
    ra, rb = net.router("ra"), net.router("rb")
    rooms_a = ClusterPresence(ra, version="1", connections=lambda: 0, heartbeat_seconds=0.05)
    a = OnlineUsers(ra, version="1", heartbeat_seconds=0.05)  # beside room presence, same router
    b = OnlineUsers(rb, version="1", heartbeat_seconds=0.05)
    for part in (rooms_a, a, b):
        await part.start()
    try:
        assert not a.anywhere("bob")
        await b.connected(BOB, "s1")
        await b.connected(BOB, "s2")
        await eventually(lambda: a.anywhere("bob"), what="bob online on ra")
        assert await rooms_a.rooms() == {}  # room presence never sees the connected pseudo-room
        await b.disconnected(BOB, "s1")
        await net.settle()
        assert a.anywhere("bob")  # still one socket on rb
        await b.disconnected(BOB, "s2")
        await eventually(lambda: not a.anywhere("bob"), what="bob offline on ra")
        await b.connected(BOB, "s3")
        await eventually(lambda: a.anywhere("bob"), what="bob online again")
        await b.aclose()  # rb stops: its goodbye takes bob offline at once
        await eventually(lambda: not a.anywhere("bob"), what="bob gone with rb")
    finally:
        for part in (rooms_a, a, b):
            await part.aclose()


async def test_a_silent_replicas_users_expire(net: ControlNet) -> None:
    """rb crashes (no goodbye): its users stay online on ra only until its view expires."""
    ra, rb = net.router("ra"), net.router("rb")
    a = OnlineUsers(ra, version="1", heartbeat_seconds=0.05)
    b = OnlineUsers(rb, version="1", heartbeat_seconds=0.05)
    await a.start()
    await b.start()
    try:
        await b.connected(BOB, "s1")
        await eventually(lambda: a.anywhere("bob"), what="bob online on ra")
        net.cut.add("rb")
        await eventually(lambda: not a.anywhere("bob"), within=2.0, what="rb's view expired")
    finally:
        await a.aclose()
        await b.aclose()


# -- durable: derived from the message's record, resumed after a crash ----------------------


async def open_sqlite(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    await store.migrate()
    return store


async def outbox_pairs(store: NotificationOutbox) -> list[tuple[str, str]]:
    return [(n.user_id, n.message_id) for _, n in await store.notifications_after(0, 100)]


async def settled(store: MemoryStore | SqliteStore, expected: list[tuple[str, str]]) -> bool:
    """The outbox holds ``expected`` and no mark is left (the sweep clears a mark after)."""
    return await store.pending_notifications(10) == [] and await outbox_pairs(store) == expected


async def test_embedded_a_process_stopped_between_ack_and_notifications_loses_none(tmp_path: Path) -> None:
    """The send path stored the message (and, in its transaction, the mark) and acked; the
    process stops while writing the notifications. The next process writes them at start,
    once; the one after that writes nothing again."""
    first = await open_sqlite(tmp_path / "chat.db")
    members = [Member(DM, u, "member", 1) for u in ("alice", "bob")]
    await first.create_conversation(Conversation(DM, "direct", "", "alice", 1), members)
    sent, created = await first.append(message("are you there?"))  # what the ack follows

    class Stopping(SqliteStore):
        async def add_notification(self, notification: Notification) -> bool:
            raise asyncio.CancelledError  # the process stops right here

    with pytest.raises(asyncio.CancelledError):
        await Notifier(first, Limits(), outbox=Stopping(tmp_path / "unused.db")).posted(sent, created=created)
    assert created and await outbox_pairs(first) == []
    assert [m.id for m in await first.pending_notifications(10)] == [sent.id]
    await first.aclose()

    for restart in range(2):
        store = await open_sqlite(tmp_path / "chat.db")
        notifier = Notifier(store, Limits(), outbox=store)
        await notifier.start()
        try:
            await eventually(lambda s=store: settled(s, [("bob", sent.id)]), what=f"start {restart}")
        finally:
            await notifier.aclose()
            await store.aclose()


async def test_embedded_the_send_path_clears_the_mark_and_a_duplicate_asks_for_a_sweep(
    store: MemoryStore,
) -> None:
    notifier = Notifier(store, Limits(), outbox=store)
    await notifier.start()
    try:
        sent, _ = await store.append(message("one"))
        assert await notifier.posted(sent) == 1
        assert await store.pending_notifications(10) == []  # written: no mark left
        lost, _ = await store.append(message("two"))  # its first attempt's process died
        assert await notifier.posted(lost, created=False) == 0  # the retry writes nothing itself
        await eventually(lambda: settled(store, [("bob", sent.id), ("bob", lost.id)]), what="swept")
    finally:
        await notifier.aclose()


async def test_embedded_a_failed_write_is_retried_by_the_sweep(store: MemoryStore) -> None:
    failing = [True]
    notifier = Notifier(store, Limits(), outbox=FlakyOutbox(store, lambda _n: failing[0]))
    await notifier.start()
    try:
        sent, _ = await store.append(message())
        assert await notifier.posted(sent) == 0  # logged, never raised: the ack stands
        failing[0] = False
        await eventually(lambda: settled(store, [("bob", sent.id)]), within=5.0, what="retried")
    finally:
        await notifier.aclose()


async def test_cluster_the_history_writer_notifies_and_the_send_path_does_not(store: MemoryStore) -> None:
    notifier = Notifier(store, Limits(), outbox=store)
    notifier.from_log = True
    sent = message()
    assert await notifier.posted(sent) == 0  # the sender's replica: nothing
    assert await notifier.written(sent) == 1  # the partition's writer
    assert await notifier.written(sent) == 0  # a re-run (a new writer after a crash)
    assert await outbox_pairs(store) == [("bob", sent.id)]

    class Down(MemoryStore):
        async def notifications_done(self, room: str, message_id: str) -> bool:
            return False  # the read answered; the write below does not

        async def add_notification(self, notification: Notification) -> bool:
            raise StoreUnavailable("message store error: NoHostAvailable")

    with pytest.raises(StoreUnavailable):  # the writer retries the record
        await Notifier(store, Limits(), outbox=Down()).written(message("later"))
    assert await notifier.written(replace(message("system"), kind="system")) == 0  # the admin API's
    assert await outbox_pairs(store) == [("bob", sent.id)]


async def test_the_writer_judges_after_the_registry_had_a_heartbeat(net: ControlNet) -> None:
    """A just-started replica has not heard the others' users yet: :meth:`written` waits
    for ``settled`` (one heartbeat after start; at once for a registry never started)."""
    online = OnlineUsers(net.router("ra"), version="1", heartbeat_seconds=0.3)
    await online.settled()  # never started: nothing to wait for
    await online.start()
    try:
        waiting = asyncio.ensure_future(online.settled())
        await asyncio.sleep(0)
        assert not waiting.done()
        await asyncio.wait_for(waiting, 5.0)
        await asyncio.wait_for(online.settled(), 0.1)  # settled stays settled
    finally:
        await online.aclose()


async def test_a_public_message_without_mentions_reads_no_members(store: MemoryStore) -> None:
    class NoReads(MemoryStore):
        async def list_members(self, room: str, *, after: str | None, limit: int) -> list[Member]:
            raise AssertionError("members read for a public message")

    notifier = Notifier(NoReads(), Limits(), outbox=store)
    public = Message(id_at(1_700_000_000_001), "stock:005930", "alice", "Alice", "hi", 1_700_000_000_001)
    assert await notifier.written(public) == 0
    assert await notifier.written(replace(public, mentions=("bob",))) == 1  # mentions: no read either
