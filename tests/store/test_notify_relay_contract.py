"""The notification relay's state (issue 24) on every store; the CQL one on the real
Cassandra node: a new scope starts at the outbox's end, one lease holder at a time, a lapsed
lease is taken over, only the holder moves the position, and two replicas racing for the
lease get it once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatsvc.chat.notify_relay import RelayOutbox as Relay
from chatsvc.model.ids import id_at
from chatsvc.model.rooms import Notification
from chatsvc.store.base import MessageStore
from chatsvc.store.memory import MemoryStore
from chatsvc.store.scylla.relay import NOT_IDEMPOTENT, STATEMENTS
from chatsvc.store.scylla.schema import MIGRATIONS, SCHEMA_VERSION
from chatsvc.store.scylla.store import ScyllaStore
from tests.store.conftest import StoreSpec


def scope() -> str:
    return f"chatsvc.test.{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "scylla", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Relay]:
    """Each store, open and migrated."""
    made: MessageStore
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = StoreSpec("sqlite", {"CHATSVC_DATA_DIR": str(tmp_path / "data")}).make()
    else:
        spec: StoreSpec = request.getfixturevalue("scylla_spec")
        made = spec.make()
    await made.open()
    await made.migrate()
    try:
        assert isinstance(made, Relay)
        yield made
    finally:
        await made.aclose()


async def test_a_new_scope_starts_at_the_outbox_end_and_a_second_start_moves_nothing(store: Relay) -> None:
    first = scope()
    await store.add_notification(
        Notification(
            f"u-{uuid.uuid4().hex[:8]}", "dm:x", id_at(int(time.time() * 1000)), "a", "hi", "direct", 1
        )
    )
    await store.start_relay(first)
    start = await store.relay_position(first)
    assert start > 0  # not the outbox's past
    assert await store.take_relay(first, "ra", 10) == "taken"
    assert await store.record_relayed(first, "ra", start + 7)
    await store.start_relay(first)  # another replica starting
    assert await store.relay_position(first) == start + 7
    assert await store.relay_position(scope()) == 0  # never started


async def test_one_holder_at_a_time_and_only_the_holder_moves_the_position(store: Relay) -> None:
    s = scope()
    await store.start_relay(s)
    start = await store.relay_position(s)
    assert await store.take_relay(s, "ra", 10) == "taken"
    assert await store.take_relay(s, "ra", 10) == "renewed"
    assert await store.take_relay(s, "rb", 10) is None
    assert not await store.record_relayed(s, "rb", start + 5)
    assert await store.record_relayed(s, "ra", start + 3)
    await store.release_relay(s, "rb")  # not its lease: nothing
    assert await store.take_relay(s, "rb", 10) is None
    await store.release_relay(s, "ra")
    assert not await store.record_relayed(s, "ra", start + 4)  # released: fenced
    assert await store.take_relay(s, "rb", 10) == "taken"
    assert await store.relay_position(s) == start + 3  # the position outlives the lease


async def test_a_lapsed_lease_is_taken_over(store: Relay) -> None:
    s = scope()
    await store.start_relay(s)
    assert await store.take_relay(s, "ra", 1) == "taken"
    assert await store.take_relay(s, "rb", 1) is None
    await asyncio.sleep(1.6)  # ra died: no renewal
    assert await store.take_relay(s, "rb", 10) == "taken"
    assert not await store.record_relayed(s, "ra", 99)  # ra wakes up: fenced
    assert await store.take_relay(s, "ra", 10) is None


async def test_replicas_racing_for_the_lease_get_it_once(scylla_spec: StoreSpec) -> None:
    stores = [scylla_spec.make() for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        assert all(isinstance(s, ScyllaStore) for s in stores)
        relays = [s for s in stores if isinstance(s, ScyllaStore)]
        for _ in range(3):
            name = scope()
            await asyncio.gather(*(s.start_relay(name) for s in relays))
            got = await asyncio.gather(*(s.take_relay(name, f"r{i}", 10) for i, s in enumerate(relays)))
            assert sorted(g or "" for g in got) == ["", "", "taken"]
    finally:
        for s in stores:
            await s.aclose()


def test_the_relay_table_is_migration_9_and_every_write_is_conditional() -> None:
    assert SCHEMA_VERSION >= 9 and "notification_relay" in MIGRATIONS[9][0]
    writes = {name for name, cql in STATEMENTS.items() if not cql.startswith("SELECT")}
    assert writes == set(NOT_IDEMPOTENT)
    assert all(" IF " in STATEMENTS[name] for name in writes)
