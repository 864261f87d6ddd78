"""The marks of messages whose offline notifications the history writer finished (issue 24,
``NotifiedMessages``) on every store; the CQL one on the real Cassandra node: unmarked until
marked, marked again without error, per (room, message), and kept by a new process."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from chatsvc.model.ids import id_at
from chatsvc.store.base import MessageStore, NotifiedMessages
from chatsvc.store.memory import MemoryStore
from tests.store.conftest import StoreSpec


def spec_of(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec | None:
    """The store's spec (None: memory, which no second process could open)."""
    if request.param == "sqlite":
        return StoreSpec("sqlite", {"CHATSVC_DATA_DIR": str(tmp_path / "data")})
    if request.param == "scylla":
        spec: StoreSpec = request.getfixturevalue("scylla_spec")
        return spec
    return None


@pytest.fixture(params=["sqlite", "scylla", "memory"])
async def any_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec | None:
    return spec_of(request, tmp_path)


async def opened(spec: StoreSpec | None) -> MessageStore:
    store = MemoryStore() if spec is None else spec.make()
    await store.open()
    await store.migrate()
    return store


async def test_a_message_is_unmarked_until_marked_and_marks_are_per_message(
    any_spec: StoreSpec | None,
) -> None:
    store = await opened(any_spec)
    try:
        assert isinstance(store, NotifiedMessages)
        room, other_room = f"dm:{uuid.uuid4().hex[:16]}", f"priv:{uuid.uuid4().hex[:16]}"
        first, second = id_at(int(time.time() * 1000)), id_at(int(time.time() * 1000) + 1)
        assert not await store.notifications_done(room, first)
        await store.mark_notifications_done(room, first)
        await store.mark_notifications_done(room, first)  # again (a re-run): no error
        assert await store.notifications_done(room, first)
        assert not await store.notifications_done(room, second)
        assert not await store.notifications_done(other_room, first)
    finally:
        await store.aclose()


async def test_a_mark_outlives_the_process(spec: StoreSpec) -> None:
    """What the partition's next writer (another replica, a restart) finds (the stores
    a second process can open: conftest's ``spec``)."""
    room, sent = f"dm:{uuid.uuid4().hex[:16]}", id_at(int(time.time() * 1000))
    store = await opened(spec)
    try:
        assert isinstance(store, NotifiedMessages)
        await store.mark_notifications_done(room, sent)
    finally:
        await store.aclose()
    again = await opened(spec)
    try:
        assert isinstance(again, NotifiedMessages)
        assert await again.notifications_done(room, sent)
    finally:
        await again.aclose()
