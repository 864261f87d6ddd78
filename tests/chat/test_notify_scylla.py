"""Offline notifications on ScyllaDB without Kafka (issue 24), on the real Cassandra node:
a process that stops between the sender's ack and the notifications loses none (the next
start's sweep writes them, once; a chatsvc server on the keyspace does it too), and in
cluster mode nothing sweeps the marks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from chatsvc.chat.notify import Notifier
from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message
from chatsvc.model.rooms import Conversation, Member, Notification
from chatsvc.settings import Limits
from chatsvc.store.scylla.store import ScyllaStore
from tests.conftest import ServerFactory
from tests.store.conftest import StoreSpec, cli_env, drop_keyspace, new_keyspace, scylla_env
from tests.support.control_net import eventually
from tests.support.servers import run_cli

#: The outbox shows a notification 2 s after it is written (notifications.SETTLE_MS).
WITHIN = 30.0


@pytest.fixture(scope="module")
def cql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreSpec]:
    """A keyspace of this module's own (a sweep writes the notifications of every mark in
    it), migrated by ``chatsvc migrate``; dropped after."""
    keyspace = new_keyspace()
    spec = StoreSpec("scylla", scylla_env(keyspace))
    done = run_cli(["migrate"], cli_env(tmp_path_factory.mktemp("migrate"), spec.env), timeout=300)
    assert done.returncode == 0, done.stderr
    yield spec
    drop_keyspace(spec.env, keyspace)


async def open_scylla(spec: StoreSpec, *, positions: bool = True) -> ScyllaStore:
    """``positions=False``: as with Kafka (app.build_store)."""
    settings = spec.settings().scylla
    assert settings is not None
    store = ScyllaStore(settings, positions=positions)
    await store.open()
    await store.migrate()
    return store


async def direct_message(store: ScyllaStore, text: str) -> tuple[Message, bool]:
    """A new DM between alice and bob, and alice's first message in it, as the send path
    stores it (what the ack follows)."""
    dm = f"dm:{uuid.uuid4().hex[:16]}"
    members = [Member(dm, u, "member", 1) for u in ("alice", "bob")]
    await store.create_conversation(Conversation(dm, "direct", "", "alice", 1), members)
    now = int(time.time() * 1000)
    return await store.append(Message(id_at(now), dm, "alice", "Alice", text, now, client_msg_id="c-1"))


class Stopping:
    """An outbox whose process stops right in the first notification's write."""

    async def add_notification(self, notification: Notification) -> bool:
        raise asyncio.CancelledError

    async def notifications_after(self, position: int, limit: int) -> list[tuple[int, Notification]]:
        return []


async def notified(store: ScyllaStore, message_id: str) -> list[str]:
    """Who has a notification of the message in the outbox (each entry once per row)."""
    return [n.user_id for _, n in await store.notifications_after(0, 1000) if n.message_id == message_id]


async def test_a_process_stopped_between_ack_and_notifications_loses_none(cql: StoreSpec) -> None:
    """The send path stored the message (its mark written before it) and acked; the process
    stops while writing the notifications. The next process writes them at start, once; the
    one after that writes nothing again."""
    first = await open_scylla(cql)
    try:
        sent, created = await direct_message(first, "are you there?")
        with pytest.raises(asyncio.CancelledError):
            await Notifier(first, Limits(), outbox=Stopping()).posted(sent, created=created)
        assert created and [m.id for m in await first.pending_notifications(10)] == [sent.id]
    finally:
        await first.aclose()

    for restart in range(2):
        store = await open_scylla(cql)
        notifier = Notifier(store, Limits(), outbox=store)
        await notifier.start()
        try:

            async def settled(s: ScyllaStore = store) -> bool:
                return await s.pending_notifications(10) == [] and await notified(s, sent.id) == ["bob"]

            await eventually(settled, within=WITHIN, what=f"start {restart}")
            assert await notifier.sweep() == 0  # nothing left to write: the start's sweep ran
            assert await notified(store, sent.id) == ["bob"]
        finally:
            await notifier.aclose()
            await store.aclose()


async def test_a_server_on_scylla_without_kafka_writes_the_marks_a_crash_left(
    cql: StoreSpec, server_factory: ServerFactory
) -> None:
    """The app wires the sweep on ScyllaDB when there is no events log (app._notifier, Notifier.start)."""
    store = await open_scylla(cql)
    try:
        sent, _ = await direct_message(store, "while you were out")  # stored, marked, never notified
        server = server_factory(name="embedded-scylla", **cql.env)
        server.wait_http("/readyz", timeout=60)

        async def settled() -> bool:
            return await store.pending_notifications(10) == [] and await notified(store, sent.id) == ["bob"]

        await eventually(settled, within=WITHIN, what="swept by the server")
    finally:
        await store.aclose()


async def test_the_send_path_writes_them_and_clears_the_mark(cql: StoreSpec) -> None:
    store = await open_scylla(cql)
    notifier = Notifier(store, Limits(), outbox=store)
    try:
        sent, created = await direct_message(store, "hello")
        assert [m.id for m in await store.pending_notifications(10)] == [sent.id]
        assert await notifier.posted(sent, created=created) == 1
        assert await store.pending_notifications(10) == []
        await eventually(lambda: notified(store, sent.id), within=WITHIN, what="in the outbox")
    finally:
        await store.aclose()


async def test_cluster_mode_neither_marks_nor_sweeps(cql: StoreSpec) -> None:
    """With Kafka the history writer notifies from the events log: its appends bring their
    position (no mark), and a mark an embedded run left is no business of the notifier's."""
    embedded = await open_scylla(cql)
    try:
        left, _ = await direct_message(embedded, "from before Kafka")
    finally:
        await embedded.aclose()
    store = await open_scylla(cql, positions=False)
    notifier = Notifier(store, Limits(), outbox=store)
    notifier.from_log = True  # as app wires it when the history writer runs
    await notifier.start()
    try:
        assert notifier._sweeper is None  # no sweep at start
        now = int(time.time() * 1000)
        record, _ = await store.append(Message(id_at(now), left.room, "bob", "Bob", "logged", now, pos=7))
        assert await notifier.posted(record) == 0  # the history writer's (Notifier.written)
        assert [m.id for m in await store.pending_notifications(10)] == [left.id]  # no new mark
    finally:
        await notifier.aclose()
        await store.aclose()
