"""Fixtures of the store tests: one contract, run against every store.

``spec`` is parametrized over ``sqlite`` (a file in the test's tmp dir) and ``scylla`` (the
real CQL node of ``scripts/cassandra``, in a keyspace made fresh for this test session and
dropped at its end). A spec is the environment that selects the store, so the same store
can be opened here, in a subprocess or in a ``chatsvc`` server.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatsvc.app import build_store
from chatsvc.settings import Settings
from chatsvc.store.base import MessageStore
from chatsvc.store.memory import MemoryStore
from tests.support.servers import TEST_JWT_SECRET, base_env, free_port, run_cli
from tests.support.services import cassandra_env


@dataclass(frozen=True)
class StoreSpec:
    """Which store, as the environment variables that select it."""

    kind: str
    env: dict[str, str]

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env({"CHATSVC_JWT_SECRET": TEST_JWT_SECRET, **self.env, **overrides})

    def make(self, **overrides: str) -> MessageStore:
        return build_store(self.settings(**overrides))


def scylla_env(keyspace: str) -> dict[str, str]:
    """``SCYLLA_*`` variables for the running test node and ``keyspace``."""
    node = cassandra_env()
    return {
        "SCYLLA_CONTACT_POINTS": node["CASSANDRA_TEST_CONTACT_POINTS"],
        "SCYLLA_PORT": node["CASSANDRA_TEST_PORT"],
        "SCYLLA_LOCAL_DC": node["CASSANDRA_TEST_LOCAL_DC"],
        "SCYLLA_KEYSPACE": keyspace,
        "SCYLLA_REPLICATION": "SimpleStrategy:1",
        # The test machine is small and shared: be patient with the node.
        "SCYLLA_REQUEST_TIMEOUT": "10",
    }


def new_keyspace() -> str:
    return f"chatsvc_t_{secrets.token_hex(4)}"


def drop_keyspace(env: dict[str, str], keyspace: str) -> None:
    """Test cleanup: DDL the store itself never runs."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile  # noqa: PLC0415
    from cassandra.policies import DCAwareRoundRobinPolicy  # noqa: PLC0415

    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(env["SCYLLA_LOCAL_DC"]))
    cluster = Cluster(
        [env["SCYLLA_CONTACT_POINTS"]],
        port=int(env["SCYLLA_PORT"]),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        session = cluster.connect()
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    finally:
        cluster.shutdown()


def cli_env(data_dir: Path, store_env: dict[str, str]) -> dict[str, str]:
    """Environment for ``chatsvc`` commands on a store."""
    env = base_env(data_dir, free_port())
    env.update(store_env)
    return env


@pytest.fixture(scope="session")
def scylla_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreSpec]:
    """A fresh keyspace on the test node for this session, created by ``chatsvc migrate``
    (so every session runs the CLI on an empty keyspace); dropped at the end."""
    keyspace = new_keyspace()
    spec = StoreSpec("scylla", scylla_env(keyspace))
    result = run_cli(["migrate"], cli_env(tmp_path_factory.mktemp("migrate"), spec.env), timeout=300)
    assert result.returncode == 0, f"chatsvc migrate failed:\n{result.stderr}"
    assert "schema is up to date" in result.stdout
    yield spec
    drop_keyspace(spec.env, keyspace)


@pytest.fixture(params=["sqlite", "scylla"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """Each store in turn."""
    if request.param == "sqlite":
        return StoreSpec("sqlite", {"CHATSVC_DATA_DIR": str(tmp_path / "sqlite-data")})
    scylla: StoreSpec = request.getfixturevalue("scylla_spec")
    return scylla


@pytest.fixture
async def store(spec: StoreSpec) -> AsyncIterator[MessageStore]:
    """An open, migrated store."""
    opened = spec.make()
    await opened.open()
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.aclose()


#: Makes store objects of one kind, on one database, with settings overrides (memory: the
#: same object each time, overrides ignored, nothing survives it).
StoreFactory = Callable[..., MessageStore]


@pytest.fixture(params=["sqlite", "scylla", "memory"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each of the three stores in turn, for the contracts the memory store keeps too."""
    return str(request.param)


@pytest.fixture
def store_factory(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Store objects of :func:`store_kind` on one database (SQLite: a file in the test's
    tmp dir; ScyllaDB: the session's keyspace on the real node)."""
    if store_kind == "memory":
        shared = MemoryStore()
        return lambda **_overrides: shared
    if store_kind == "sqlite":
        return StoreSpec("sqlite", {"CHATSVC_DATA_DIR": str(tmp_path / "sqlite-data")}).make
    scylla: StoreSpec = request.getfixturevalue("scylla_spec")
    return scylla.make


@asynccontextmanager
async def opened(store: MessageStore) -> AsyncIterator[MessageStore]:
    """``store`` opened and migrated, closed after."""
    await store.open()
    await store.migrate()
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
async def any_store(store_factory: StoreFactory) -> AsyncIterator[MessageStore]:
    """An open, migrated store of each kind: SQLite, the real CQL node, and memory."""
    async with opened(store_factory()) as store:
        yield store


def new_room() -> str:
    """A room no other test uses (the scylla keyspace is shared by the session)."""
    return f"room-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def room() -> str:
    """A room no other test uses (the scylla keyspace is shared by the session)."""
    return new_room()
