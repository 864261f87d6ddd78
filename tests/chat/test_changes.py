"""Reactions and pins in cluster mode (issue 21): the events log is their order of truth.

Two replicas' ChatServices on the in-memory log double of tests/chat/test_streams.py and one
SQLite store: a refused log leaves no row and delivers nothing; a record whose ack was lost
(it landed) gets its row from the history writer, and the retry changes nothing; the same
react on both replicas at once counts once; counts in events follow the stream. The real
broker and CQL node: tests/chat/test_reactions.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatsvc.auth.identity import Identity
from chatsvc.chat.changes import STATES_KEPT, ChangeWindow, pin_change, reaction_change
from chatsvc.chat.edits import Edits
from chatsvc.chat.mentions import Mentions
from chatsvc.chat.pins import Pins
from chatsvc.chat.reactions import Reactions
from chatsvc.chat.service import ChatService, Draft
from chatsvc.errors import BusUnavailable
from chatsvc.model.messages import RoomEvent
from chatsvc.settings import Limits
from chatsvc.store.sqlite import SqliteStore
from tests.chat.log_double import Topic, all_written, delivered, settle, two_replicas
from tests.chat.test_service import Recorder
from tests.chat.test_streams import ROOM

ALICE = Identity("alice", "Alice")
BOB = Identity("bob", "Bob")
ADMIN = Identity("root", "Root", roles=frozenset({"admin"}))


class Replica:
    def __init__(self, service: ChatService, emitter: Recorder, store: SqliteStore) -> None:
        self.service, self.emitter = service, emitter
        self.reactions = Reactions(service, store, kinds_max=3)
        self.pins = Pins(service, store, maximum=2, moderates=None)
        # Registers the cleanup after a delete (its pin is unpinned through the log).
        Edits(service, store, Mentions(service, store), Limits())


@pytest.fixture
async def cluster(store: SqliteStore) -> AsyncIterator[tuple[Topic, Replica, Replica]]:
    async with two_replicas(store, lambda service, emitter: Replica(service, emitter, store)) as made:
        yield made


async def rows(store: SqliteStore, message_id: str) -> dict[str, int]:
    return (await store.reaction_counts(ROOM, [message_id])).get(message_id, {})


def events(replica: Replica, name: str) -> list[dict[str, Any]]:
    return delivered(replica.emitter, name)


async def posted(replica: Replica) -> str:
    message, _ = await replica.service.post(Draft(ROOM, ALICE, "hot", None))
    await settle()
    return message.id


async def react_and_pin_refused(replica: Replica, message_id: str) -> None:
    """Bob's 🔥 and the admin's pin, each answered ``bus_unavailable``."""
    with pytest.raises(BusUnavailable):
        await replica.reactions.change(ROOM, message_id, "🔥", BOB, add=True)
    with pytest.raises(BusUnavailable):
        await replica.pins.change(ROOM, message_id, ADMIN, pin=True)


async def test_a_refused_log_leaves_no_row_and_the_retry_counts_once(
    cluster: tuple[Topic, Replica, Replica],
    store: SqliteStore,
) -> None:
    topic, r1, r2 = cluster
    message_id = await posted(r1)
    topic.refuse = True
    await react_and_pin_refused(r1, message_id)
    topic.refuse = False
    await all_written(topic)
    assert await rows(store, message_id) == {}, "a refused react left its row"
    assert await store.list_pins(ROOM, 10) == [], "a refused pin left its row"
    assert events(r1, "reaction") == events(r2, "reaction") == []
    ack = await r1.reactions.change(ROOM, message_id, "🔥", BOB, add=True)
    assert ack == {"id": message_id, "emoji": "🔥", "count": 1, "changed": True}
    assert (await r1.pins.change(ROOM, message_id, ADMIN, pin=True))["changed"] is True
    await all_written(topic)
    assert await rows(store, message_id) == {"🔥": 1}
    assert [p[0] for p in await store.list_pins(ROOM, 10)] == [message_id]


async def test_a_landed_record_whose_ack_was_lost_gets_its_row_and_the_retry_changes_nothing(
    cluster: tuple[Topic, Replica, Replica],
    store: SqliteStore,
) -> None:
    topic, r1, r2 = cluster
    message_id = await posted(r1)
    topic.lose_acks = True
    await react_and_pin_refused(r1, message_id)
    topic.lose_acks = False
    await all_written(topic)
    # The records landed: delivered everywhere, their rows written from the log.
    assert [e["count"] for e in events(r1, "reaction")] == [e["count"] for e in events(r2, "reaction")] == [1]
    assert await rows(store, message_id) == {"🔥": 1}
    assert [p[0] for p in await store.list_pins(ROOM, 10)] == [message_id]
    # The client's retries, on either replica: nothing more to change, nothing logged.
    records = len(topic.records)
    for replica in (r1, r2):
        ack = await replica.reactions.change(ROOM, message_id, "🔥", BOB, add=True)
        assert ack == {"id": message_id, "emoji": "🔥", "count": 1, "changed": False}
        assert (await replica.pins.change(ROOM, message_id, ADMIN, pin=True))["changed"] is False
    assert len(topic.records) == records
    await all_written(topic)
    assert await rows(store, message_id) == {"🔥": 1}
    assert len(events(r2, "reaction")) == len(events(r2, "pinned")) == 1
    stored = (await store.stream_after(ROOM, 0, 100)).records
    assert [r.kind for r in stored if isinstance(r, RoomEvent)] == ["reaction", "pinned"]


async def test_the_same_react_on_two_replicas_at_once_counts_once_in_stream_order(
    cluster: tuple[Topic, Replica, Replica],
    store: SqliteStore,
) -> None:
    topic, r1, r2 = cluster
    message_id = await posted(r1)
    users = [Identity(f"u{i}", f"U{i}") for i in range(5)]
    # Every user twice on each replica, all at once: neither replica has applied any of them.
    acks = await asyncio.gather(
        *(r.reactions.change(ROOM, message_id, "👍", u, add=True) for u in users for r in (r1, r2, r1, r2))
    )
    assert sum(a["changed"] for a in acks) == len(users), "exactly one call per user changed"
    await all_written(topic)
    assert await rows(store, message_id) == {"👍": len(users)}
    for replica in (r1, r2):  # repeats are dropped by every consumer, counts follow the stream
        assert [e["count"] for e in events(replica, "reaction")] == list(range(1, len(users) + 1))
    stored = [r for r in (await store.stream_after(ROOM, 0, 100)).records if isinstance(r, RoomEvent)]
    assert [e.payload["count"] for e in stored] == list(range(1, len(users) + 1))
    # Read before and after the writer: the page shows the stream's counts and own reactions.
    stored_page = await store.history(ROOM, before=None, limit=10)
    page = await r2.reactions.annotate(ROOM, stored_page.messages, "u1")
    assert page[0].reactions == {"👍": len(users)} and page[0].own_reactions == ["👍"]
    # Removing, twice on each replica: once.
    acks = await asyncio.gather(
        *(r.reactions.change(ROOM, message_id, "👍", users[0], add=False) for r in (r1, r2, r1, r2))
    )
    assert sorted(a["changed"] for a in acks) == [False, False, False, True]
    await all_written(topic)
    assert await rows(store, message_id) == {"👍": len(users) - 1}
    assert events(r2, "reaction")[-1]["count"] == len(users) - 1


async def test_rows_are_written_by_the_history_writer_only(
    cluster: tuple[Topic, Replica, Replica],
    store: SqliteStore,
) -> None:
    """Read-your-writes before the writer: the stream's states show at once; the rows come
    from the log, and a delete clears the reactions where the writer applies it."""
    topic, r1, _ = cluster
    message_id = await posted(r1)
    topic.writing.clear()
    await r1.reactions.change(ROOM, message_id, "🔥", BOB, add=True)
    await r1.pins.change(ROOM, message_id, ADMIN, pin=True)
    assert await rows(store, message_id) == {}, "the sender wrote the row itself"
    assert await store.list_pins(ROOM, 10) == []
    message = await r1.service.get(ROOM, message_id, field="id")
    assert message is not None
    page = await r1.reactions.annotate(ROOM, [message], "bob")
    assert page[0].reactions == {"🔥": 1} and page[0].own_reactions == ["🔥"]
    assert [p["message"]["id"] for p in await r1.pins.list(ROOM)] == [message_id]
    topic.writing.set()
    await all_written(topic)
    assert await rows(store, message_id) == {"🔥": 1}
    await r1.service.delete(ROOM, message_id, ALICE)
    await all_written(topic)
    assert await rows(store, message_id) == {}
    assert await store.list_pins(ROOM, 10) == []
    assert [e["id"] for e in events(r1, "unpinned")] == [message_id]


def test_the_window_is_bounded_and_decides_repeats() -> None:
    window = ChangeWindow()
    add = reaction_change("🔥", "bob", add=True, base=4)
    event = RoomEvent("e1", ROOM, "reaction", "m1", {"count": 0})
    first = window.apply(event, add)
    assert first is not None and first.payload["count"] == 5, "the sender's store count, plus one"
    assert window.apply(event, add) is None and window.repeat(event, add)
    assert window.reacted(ROOM, "m1", "🔥", "bob") is True and window.count(ROOM, "m1", "🔥") == 5
    pinned = window.apply(RoomEvent("e2", ROOM, "pinned", "m1", {}), pin_change(add=True, by="root", at_ms=7))
    assert pinned is not None and window.pinned(ROOM, "m1") == ("root", 7)
    for i in range(STATES_KEPT):
        window.apply(RoomEvent(f"x{i}", ROOM, "pinned", f"n{i}", {}), pin_change(add=True, by="r", at_ms=i))
    assert window.pinned(ROOM, "m1") is None and window.reacted(ROOM, "m1", "🔥", "bob") is None
    with pytest.raises(KeyError):
        window.apply(event, {"reaction": {"emoji": "🔥"}})
