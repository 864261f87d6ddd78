"""``chatsvc admin ...``: the command-line client against a running server.

Most calls run ``chatsvc.cli.main`` in-process (a thread, as the CLI's gRPC calls block)
to keep the suite fast; one runs the real ``python -m chatsvc admin`` entry point.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatsvc.cli import main
from tests.admin.helpers import admin_token, unique
from tests.conftest import ServerFactory
from tests.support.clients import ClientPool
from tests.support.servers import ServerProcess, free_port, run_cli
from tests.support.services import REPO
from tests.support.tokens import token

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``cli(server, *args, **env)`` → (exit status, stdout, stderr) of ``chatsvc admin ARGS``."""

    def run(server: ServerProcess, *args: str, **env: str) -> tuple[int, str, str]:
        monkeypatch.setenv("CHATSVC_ADMIN_TARGET", f"127.0.0.1:{server.grpc_port}")
        monkeypatch.setenv("CHATSVC_ADMIN_TOKEN", admin_token())
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        try:
            status = main(["admin", *args])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
            if not isinstance(exc.code, int) and exc.code:
                print(exc.code, file=sys.stderr)
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return status, out, err

    return run


def ok(cli: Cli, server: ServerProcess, *args: str, **env: str) -> Any:
    status, out, err = cli(server, *args, **env)
    assert status == 0, err
    return json.loads(out)


def failing(cli: Cli, server: ServerProcess, *args: str, **env: str) -> tuple[int, str]:
    status, _, err = cli(server, *args, **env)
    assert status != 0
    return status, err


def test_the_console_entry_point(shared_server: ServerProcess) -> None:
    room = unique()
    env = {**shared_server.env, "CHATSVC_ADMIN_TOKEN": admin_token()}  # target from CHATSVC_GRPC_PORT
    done = run_cli(["admin", "publish", room, "AAPL halted", "--sender-id", "alerts"], env)
    assert done.returncode == 0, done.stderr
    message = json.loads(done.stdout)["message"]
    assert (message["room"], message["kind"], message["user"]["id"]) == (room, "system", "alerts")


async def test_publish_rooms_and_presence(
    shared_server: ServerProcess, clients: ClientPool, cli: Cli
) -> None:
    room = unique()
    alice = await clients.connect(shared_server.url, token("alice"))
    await alice.ok("join", {"room": room})
    published = await asyncio.to_thread(
        ok, cli, shared_server, "publish", room, "AAPL +5%", "--client-msg-id", "k"
    )
    assert (await alice.next("message"))["id"] == published["message"]["id"]
    rooms = await asyncio.to_thread(ok, cli, shared_server, "rooms", "--online-only", "--page-size", "500")
    assert {"name": room, "online": 1} in [{k: r.get(k) for k in ("name", "online")} for r in rooms["rooms"]]
    presence = await asyncio.to_thread(ok, cli, shared_server, "presence", room)
    assert presence["users"] == [{"id": "alice", "name": "Alice"}]


async def test_moderation_commands(shared_server: ServerProcess, clients: ClientPool, cli: Cli) -> None:
    user, room = unique("u"), unique()
    client = await clients.connect(shared_server.url, token(user))
    await client.ok("join", {"room": room})

    def run(*args: str) -> Any:
        return asyncio.to_thread(ok, cli, shared_server, *args)

    muted = await run("mute", room, user, "--for", "15m", "--reason", "spam")
    assert muted["mute"]["reason"] == "spam" and "until" in muted["mute"]
    assert await client.error("message", {"room": room, "text": "hi"}) == "forbidden"
    assert await run("unmute", room, user) == {}
    await client.ok("message", {"room": room, "text": "hi"})

    assert (await run("disconnect", user, "--reason", "bye"))["reach"] == {"sockets": 1, "replicas": 1}
    assert (await client.next("session_end"))["code"] == "disconnected"

    banned = await run("ban", user, "--reason", "fraud")
    assert banned["ban"]["user_id"] == user and "until" not in banned["ban"]
    assert (await clients.refused(shared_server.url, token(user)))["code"] == "forbidden"
    await run("unban", user)
    await clients.connect(shared_server.url, token(user))


def test_credentials_come_from_the_flag_or_the_environment(shared_server: ServerProcess, cli: Cli) -> None:
    status, err = failing(cli, shared_server, "info", CHATSVC_ADMIN_TOKEN="")
    assert status == 1 and "UNAUTHENTICATED" in err and "CHATSVC_ADMIN_TOKEN" in err
    assert "PERMISSION_DENIED" in failing(cli, shared_server, "info", "--token", token("mallory"))[1]
    assert ok(cli, shared_server, "info", "--token", admin_token(), CHATSVC_ADMIN_TOKEN="")["replica_id"]


def test_errors_are_one_line_with_the_status(shared_server: ServerProcess, cli: Cli) -> None:
    _, err = failing(cli, shared_server, "publish", "bad room", "x")
    assert err.startswith("chatsvc admin: INVALID_ARGUMENT: 'room'")
    assert "NOT_FOUND" in failing(cli, shared_server, "room", unique())[1]
    _, err = failing(cli, shared_server, "info", "--target", f"127.0.0.1:{free_port()}", "--timeout", "2")
    assert "UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err
    status, err = failing(cli, shared_server, "mute", "room", "user", "--for", "soon")
    assert status == 2 and "duration" in err


def test_mutual_tls_options(server_factory: ServerFactory, tmp_path: Path, cli: Cli) -> None:
    pki = tmp_path / "pki"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "testca.py"), str(pki), "--quiet"], check=True, timeout=60
    )
    server = server_factory(
        name="mtls-cli",
        CHATSVC_GRPC_TLS_CERT=str(pki / "server.pem"),
        CHATSVC_GRPC_TLS_KEY=str(pki / "server.key"),
        CHATSVC_GRPC_TLS_CLIENT_CA=str(pki / "ca.pem"),
    )
    tls = ["--ca", str(pki / "ca.pem")]
    client = ["--cert", str(pki / "client.pem"), "--key", str(pki / "client.key")]
    assert ok(cli, server, "info", *tls, *client, CHATSVC_ADMIN_TOKEN="")["replica_id"]
    untrusted = ["--cert", str(pki / "untrusted-client.pem"), "--key", str(pki / "untrusted-client.key")]
    assert "UNAVAILABLE" in failing(cli, server, "info", *tls, *untrusted, "--timeout", "5")[1]
    assert "--cert and --key" in failing(cli, server, "info", *tls, "--cert", str(pki / "client.pem"))[1]
