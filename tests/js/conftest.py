"""Fixtures of the socket.io-client (node) tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.deploy.support import NodeClients


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeClients]:
    """One node process driving official socket.io-client sockets; quit at teardown (its
    events kept beside its log)."""
    clients = await NodeClients(None, tmp_path / "node.log").start()
    yield clients
    await clients.close()
