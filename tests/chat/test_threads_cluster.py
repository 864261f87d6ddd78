"""Thread summaries in cluster mode (issue 21/25): the reply's record is their order of truth.

Two replicas' ChatServices on the in-memory log double of tests/chat/test_streams.py and one
SQLite store (behind a double that can fail like a CQL node that went away): the sender
writes no reply row and logs no second record; every replica counts the reply in stream
order and delivers ``message_updated`` from it; the history writer adds the row. A refused
log leaves no summary change, a retried or redelivered reply counts once, and a store outage
does not block replies. The embedded path: tests/chat/test_threads.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from chatsvc.auth.identity import Identity
from chatsvc.bus.log import LogRecord
from chatsvc.chat.changes import STATES_KEPT, ChangeWindow
from chatsvc.chat.service import ChatService, Draft
from chatsvc.chat.threads import Threads
from chatsvc.chat.wire import iso_ms
from chatsvc.errors import BusUnavailable, StoreUnavailable
from chatsvc.model.messages import Message, ReplyRef
from chatsvc.store.base import MessageStore
from chatsvc.store.sqlite import SqliteStore
from tests.chat.log_double import MemoryLog, Topic, all_written, delivered, settle, two_replicas
from tests.chat.test_service import Recorder
from tests.chat.test_streams import ROOM

ALICE = Identity("alice", "Alice")
BOB = Identity("bob", "Bob")


class FlakyStore:
    """The SQLite store, or (``down``) a store whose every call fails the way the ScyllaDB
    adapter reports a lost node: ``StoreUnavailable``."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.down = False
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.store, name)
        if not asyncio.iscoroutinefunction(found):
            return found

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self.down:
                raise StoreUnavailable("ScyllaDB unavailable: no host reachable")
            return await found(*args, **kwargs)

        return call


class Replica:
    def __init__(self, service: ChatService, emitter: Recorder, store: MessageStore) -> None:
        self.service, self.emitter = service, emitter
        self.threads = Threads(service, store)

    async def reply(self, parent_id: str, text: str, cmid: str | None = None) -> tuple[Message, bool]:
        """What the namespace does for ``message {reply_to}``."""
        ref = await self.threads.parent(ROOM, parent_id)
        message, created = await self.service.post(Draft(ROOM, BOB, text, cmid, reply_to=ref))
        await self.threads.replied(message, created=created)
        return message, created

    def updates(self) -> list[tuple[str, int]]:
        return [(e["id"], e["reply_count"]) for e in delivered(self.emitter, "message_updated")]


@pytest.fixture
def store(sqlite_store: SqliteStore) -> FlakyStore:
    return FlakyStore(sqlite_store)


@pytest.fixture
async def cluster(store: FlakyStore) -> AsyncIterator[tuple[Topic, Replica, Replica]]:
    typed = cast(MessageStore, store)
    async with two_replicas(typed, lambda service, emitter: Replica(service, emitter, typed)) as made:
        yield made


async def summary(store: SqliteStore, parent_id: str) -> tuple[int, int] | None:
    found = (await store.thread_summaries(ROOM, [parent_id])).get(parent_id)
    return None if found is None else (found.count, found.last_reply_at_ms)


async def posted(replica: Replica, text: str = "$AAPL beats") -> str:
    message, _ = await replica.service.post(Draft(ROOM, ALICE, text, None))
    await settle()
    return message.id


async def test_the_sender_writes_no_row_and_logs_one_record_per_reply(
    cluster: tuple[Topic, Replica, Replica], sqlite_store: SqliteStore
) -> None:
    """The summary comes from the reply's own record: live on every replica at once, the
    row only when the history writer writes the reply."""
    topic, r1, r2 = cluster
    parent = await posted(r1)
    await all_written(topic)
    records = len(topic.records)
    topic.writing.clear()
    reply, created = await r1.reply(parent, "agreed")
    await settle()
    assert created and len(topic.records) == records + 1, "a reply is one record, no thread record"
    assert await summary(sqlite_store, parent) is None, "the sender wrote the reply row itself"
    for replica in (r1, r2):
        assert replica.updates() == [(parent, 1)]
        [update] = delivered(replica.emitter, "message_updated")
        assert update == {
            "id": parent,
            "room": ROOM,
            "reply_count": 1,
            "last_reply_at": iso_ms(reply.created_at_ms),
        }, "no pos: the reply holds the position"
    # Before the writer, pages already show the stream's count.
    page = await r2.threads.annotate(ROOM, [m for m in [await r2.service.get(ROOM, parent, field="id")] if m])
    assert page[0].thread is not None and page[0].thread.count == 1
    topic.writing.set()
    await all_written(topic)
    assert await summary(sqlite_store, parent) == (1, reply.created_at_ms)
    assert await sqlite_store.replies(ROOM, parent, before=None, limit=10) == [reply.id]


async def test_a_refused_log_leaves_no_summary_change(
    cluster: tuple[Topic, Replica, Replica], sqlite_store: SqliteStore
) -> None:
    topic, r1, r2 = cluster
    parent = await posted(r1)
    first, _ = await r1.reply(parent, "one")
    await all_written(topic)
    before = await summary(sqlite_store, parent)
    assert before == (1, first.created_at_ms)
    topic.refuse = True
    with pytest.raises(BusUnavailable):
        await r2.reply(parent, "two", "k2")
    topic.refuse = False
    await all_written(topic)
    assert await summary(sqlite_store, parent) == before, "a refused reply changed the summary"
    assert r1.updates() == r2.updates() == [(parent, 1)], "a refused reply was announced"
    # The client's retry after the broker returns counts, once.
    retry, created = await r2.reply(parent, "two", "k2")
    assert created
    await all_written(topic)
    assert await summary(sqlite_store, parent) == (2, retry.created_at_ms)
    assert r1.updates() == r2.updates() == [(parent, 1), (parent, 2)]


async def test_no_summary_change_goes_unannounced_when_only_events_are_refused(
    cluster: tuple[Topic, Replica, Replica], sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gap this closes: the reply landed, a second (thread) record was refused after
    its row was written. There is no second record: the reply's summary change is announced
    from the reply itself, so what the rows count is what every replica was told."""
    topic, r1, r2 = cluster
    parent = await posted(r1)
    append = topic.append

    def refuse_events(room: str, body: dict[str, Any]) -> int:
        if body.get("t") == "event":
            raise BusUnavailable("Kafka unavailable: connection refused")
        return append(room, body)

    monkeypatch.setattr(topic, "append", refuse_events)
    for text in ("one", "two"):
        _, created = await r2.reply(parent, text, f"k-{text}")
        assert created
    await all_written(topic)
    stored = await summary(sqlite_store, parent)
    assert stored is not None and stored[0] == 2
    assert r1.updates()[-1] == r2.updates()[-1] == (parent, 2), "the rows count a reply nobody was told of"


async def test_a_retried_reply_counts_once(
    cluster: tuple[Topic, Replica, Replica], sqlite_store: SqliteStore
) -> None:
    """The produce timed out but landed: the record counts (live and in rows); the retries,
    on either replica and at once, are the same reply and count nothing more."""
    topic, r1, r2 = cluster
    parent = await posted(r1)
    topic.lose_acks = True
    with pytest.raises(BusUnavailable):
        await r1.reply(parent, "landed", "k")
    topic.lose_acks = False
    await all_written(topic)
    assert r1.updates() == r2.updates() == [(parent, 1)]
    retries = await asyncio.gather(*(r.reply(parent, "landed", "k") for r in (r1, r2, r1, r2)))
    assert [created for _, created in retries] == [False] * 4
    assert len({m.id for m, _ in retries}) == 1
    await all_written(topic)
    assert (await summary(sqlite_store, parent) or (0, 0))[0] == 1
    assert r1.updates() == r2.updates() == [(parent, 1)]
    # Two new replies at once on both replicas: each counted once, in stream order.
    await asyncio.gather(r1.reply(parent, "a", "ka"), r2.reply(parent, "b", "kb"))
    await all_written(topic)
    assert (await summary(sqlite_store, parent) or (0, 0))[0] == 3
    assert r1.updates() == r2.updates() == [(parent, 1), (parent, 2), (parent, 3)]


async def test_a_redelivered_reply_counts_once(
    cluster: tuple[Topic, Replica, Replica], sqlite_store: SqliteStore
) -> None:
    """A record read twice (a consumer or the history writer redelivered it, e.g. after a
    rebalance before the commit) counts once: per-reply dedup live, counted rows stored."""
    topic, r1, r2 = cluster
    parent = await posted(r1)
    await r1.reply(parent, "no client id")
    await all_written(topic)
    room, body = topic.records[-1]
    again = LogRecord(room, len(topic.records) + 99, body)
    r2_log = cast(MemoryLog, r2.service._log)
    r2_log.pending.put_nowait(again)
    topic.unwritten.put_nowait(again)
    await all_written(topic, extra=1)
    assert r2.updates() == [(parent, 1)], "a redelivered reply was counted again"
    assert (await summary(sqlite_store, parent) or (0, 0))[0] == 1


async def test_a_store_outage_does_not_block_replies(
    cluster: tuple[Topic, Replica, Replica], store: FlakyStore, sqlite_store: SqliteStore
) -> None:
    topic, r1, r2 = cluster
    parent = await posted(r1)
    first, _ = await r1.reply(parent, "one")
    await all_written(topic)
    store.down = True
    store.calls.clear()
    # The parent is read from the tail; the count follows the stream.
    second, created = await r2.reply(parent, "two")
    assert created and "get" in store.calls, "the double was not in the path"
    await settle()
    assert r1.updates() == r2.updates() == [(parent, 1), (parent, 2)]
    # A parent posted during the outage: replies still go through (its count is not known
    # to any reader live when nobody could read the store, so none is announced).
    fresh = await posted(r2, "$MSFT during the outage")
    third, created = await r1.reply(fresh, "on a fresh parent")
    assert created
    await settle()
    assert (fresh, 1) not in r1.updates()
    # A parent neither the store nor the tail can show: refused as the store's outage
    # (retryable), not as a missing parent the client would give up on.
    with pytest.raises(StoreUnavailable):
        await r1.reply("01J00000000000000000000000", "to a parent nobody can read")
    # The store returns: the writer catches up and the rows count every reply once.
    store.down = False
    await all_written(topic)
    assert await summary(sqlite_store, parent) == (2, second.created_at_ms)
    assert await summary(sqlite_store, fresh) == (1, third.created_at_ms)
    # The next reply to the fresh parent is counted on the store's rows.
    await r2.reply(fresh, "after")
    await settle()
    assert (fresh, 2) in r1.updates() and (fresh, 2) in r2.updates()
    assert first.reply_to is not None and first.reply_to.base == 0


async def test_a_catch_up_page_carries_the_counts_its_replies_imply(
    cluster: tuple[Topic, Replica, Replica], store: FlakyStore
) -> None:
    """No ``message_updated`` is stored in cluster mode: a ``join {since}`` page whose
    replies name a parent it does not show lists that parent's current count (the stream's
    before the writer, the rows' after; also while the store is down), once per parent."""
    topic, r1, r2 = cluster
    parent = await posted(r1)
    other = await posted(r1, "$MSFT")
    topic.writing.clear()
    replies = [(await r2.reply(parent, f"re {i}"))[0] for i in range(3)]
    on_other, _ = await r1.reply(other, "elsewhere")
    page = [*replies, on_other]
    expected = [
        {"event": "message_updated", "id": parent, "room": ROOM, "reply_count": 3},
        {"event": "message_updated", "id": other, "room": ROOM, "reply_count": 1},
    ]

    def counts(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "last_reply_at"} for e in entries]

    for replica in (r1, r2):
        assert counts(await replica.threads.implied(ROOM, page)) == expected
    assert (await r1.threads.implied(ROOM, page))[0]["last_reply_at"] == iso_ms(replies[-1].created_at_ms)
    topic.writing.set()
    await all_written(topic)
    fresh = Threads(r1.service, cast(MessageStore, store))
    assert counts(await fresh.implied(ROOM, page)) == expected
    store.down = True
    assert counts(await r2.threads.implied(ROOM, page)) == expected
    store.down = False
    # A parent on the page carries its own count; a page without replies implies nothing.
    parent_message = await r1.service.get(ROOM, parent, field="id")
    assert parent_message is not None
    assert counts(await r1.threads.implied(ROOM, [parent_message, *replies])) == []
    assert await r1.threads.implied(ROOM, [parent_message]) == []


def reply_to(parent: str, reply_id: str, at_ms: int, base: int | None) -> Message:
    ref = ReplyRef(parent, "alice", "Alice", "hi", base=base)
    return Message(reply_id, ROOM, "bob", "Bob", "re", at_ms, reply_to=ref)


def test_the_window_counts_each_reply_once_and_is_bounded() -> None:
    window = ChangeWindow()
    assert window.replied(Message("m0", ROOM, "bob", "Bob", "not a reply", 1)) is None
    first = window.replied(reply_to("p", "r1", 1_000, base=4))
    assert first is not None and first["reply_count"] == 5
    assert window.replied(reply_to("p", "r1", 1_000, base=4)) is None, "counted twice"
    # The window's count wins over a stale base; the newest time is kept.
    later = window.replied(reply_to("p", "r2", 900, base=0))
    assert later is not None and later["reply_count"] == 6 and later["last_reply_at"] == iso_ms(1_000)
    # Unknown parent and no base: nothing to announce, and the reply is not counted later.
    assert window.replied(reply_to("q", "r3", 1_000, base=None)) is None
    assert window.thread(ROOM, "q") is None
    for i in range(STATES_KEPT):
        window.replied(reply_to(f"p{i}", f"x{i}", 1, base=0))
    assert window.thread(ROOM, "p") is None, "the window is not bounded"


def test_a_released_room_forgets_its_counts() -> None:
    """Interest-based routing stopped reading the room: counts kept from before would miss
    the replies posted meanwhile, so the next reply is counted on the sender's base."""
    window = ChangeWindow()
    window.replied(reply_to("p", "r1", 1, base=0))
    elsewhere = ReplyRef("q", "alice", "Alice", "", base=0)
    window.replied(Message("o1", "other", "bob", "Bob", "re", 1, reply_to=elsewhere))
    window.release(lambda room: room == ROOM)
    assert window.thread(ROOM, "p") is None and window.thread("other", "q") is not None
    later = window.replied(reply_to("p", "r9", 2, base=7))
    assert later is not None and later["reply_count"] == 8
