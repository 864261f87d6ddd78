"""Shared fixtures: test servers as real processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import engineio.payload
import pytest

from tests.support.replicas import migrated_keyspace
from tests.support.servers import ServerProcess, base_env, free_port

ServerFactory = Callable[..., ServerProcess]

# python-socketio's client (in this process) refuses a long-polling response of more than 16
# packets and drops the connection (python-engineio's Payload.max_decode_packets); the
# server answers a poll with everything queued, so a burst on polling (26 messages sent back
# to back, a recovery replay) flaked. README "Transport bounds" tells client users the same.
engineio.payload.Payload.max_decode_packets = 512


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start chatsvc processes with extra env; all are stopped at teardown."""
    started: list[ServerProcess] = []

    def start(
        *, name: str = "server", data_dir: Path | None = None, wait: str | None = "/healthz", **env: str
    ) -> ServerProcess:
        port = free_port()
        full = base_env(data_dir or tmp_path / f"{name}-data", port)
        full.update(env)
        server = ServerProcess(full, tmp_path / f"{name}.log")
        started.append(server)
        return server.start(wait=wait)

    yield start
    problems = []
    for server in reversed(started):
        try:
            server.stop()
        except AssertionError as exc:  # a server that ignores SIGTERM is a bug: report it
            problems.append(str(exc))
    assert not problems, "\n".join(problems)


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    """One chatsvc on the embedded default (in-process bus, SQLite)."""
    return server_factory()


@pytest.fixture(scope="module")
def cql_keyspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh keyspace on the real CQL node, migrated by ``chatsvc migrate``, one per test
    module (tests/support/replicas.py); dropped after."""
    with migrated_keyspace(tmp_path_factory.mktemp("migrate")) as env:
        yield env
