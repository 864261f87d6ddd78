"""/readyz of a real server names the store's failing host (CQL) or file (SQLite) and why."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerFactory
from tests.store.conftest import drop_keyspace, new_keyspace, scylla_env
from tests.support.servers import ServerProcess, free_port


class TcpProxy:
    """127.0.0.1:port -> the CQL node; :meth:`stop` closes the port and cuts every connection,
    as a node that went away would."""

    def __init__(self, target: int) -> None:
        self.port = free_port()
        self.target = target
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers += [writer, upstream_writer]
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            self._writers.clear()
            await self._server.wait_closed()
            self._server = None


def lag_report(server: ServerProcess) -> str:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return "\n".join(line for line in text.splitlines() if line.startswith("chatsvc_event_loop_lag"))


@pytest.fixture
def keyspace() -> Iterator[str]:
    name = new_keyspace()
    yield name
    drop_keyspace(scylla_env(name), name)


@pytest.fixture
async def proxy(keyspace: str) -> AsyncIterator[TcpProxy]:
    node = scylla_env(keyspace)
    tcp = TcpProxy(int(node["SCYLLA_PORT"]))
    await tcp.start()
    yield tcp
    await tcp.stop()


async def test_readyz_names_the_unreachable_cql_node(
    server_factory: ServerFactory, proxy: TcpProxy, keyspace: str
) -> None:
    env = scylla_env(keyspace) | {"SCYLLA_PORT": str(proxy.port), "SCYLLA_REQUEST_TIMEOUT": "5"}
    server = await asyncio.to_thread(server_factory, name="cql", wait="/readyz", **env)
    await proxy.stop()  # the node's port is now closed

    named = f"127.0.0.1:{proxy.port}: connection refused"
    seen: list[object] = []
    # The first checks may time out while the driver notices (its execute_async can block the
    # event loop while the pool reconnects); within a few seconds readiness names the node.
    for _ in range(100):
        status, body = await asyncio.to_thread(server.http_json, "/readyz")
        seen.append(body)
        assert status == 503 or len(seen) < 20, seen
        if body.get("failing") == {"store": named}:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"/readyz never named the CQL node: {seen[-3:]}\n{lag_report(server)}")
    for _ in range(5):
        status, body = await asyncio.to_thread(server.http_json, "/readyz")
        assert status == 503 and body == {"status": "not_ready", "failing": {"store": named}}, body
    assert "Traceback" not in server.log_text()


async def test_readyz_names_a_damaged_sqlite_file(server_factory: ServerFactory, tmp_path: Path) -> None:
    data = tmp_path / "sqlite-data"
    server = await asyncio.to_thread(server_factory, name="sqlite", data_dir=data, wait="/readyz")
    database = data / "chatsvc.sqlite3"
    status, body = await asyncio.to_thread(server.http_json, "/readyz")
    assert status == 200 and "store" in body["checks"], body  # type: ignore[operator]
    # Replaced under the running server (a bad restore, a full disk's torn write).
    for path in (database, data / "chatsvc.sqlite3-wal", data / "chatsvc.sqlite3-shm"):
        if path.exists():
            path.write_bytes(b"this is not a database " * 512)
    status, body = await asyncio.to_thread(server.http_json, "/readyz")
    assert status == 503, body
    failing_checks = body["failing"]
    assert isinstance(failing_checks, dict)
    store = str(failing_checks["store"])
    assert store.startswith(f"{database}: "), body
    assert "not a database" in store or "malformed" in store or "disk I/O error" in store, body
