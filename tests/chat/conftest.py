"""Fixtures for the chat tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatsvc.store.sqlite import SqliteStore
from tests.support.clients import ClientPool


@pytest.fixture
async def clients() -> AsyncIterator[ClientPool]:
    """Socket.IO clients, all disconnected at teardown."""
    async with ClientPool() as pool:
        yield pool


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open, migrated SQLite store in the test's directory, closed at teardown."""
    s = SqliteStore(tmp_path / "svc.sqlite3")
    await s.open()
    await s.migrate()
    yield s
    await s.aclose()


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    """The chat tests' store: SQLite (a module may override it, e.g. with a failing double)."""
    return sqlite_store
