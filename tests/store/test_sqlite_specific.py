"""SqliteStore behaviour that follows from sharing one connection between coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatsvc.errors import StoreUnavailable
from chatsvc.model.ids import MessageIdGenerator
from chatsvc.model.messages import Message
from chatsvc.store.sqlite import SqliteStore

IDS = MessageIdGenerator()


def message(user: str, client_msg_id: str | None = None) -> Message:
    return Message(IDS.new(), "race", user, user.title(), "hello", 1_700_000_000_000, client_msg_id)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "race.sqlite3")
    await s.open()
    await s.migrate()
    yield s
    await s.aclose()


async def test_a_duplicate_retry_never_undoes_a_concurrent_append(store: SqliteStore) -> None:
    """Regression: the duplicate path's rollback used to discard other coroutines' inserts."""
    await store.append(message("alice", "retry-me"))
    for _ in range(20):
        results = await asyncio.gather(
            store.append(message("alice", "retry-me")),
            store.append(message("bob")),
            store.append(message("carol")),
        )
        assert [is_new for _, is_new in results] == [False, True, True]
        for stored, _ in results:
            assert await store.get("race", stored.id) == stored


async def test_concurrent_retries_store_one_message(store: SqliteStore) -> None:
    results = await asyncio.gather(*(store.append(message("alice", "once")) for _ in range(10)))
    assert sum(is_new for _, is_new in results) == 1
    assert len({stored.id for stored, _ in results}) == 1
    assert len((await store.history("race", before=None, limit=100)).messages) == 1


async def test_closed_store_is_unavailable(store: SqliteStore) -> None:
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(StoreUnavailable):
        await store.ping()
