"""Fixtures of the admin API tests: one shared server per module, socket clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.admin.helpers import Admin, admin_client
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One chatsvc (in-process bus, SQLite) for a whole module; tests use their own rooms/users."""
    with running_server(tmp_path_factory.mktemp("admin"), "admin") as server:
        yield server


@pytest.fixture
async def admin(shared_server: ServerProcess) -> AsyncIterator[Admin]:
    """The shared server's admin API with an admin token."""
    async with admin_client(shared_server.grpc_port) as client:
        yield client


@pytest.fixture
async def clients() -> AsyncIterator[ClientPool]:
    """Socket.IO clients, all disconnected at teardown."""
    async with ClientPool() as pool:
        yield pool
