"""/healthz and /readyz: unit tests of Readiness over a tiny app, then a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chatsvc.errors import BusUnavailable
from chatsvc.web import health
from tests.support.clients import running_server
from tests.support.servers import ServerProcess


@pytest.fixture
async def probe() -> AsyncIterator[tuple[health.Readiness, TestClient[web.Request, web.Application]]]:
    readiness = health.Readiness()
    app = web.Application()
    app.add_routes(health.routes(readiness))
    async with TestClient(TestServer(app)) as client:
        yield readiness, client


async def ok() -> None:
    return None


async def bus_down() -> None:
    raise BusUnavailable("kafka: no brokers reachable")


async def crashes() -> None:
    raise RuntimeError("secret detail /etc/passwd")


async def hangs() -> None:
    await asyncio.sleep(60)


async def test_healthz_always_ok(
    probe: tuple[health.Readiness, TestClient[web.Request, web.Application]],
) -> None:
    readiness, client = probe
    readiness.add("bus", bus_down)
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_ready_when_every_check_passes(
    probe: tuple[health.Readiness, TestClient[web.Request, web.Application]],
) -> None:
    readiness, client = probe
    readiness.add("store", ok)
    readiness.add("bus", ok)
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready", "checks": ["store", "bus"]}


async def test_not_ready_names_what_fails(
    probe: tuple[health.Readiness, TestClient[web.Request, web.Application]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readiness, client = probe
    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.2)
    readiness.add("store", ok)
    readiness.add("bus", bus_down)
    readiness.add("other", crashes)
    readiness.add("slow", hangs)
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body == {
        "status": "not_ready",
        "failing": {"bus": "kafka: no brokers reachable", "other": "RuntimeError", "slow": "check timed out"},
    }
    readiness.remove("bus")
    readiness.remove("other")
    readiness.remove("slow")
    readiness.remove("never-added")
    assert (await client.get("/readyz")).status == 200


async def test_draining_is_not_ready(
    probe: tuple[health.Readiness, TestClient[web.Request, web.Application]],
) -> None:
    readiness, client = probe
    readiness.add("store", ok)
    readiness.draining = True
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["failing"] == {"server": "draining"}


# -- the real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("health")) as running:
        yield running


def test_real_server_probes(server: ServerProcess) -> None:
    assert server.http_json("/healthz") == (200, {"status": "ok"})
    status, body = server.http_json("/readyz")
    assert status == 200
    assert body["status"] == "ready"
    assert {"store", "bus"} <= set(body["checks"])  # type: ignore[arg-type]
    assert server.http_status("/nope") == 404
