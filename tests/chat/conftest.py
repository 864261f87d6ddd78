"""Fixtures for the chat tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.clients import ClientPool


@pytest.fixture
async def clients() -> AsyncIterator[ClientPool]:
    """Socket.IO clients, all disconnected at teardown."""
    async with ClientPool() as pool:
        yield pool
