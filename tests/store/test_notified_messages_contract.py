"""The marks of messages whose offline notifications the history writer finished (issue 24,
``NotifiedMessages``) on every store; the CQL one on the real Cassandra node: unmarked until
marked, marked again without error, per (room, message), and kept by a new process."""

from __future__ import annotations

import time
import uuid

from chatsvc.model.ids import id_at
from chatsvc.store.base import MessageStore, NotifiedMessages
from tests.store.conftest import StoreSpec, opened


async def test_a_message_is_unmarked_until_marked_and_marks_are_per_message(any_store: MessageStore) -> None:
    store = any_store
    assert isinstance(store, NotifiedMessages)
    room, other_room = f"dm:{uuid.uuid4().hex[:16]}", f"priv:{uuid.uuid4().hex[:16]}"
    first, second = id_at(int(time.time() * 1000)), id_at(int(time.time() * 1000) + 1)
    assert not await store.notifications_done(room, first)
    await store.mark_notifications_done(room, first)
    await store.mark_notifications_done(room, first)  # again (a re-run): no error
    assert await store.notifications_done(room, first)
    assert not await store.notifications_done(room, second)
    assert not await store.notifications_done(other_room, first)


async def test_a_mark_outlives_the_process(spec: StoreSpec) -> None:
    """What the partition's next writer (another replica, a restart) finds (the stores
    a second process can open: conftest's ``spec``)."""
    room, sent = f"dm:{uuid.uuid4().hex[:16]}", id_at(int(time.time() * 1000))
    async with opened(spec.make()) as store:
        assert isinstance(store, NotifiedMessages)
        await store.mark_notifications_done(room, sent)
    async with opened(spec.make()) as again:
        assert isinstance(again, NotifiedMessages)
        assert await again.notifications_done(room, sent)
