"""Fixtures of the Kafka bus tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.bus.helpers import ChatClient
from tests.support.servers import ServerProcess
from tests.support.services import kafka_env


@pytest.fixture
def kafka() -> dict[str, str]:
    """The running test broker's ``KAFKA_TEST_*`` values (fails with the start command if absent)."""
    return kafka_env()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[ServerProcess, str], Any]]:
    """Connect recording clients (``await clients(server, sub)``); all are disconnected at
    teardown."""
    made: list[ChatClient] = []

    async def connect(server: ServerProcess, sub: str) -> ChatClient:
        client = ChatClient(server.url, sub)
        made.append(client)
        return await client.connect()

    yield connect
    await asyncio.gather(*(client.close() for client in made))
