"""The web client's routes against a real server: what is served where, the vendored
socket.io-client is the published file, ``POST /dev/token`` exists only in development and
refuses bad input, and production serves nothing unless ``CHATSVC_WEB_APP=true``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from chatsvc.web.webapp import CSP, DEV_TOKEN_MAX_BODY, app_files
from tests.conftest import ServerFactory
from tests.support.clients import ClientPool, running_server
from tests.support.node import REPO, require_node_packages
from tests.support.servers import TEST_JWT_SECRET, ServerProcess

VENDOR = REPO / "chatsvc" / "web" / "static" / "vendor" / "socket.io"
JS_TESTS = REPO / "tests" / "js"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One development server for the tests that only read from it."""
    with running_server(tmp_path_factory.mktemp("webapp")) as running:
        yield running


def request(
    server: ServerProcess,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"{server.url}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status), dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers), exc.read()


async def fetch(server: ServerProcess, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(request, server, path, **kw)


async def mint(server: ServerProcess, payload: object, **headers: str) -> tuple[int, dict[str, Any]]:
    status, _, body = await fetch(
        server,
        "/dev/token",
        method="POST",
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        return status, json.loads(body)
    except ValueError:  # aiohttp's own 404 page: the route does not exist
        return status, {"text": body.decode()}


def test_the_vendored_client_is_the_published_one() -> None:
    """The committed socket.io.min.js is byte for byte the file of the npm package tests/js
    pins (npm ci checks the tarball against the lockfile's integrity), at the same version."""
    require_node_packages(JS_TESTS, "socket.io-client/package.json")
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    published = JS_TESTS / "node_modules" / "socket.io-client"
    version = json.loads((published / "package.json").read_text())["version"]
    pinned = json.loads((JS_TESTS / "package.json").read_text())["dependencies"]["socket.io-client"]
    assert manifest["version"] == version == pinned
    ours = (VENDOR / "socket.io.min.js").read_bytes()
    assert ours == (published / "dist" / "socket.io.min.js").read_bytes()
    assert manifest["files"]["socket.io.min.js"] == "sha256:" + hashlib.sha256(ours).hexdigest()
    lock = json.loads((JS_TESTS / "package-lock.json").read_text())
    assert manifest["tarball_integrity"] == lock["packages"]["node_modules/socket.io-client"]["integrity"]
    assert (VENDOR / manifest["licence_file"]).read_text() == (published / "LICENSE").read_text()


async def test_development_serves_the_app_and_only_its_files(server: ServerProcess) -> None:
    status, headers, body = await fetch(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"] == CSP and "default-src 'none'" in CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b"/app/js/main.js" in body and b"https://" not in body  # nothing from another origin
    status, _, served = await fetch(server, "/app/vendor/socket.io/socket.io.min.js")
    assert status == 200 and served == (VENDOR / "socket.io.min.js").read_bytes()
    for name in app_files():
        status, _, _ = await fetch(server, f"/app/{name}")
        assert status == 200, name
    status, _, config = await fetch(server, "/app/config.json")
    assert status == 200 and json.loads(config) == {"dev_sign_in": True, "environment": "development"}
    for path in ("/app/../webapp.py", "/app/%2e%2e/webapp.py", "/app/js/nope.js", "/app/", "/app/js"):
        status, _, body = await fetch(server, path)
        assert status == 404, path
        assert b"Traceback" not in body


async def test_dev_token_signs_in_as_a_plain_user(server: ServerProcess) -> None:
    status, body = await mint(server, {"sub": "dora", "name": "Dora D."})
    assert status == 200 and body["expires_in"] == 3600
    claims = jwt.decode(body["token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "dora" and claims["name"] == "Dora D."
    assert "roles" not in claims and "rooms" not in claims  # never admin
    assert claims["exp"] - claims["iat"] == 3600
    # Same origin is what the page sends; it is accepted.
    status, _ = await mint(server, {"sub": "erin"}, Origin=server.url)
    assert status == 200
    async with ClientPool() as clients:
        dora = await clients.connect(server.url, body["token"])
        ack = await dora.ok("join", {"room": "stock:DEV"})
        assert ack["room"] == "stock:DEV"
        sent = await dora.ok("message", {"room": "stock:DEV", "text": "hi"})
        assert sent["message"]["user"] == {"id": "dora", "name": "Dora D."}


@pytest.mark.parametrize(
    ("payload", "headers", "status", "code"),
    [
        ({"sub": "x"}, {"Origin": "https://evil.example"}, 403, "forbidden"),
        ({"sub": "x"}, {"Content-Type": "text/plain"}, 415, "invalid_payload"),
        ({"sub": ""}, {}, 400, "invalid_payload"),
        ({"sub": "a b"}, {}, 400, "invalid_payload"),
        ({"sub": "x" * 65}, {}, 400, "invalid_payload"),
        ({"sub": 7}, {}, 400, "invalid_payload"),
        ({}, {}, 400, "invalid_payload"),
        (["alice"], {}, 400, "invalid_payload"),
        ({"sub": "x", "name": "n" * 65}, {}, 400, "invalid_payload"),
        ({"sub": "x", "name": "a\nb"}, {}, 400, "invalid_payload"),
        ({"sub": "x", "name": "y" * DEV_TOKEN_MAX_BODY}, {}, 413, "too_large"),
    ],
)
async def test_dev_token_refuses_bad_requests(
    server: ServerProcess, payload: object, headers: dict[str, str], status: int, code: str
) -> None:
    got, body = await mint(server, payload, **headers)
    assert (got, body["error"]["code"]) == (status, code)
    assert body["error"]["message"] and "token" not in body


async def test_dev_token_refuses_text_that_is_not_json(server: ServerProcess) -> None:
    status, _, body = await fetch(
        server, "/dev/token", method="POST", body=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_payload"
    assert "Traceback" not in server.log_text()


async def test_production_serves_no_app_and_no_dev_token(server_factory: ServerFactory) -> None:
    server = server_factory(name="prod", CHATSVC_ENV="production")
    for path in ("/", "/app/js/main.js", "/app/config.json", "/app/vendor/socket.io/socket.io.min.js"):
        status, _, _ = await fetch(server, path)
        assert status == 404, path
    status, _ = await mint(server, {"sub": "mallory"})
    assert status == 404
    assert (await fetch(server, "/healthz"))[0] == 200


async def test_production_may_enable_the_app_but_never_dev_token(server_factory: ServerFactory) -> None:
    server = server_factory(name="prod-app", CHATSVC_ENV="production", CHATSVC_WEB_APP="true")
    status, _, _ = await fetch(server, "/")
    assert status == 200
    status, _, config = await fetch(server, "/app/config.json")
    assert json.loads(config) == {"dev_sign_in": False, "environment": "production"}
    status, _ = await mint(server, {"sub": "mallory"})
    assert status == 404


async def test_development_may_turn_the_app_off(server_factory: ServerFactory) -> None:
    server = server_factory(name="dev-off", CHATSVC_WEB_APP="false")
    for path in ("/", "/app/js/main.js"):
        assert (await fetch(server, path))[0] == 404
    status, _ = await mint(server, {"sub": "alice"})
    assert status == 404


def test_bad_web_app_setting_names_the_variable(tmp_path: Path) -> None:
    from chatsvc.settings import Settings, SettingsError  # noqa: PLC0415

    env = {"CHATSVC_JWT_SECRET": TEST_JWT_SECRET, "CHATSVC_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).web_app is True
    assert Settings.from_env({**env, "CHATSVC_ENV": "production"}).web_app is False
    assert Settings.from_env({**env, "CHATSVC_ENV": "production", "CHATSVC_WEB_APP": "on"}).web_app is True
    with pytest.raises(SettingsError, match="CHATSVC_WEB_APP"):
        Settings.from_env({**env, "CHATSVC_WEB_APP": "maybe"})
