"""The notification outbox and claim (issue 24) on every store; the CQL ones on the real
Cassandra node: once per (user, message) whoever writes, position order, resume, hours."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from chatsvc.errors import StoreUnavailable
from chatsvc.model.ids import id_at
from chatsvc.model.rooms import Notification
from chatsvc.store.base import MessageStore, NotificationOutbox
from chatsvc.store.scylla import notifications as scylla_notifications
from chatsvc.store.scylla.schema import MIGRATIONS, NOTIFY_MIGRATION, STATEMENTS
from chatsvc.store.scylla.store import ScyllaStore
from tests.store.conftest import StoreSpec


def users(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"u{i}-{tag}" for i in range(n)]


def new_message_id() -> str:
    return id_at(int(time.time() * 1000))


def note(user: str, message_id: str, text: str = "hi") -> Notification:
    return Notification(user, "dm:x", message_id, "alice", text, "direct", 1)


async def mine(
    store: NotificationOutbox, who: set[str], count: int, after: int = 0
) -> list[tuple[int, Notification]]:
    """The outbox's notifications for ``who`` after ``after``, once ``count`` are readable
    (ScyllaDB holds back the newest SETTLE_MS); fails after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        found = [(p, n) for p, n in await store.notifications_after(after, 1000) if n.user_id in who]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


@pytest.fixture
def outbox(any_store: MessageStore) -> NotificationOutbox:
    """Each store's outbox, open and migrated (tests/store/conftest.py's ``any_store``)."""
    assert isinstance(any_store, NotificationOutbox)
    return any_store


async def test_each_pair_once_in_position_order_and_resumable(outbox: NotificationOutbox) -> None:
    bob, carol = users(2)
    message = new_message_id()
    assert await outbox.add_notification(note(bob, message))
    assert not await outbox.add_notification(note(bob, message))  # the same (user, message)
    assert await outbox.add_notification(note(carol, message, "second"))
    got = await mine(outbox, {bob, carol}, 2)
    assert [(n.user_id, n.message_id, n.preview) for _, n in got] == [
        (bob, message, "hi"),
        (carol, message, "second"),
    ]
    positions = [p for p, _ in got]
    assert positions == sorted(positions) and len(set(positions)) == 2 and positions[0] > 0
    assert [n.user_id for _, n in await mine(outbox, {bob, carol}, 1, after=positions[0])] == [carol]
    assert await mine(outbox, {bob, carol}, 0, after=positions[1]) == []


async def test_scylla_claim_is_shared_by_every_replica(scylla_spec: StoreSpec) -> None:
    """Two stores (two replicas) race for the same pairs: each pair is taken exactly once,
    and the outbox holds one row per pair."""
    a, b = scylla_spec.make(), scylla_spec.make()
    await a.open()
    await b.open()
    try:
        assert isinstance(a, ScyllaStore) and isinstance(b, ScyllaStore)
        who = users(10)
        message = new_message_id()
        wins = await asyncio.gather(
            *(s.add_notification(note(u, message)) for u in who for s in (a, b, a, b))
        )
        assert sum(wins) == len(who)
        got = await mine(a, set(who), len(who))
        assert sorted(n.user_id for _, n in got) == sorted(who)
        # The claim under the outbox: once per pair across replicas.
        other = new_message_id()
        claims = await asyncio.gather(*(s.claim_notification(who[0], other) for s in (a, b, a, b)))
        assert claims.count(True) == 1
        assert not await b.claim_notification(who[0], message)  # the outbox took that pair
    finally:
        await a.aclose()
        await b.aclose()


async def test_scylla_a_writer_dying_between_row_and_claim_loses_and_repeats_nothing(
    scylla_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox row is written before the claim: a process that dies in between (here: the
    claim fails) leaves the notification readable, once. Cluster mode's history writer then
    runs the message again (it commits only finished records), which writes a second row
    for the pair at a new position: the readers still see the pair once, whether they
    read before the re-run (the dead writer's row, which the reader claims) or after it
    (the re-run's claimed row; the dead writer's is passed over). CI's stop 32: a replica
    killed mid-burst put one notification on the topic twice."""
    store = scylla_spec.make()
    await store.open()
    try:
        assert isinstance(store, ScyllaStore)
        bob, carol = users(2)
        message = new_message_id()
        real_claim = store.claim_notification

        async def dies(user_id: str, message_id: str, position: int = 0) -> bool:
            raise StoreUnavailable("the process died here")

        monkeypatch.setattr(store, "claim_notification", dies)
        for who in (bob, carol):
            with pytest.raises(StoreUnavailable):
                await store.add_notification(note(who, message))
        monkeypatch.setattr(store, "claim_notification", real_claim)

        # Read before the re-run: the dead writer's rows are the notifications (the reader
        # claims them), and the re-run finds them claimed.
        got = await mine(store, {bob, carol}, 2)
        assert sorted((n.user_id, n.message_id) for _, n in got) == [(bob, message), (carol, message)]
        assert not await store.add_notification(note(bob, message))
        assert not await store.add_notification(note(carol, message))
        await asyncio.sleep(scylla_notifications.SETTLE_MS / 1000 + 0.5)
        assert await mine(store, {bob, carol}, 2) == got  # the same rows at the same positions

        # Re-run before any read: a claim at the new position; the old row is passed over.
        dave = users(1)[0]
        message = new_message_id()
        monkeypatch.setattr(store, "claim_notification", dies)
        with pytest.raises(StoreUnavailable):
            await store.add_notification(note(dave, message))
        monkeypatch.setattr(store, "claim_notification", real_claim)
        await asyncio.sleep(0.01)  # the re-run's position is later than the dead writer's
        assert await store.add_notification(note(dave, message))
        await asyncio.sleep(scylla_notifications.SETTLE_MS / 1000 + 0.5)
        found = await mine(store, {dave}, 1)
        assert [(n.user_id, n.message_id) for _, n in found] == [(dave, message)]
        assert not await store.claim_notification(dave, message)
    finally:
        await store.aclose()


async def test_scylla_a_slow_loser_row_is_never_read(scylla_spec: StoreSpec) -> None:
    """Two writers race for a pair; the loser's row (written before it learns it lost) is
    deleted by the loser, but a loser slower than the settle time leaves it readable for a
    while: a reader passes it over, as it is not the claimed position."""
    store = scylla_spec.make()
    await store.open()
    try:
        assert isinstance(store, ScyllaStore)
        (erin,) = users(1)
        message = new_message_id()
        n = note(erin, message)
        now = scylla_notifications._now_ms()
        winner = scylla_notifications.position_of(now - 5_000, erin, message)
        loser = scylla_notifications.position_of(now - 4_000, erin, message)
        await store._put_log(winner, n)
        assert await store.claim_notification(erin, message, winner)
        await store._put_log(loser, n)  # the loser's row, not deleted yet
        got = await mine(store, {erin}, 1, after=winner - 1)
        assert got == [(winner, n)]
    finally:
        await store.aclose()


async def test_scylla_pages_merge_shards_and_walk_hours(
    scylla_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notifications written in two different hours, for users in every shard, read back
    from 0 in pages of 3: all of them, once each, in position order, across the hours."""
    store = scylla_spec.make()
    await store.open()
    try:
        assert isinstance(store, NotificationOutbox)
        who = users(24)
        assert len({scylla_notifications.shard_of(u) for u in who}) > 4  # several shards
        now = int(time.time() * 1000)
        earlier = now - 2 * scylla_notifications.HOUR_MS
        monkeypatch.setattr(scylla_notifications, "_now_ms", lambda: earlier)
        message = new_message_id()
        for u in who[:12]:
            assert await store.add_notification(note(u, message))
        monkeypatch.setattr(scylla_notifications, "_now_ms", lambda: int(time.time() * 1000))
        for u in who[12:]:
            assert await store.add_notification(note(u, message))
        everything = await mine(store, set(who), len(who))
        assert {n.user_id for _, n in everything[:12]} == set(who[:12])  # the earlier hour first
        hours = {scylla_notifications.hour_of(p) for p, _ in everything}
        assert len(hours) >= 2
        paged: list[tuple[int, Notification]] = []
        after = 0
        while True:
            page = await store.notifications_after(after, 3)
            if not page:
                break
            assert len(page) <= 3
            paged += page
            after = page[-1][0]
        ours = [(p, n.user_id) for p, n in paged if n.user_id in set(who)]
        assert ours == [(p, n.user_id) for p, n in everything]
        assert [p for p, _ in paged] == sorted(p for p, _ in paged)
        assert len({p for p, _ in paged}) == len(paged)
    finally:
        await store.aclose()


async def test_scylla_holds_back_what_was_written_less_than_the_settle_time_ago(
    scylla_spec: StoreSpec,
) -> None:
    """A replica with a slower write or clock could still land a position just below the
    newest: the outbox does not show positions younger than SETTLE_MS."""
    store = scylla_spec.make()
    await store.open()
    try:
        assert isinstance(store, NotificationOutbox)
        (bob,) = users(1)
        assert await store.add_notification(note(bob, new_message_id()))
        assert [n for _, n in await store.notifications_after(0, 1000) if n.user_id == bob] == []
        await asyncio.sleep(scylla_notifications.SETTLE_MS / 1000 + 0.5)
        assert [n.user_id for _, n in await store.notifications_after(0, 1000) if n.user_id == bob] == [bob]
    finally:
        await store.aclose()


def test_the_notification_schema_is_migration_7_and_filters_nothing() -> None:
    assert MIGRATIONS[7] == NOTIFY_MIGRATION
    assert "notified_messages" in MIGRATIONS[10][0]  # the history writer's marks (NotifiedMessages)
    statements = [s for name, s in STATEMENTS.items() if name.startswith("notif_")]
    assert len(statements) == 9
    assert not [s for s in statements if "ALLOW FILTERING" in s.upper()]
