"""The marks of messages whose offline notifications are not written yet (issue 24), on the
stores that are their own durable record (SQLite, memory, ScyllaDB without Kafka):
``append`` marks a user's new message that may notify (in its own transaction; ScyllaDB:
the mark before the message row); nothing else is marked."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message
from chatsvc.store.base import PendingNotifications
from chatsvc.store.memory import MemoryStore
from chatsvc.store.scylla.store import ScyllaStore
from chatsvc.store.sqlite import SqliteStore
from tests.store.conftest import StoreSpec


def dm_room() -> str:
    return f"dm:{uuid.uuid4().hex[:16]}"


#: Each message a millisecond after the last: ids of one millisecond do not order.
_CLOCK = itertools.count(int(time.time() * 1000))


def posted(room: str, *, client_msg_id: str | None = None, **fields: object) -> Message:
    now = next(_CLOCK)
    message = Message(id_at(now), room, "alice", "Alice", "hi", now, client_msg_id=client_msg_id)
    return replace(message, **fields)  # type: ignore[arg-type]


Marks = SqliteStore | MemoryStore | ScyllaStore


async def drained(store: Marks) -> None:
    """No mark left (the scylla keyspace is the session's: other tests' messages marked)."""
    while batch := await store.pending_notifications(100):
        for message in batch:
            await store.clear_pending_notification(message.room, message.id)


@pytest.fixture(params=["sqlite", "memory", "scylla"])
async def marks(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Marks]:
    store: Marks
    if request.param == "scylla":
        spec: StoreSpec = request.getfixturevalue("scylla_spec")
        made = spec.make()
        assert isinstance(made, ScyllaStore)
        store = made
    else:
        store = SqliteStore(tmp_path / "chat.db") if request.param == "sqlite" else MemoryStore()
    await store.open()
    await store.migrate()
    try:
        await drained(store)
        yield store
    finally:
        await store.aclose()


async def test_a_new_message_that_may_notify_is_marked_until_cleared(marks: Marks) -> None:
    assert isinstance(marks, PendingNotifications)
    dm, club = dm_room(), f"priv:{uuid.uuid4().hex[:16]}"
    first, _ = await marks.append(posted(dm, client_msg_id="c-1"))
    again, created = await marks.append(posted(dm, client_msg_id="c-1"))  # a retry: no new mark
    assert not created and again.id == first.id
    second, _ = await marks.append(posted(club))
    mention, _ = await marks.append(posted("stock:005930", mentions=("bob",)))
    assert [m.id for m in await marks.pending_notifications(10)] == [first.id, second.id, mention.id]
    assert [m.id for m in await marks.pending_notifications(2)] == [first.id, second.id]  # oldest first
    assert (await marks.pending_notifications(1))[0] == first  # the stored message itself
    await marks.clear_pending_notification(dm, first.id)
    await marks.clear_pending_notification(dm, first.id)  # again: no error
    assert [m.id for m in await marks.pending_notifications(10)] == [second.id, mention.id]


async def test_nothing_else_is_marked(marks: Marks) -> None:
    await marks.append(posted("stock:005930"))  # public, no mentions: most messages
    await marks.append(posted(dm_room(), kind="system"))  # the admin API's
    await marks.append(posted(dm_room(), pos=7))  # from the events log: its writer notifies
    assert await marks.pending_notifications(10) == []


async def test_sqlite_marks_outlive_the_process(tmp_path: Path) -> None:
    """What a restart finds: the mark was committed with the message."""
    store = SqliteStore(tmp_path / "chat.db")
    await store.open()
    await store.migrate()
    sent, _ = await store.append(posted(dm_room()))
    await store.aclose()
    reopened = SqliteStore(tmp_path / "chat.db")
    await reopened.open()
    try:
        assert [m.id for m in await reopened.pending_notifications(10)] == [sent.id]
    finally:
        await reopened.aclose()


async def test_a_mark_whose_message_is_gone_is_dropped() -> None:
    store = MemoryStore(max_per_room=1)
    await store.open()
    room = dm_room()
    old, _ = await store.append(posted(room))
    new, _ = await store.append(posted(room))  # trims the old one away
    assert [m.id for m in await store.pending_notifications(10)] == [new.id]
    await store.clear_pending_notification(room, new.id)
    assert await store.pending_notifications(10) == []
    assert old.id != new.id
