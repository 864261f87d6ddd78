"""The origin check: same origin (also behind a proxy, also over direct TLS) plus the allow-list."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatsvc.web.origins import OriginPolicy
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess, base_env, free_port
from tests.support.tokens import token

REPO = Path(__file__).resolve().parents[2]
ALLOWED = "https://app.st00ck.example"
HANDSHAKE = "/socket.io/?EIO=4&transport=polling"

# -- unit ------------------------------------------------------------------------------------


def environ(host: str = "chat.example:8080", **headers: str) -> dict[str, Any]:
    env: dict[str, Any] = {"HTTP_HOST": host, "wsgi.url_scheme": "http"}
    env.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return env


def test_no_origin_header_is_not_a_browser() -> None:
    assert OriginPolicy(())(None, environ())


def test_same_origin() -> None:
    policy = OriginPolicy(())
    assert policy("http://chat.example:8080", environ())
    assert policy("HTTP://Chat.Example:8080", environ())
    assert not policy("http://chat.example:8081", environ())
    assert not policy("https://chat.example:8080", environ())
    assert not policy("https://evil.example", environ())
    assert not policy("null", environ())
    assert not policy("http://chat.example:8080", {"wsgi.url_scheme": "http"})  # no Host header


def test_allow_list_and_star() -> None:
    policy = OriginPolicy((ALLOWED, "http://localhost:3000"))
    assert policy(ALLOWED, environ())
    assert policy("HTTPS://APP.ST00CK.EXAMPLE", environ())
    assert policy("http://localhost:3000", environ())
    assert not policy("https://app.st00ck.example.evil.example", environ())
    assert not policy("http://app.st00ck.example", environ())
    assert OriginPolicy(("*",))("https://anything.example", environ())


def test_forwarded_by_a_tls_terminating_proxy() -> None:
    policy = OriginPolicy(())
    behind = environ("chatsvc:8080", X_FORWARDED_PROTO="https", X_FORWARDED_HOST="chat.st00ck.example")
    assert policy("https://chat.st00ck.example", behind)
    assert not policy("http://chat.st00ck.example", behind)
    with_port = environ("chatsvc:8080", X_FORWARDED_PROTO="https", X_FORWARDED_HOST="chat.st00ck.example:443")
    assert policy("https://chat.st00ck.example", with_port)
    assert policy("https://chat.st00ck.example:443", with_port)
    chain = environ("chatsvc:8080", X_FORWARDED_PROTO="https, http", X_FORWARDED_HOST="a.example, b.example")
    assert policy("https://a.example", chain)
    assert not policy("https://b.example", chain)
    proto_only = environ("chat.example", X_FORWARDED_PROTO="https")
    assert policy("https://chat.example", proto_only)


def test_direct_tls_same_origin() -> None:
    """Engine.IO's aiohttp driver reports ``http`` for a TLS socket; the policy must not."""
    policy = OriginPolicy((), scheme="https")
    assert policy("https://chat.example:8443", environ("chat.example:8443"))
    assert not policy("http://chat.example:8443", environ("chat.example:8443"))


# -- integration: the handshake over HTTP ------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("origins"), CHATSVC_CORS_ORIGINS=f"{ALLOWED},http://localhost:3000"
    ) as running:
        yield running


async def handshake(url: str, ssl_context: ssl.SSLContext | None = None, **headers: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + HANDSHAKE, headers=headers, ssl=ssl_context if ssl_context else True) as resp,
    ):
        return resp.status, resp.headers.get("Access-Control-Allow-Origin", "")


async def test_cross_origin_handshake_refused(server: ServerProcess) -> None:
    status, allow = await handshake(server.url, Origin="https://evil.example")
    assert status == 400
    assert allow == ""


@pytest.mark.parametrize("origin", [ALLOWED, "http://localhost:3000"])
async def test_allowed_origins(server: ServerProcess, origin: str) -> None:
    assert await handshake(server.url, Origin=origin) == (200, origin)


async def test_same_origin_and_no_origin(server: ServerProcess) -> None:
    host = f"127.0.0.1:{server.port}"
    assert await handshake(server.url, Origin=f"http://{host}") == (200, f"http://{host}")
    assert (await handshake(server.url))[0] == 200
    assert (await handshake(server.url, Origin=f"http://localhost:{server.port}"))[0] == 400


async def test_same_origin_behind_a_proxy(server: ServerProcess) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "chat.st00ck.example"}
    status, _ = await handshake(server.url, Origin="https://chat.st00ck.example", **forwarded)
    assert status == 200
    status, _ = await handshake(server.url, Origin="https://evil.example", **forwarded)
    assert status == 400


async def test_websocket_upgrade_checks_the_origin_too(server: ServerProcess) -> None:
    ws_url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(ws_url, origin="https://evil.example")
        assert info.value.status == 400
        async with session.ws_connect(ws_url, origin=ALLOWED) as ws:
            opening = await ws.receive_str(timeout=5)
            assert opening.startswith("0{")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_socketio_client_with_a_foreign_origin(
    server: ServerProcess, clients: ClientPool, transport: str
) -> None:
    client = clients.new()
    with pytest.raises(Exception, match=r"(?i)connect|origin|400|refused"):
        await client.connect(
            server.url, token(), transport=transport, headers={"Origin": "https://evil.example"}
        )
    ok = await clients.connect(server.url, token(), transport=transport, headers={"Origin": ALLOWED})
    await ok.ok("join", {"room": "cors"})


# -- direct TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ssl.SSLContext]]:
    directory = tmp_path_factory.mktemp("tls")
    pki = directory / "pki"
    subprocess.run([sys.executable, str(REPO / "scripts" / "testca.py"), str(pki), "--quiet"], check=True)
    env = base_env(directory / "data", free_port())
    env.update(
        CHATSVC_TLS_CERT=str(pki / "server.pem"),
        CHATSVC_TLS_KEY=str(pki / "server.key"),
        CHATSVC_SHUTDOWN_TIMEOUT="1",
    )
    server = ServerProcess(env, directory / "tls.log").start(wait=None)
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    try:
        wait_https(server, context)
        yield server, context
    finally:
        server.stop()


def wait_https(server: ServerProcess, context: ssl.SSLContext, timeout: float = 30.0) -> None:
    import urllib.request  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise AssertionError(f"TLS server exited:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", context=context, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"TLS server not up within {timeout}s:\n{server.log_tail()}")


async def test_tls_same_origin_page_may_connect(tls_server: tuple[ServerProcess, ssl.SSLContext]) -> None:
    """The demo page served over https from this server must be able to open a socket."""
    server, context = tls_server
    assert server.url.startswith("https://")
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}"):
        status, _ = await handshake(server.url, context, Origin=f"https://{host}", Host=host)
        assert status == 200, host
    status, _ = await handshake(server.url, context, Origin="https://evil.example")
    assert status == 400
    status, _ = await handshake(server.url, context, Origin=f"http://127.0.0.1:{server.port}")
    assert status == 400


async def test_tls_socketio_round_trip(tls_server: tuple[ServerProcess, ssl.SSLContext]) -> None:
    server, context = tls_server
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(connector=connector) as http:
        import socketio  # noqa: PLC0415

        client = socketio.AsyncClient(reconnection=False, http_session=http)
        await client.connect(server.url, auth={"token": token()}, transports=["websocket"], wait_timeout=5)
        try:
            ack = await client.call("join", {"room": "tls"}, timeout=5)
            assert ack["ok"] is True
        finally:
            await client.disconnect()
