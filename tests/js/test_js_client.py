"""The official JavaScript socket.io-client v4 (node) against a real chatsvc.

``client.mjs`` runs one scenario and prints JSON lines of what happened; these tests run it
over websocket and over polling. It needs ``npm ci`` in tests/js (``make test`` does it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import TRANSPORTS, ClientPool, running_server
from tests.support.node import require_node_packages
from tests.support.servers import ServerProcess, base_env, free_port, run_cli
from tests.support.tokens import token

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "client.mjs"
RUN_TIMEOUT = 40.0


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with socket.io-client installed from the lockfile; fail (never skip)."""
    return require_node_packages(HERE, "socket.io-client/package.json")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("js"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


def driver_env(server: ServerProcess, transport: str, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    env.update(
        CHATSVC_URL=server.url, CHATSVC_TRANSPORT=transport, CHATSVC_ROOM=f"js-{uuid.uuid4().hex[:10]}"
    )
    env.update(values)
    return env


def parse(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run(node: str, scenario: str, env: dict[str, str], *, expect_ok: bool = True) -> list[dict[str, Any]]:
    done = subprocess.run(
        [node, str(DRIVER), scenario],
        env=env,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    lines = parse(done.stdout)
    if expect_ok:
        assert done.returncode == 0, f"{scenario} failed:\n{done.stdout}\n{done.stderr}"
        assert lines[-1] == {"type": "done"}
    return lines


def of(lines: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [
        line for line in lines if line["type"] == kind and all(line.get(k) == v for k, v in match.items())
    ]


def acks(lines: list[dict[str, Any]], client: str, event: str) -> list[dict[str, Any]]:
    return [line["ack"] for line in of(lines, "ack", client=client, event=event)]


def events(lines: list[dict[str, Any]], client: str, event: str) -> list[Any]:
    return [line["data"] for line in of(lines, "event", client=client, event=event)]


@pytest.mark.parametrize("auth", ["raw", "bearer"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connect(node: str, server: ServerProcess, transport: str, auth: str) -> None:
    env = driver_env(server, transport, CHATSVC_TOKEN=token("js-user"), CHATSVC_AUTH=auth)
    lines = run(node, "connect", env)
    assert of(lines, "connect") == [{"type": "connect", "client": "a", "transport": transport}]
    [join] = acks(lines, "a", "join")
    assert join == {
        "ok": True,
        "room": env["CHATSVC_ROOM"],
        "online": 1,
        "unread": 0,
        "slow_mode_seconds": 0,
        "sentiment": {"hour": {"bullish": 0, "bearish": 0}, "day": {"bullish": 0, "bearish": 0}},
    }


REJECTIONS = {
    "expired": (lambda: token(ttl=-60), "token_expired"),
    "bad-signature": (lambda: token(secret="x" * 40), "token_invalid"),
    "garbage": (lambda: "not-a-jwt", "token_invalid"),
    "missing": (lambda: None, "token_missing"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rejection_data(node: str, server: ServerProcess, transport: str, case: str) -> None:
    make, code = REJECTIONS[case]
    tok = make()
    env = driver_env(server, transport, **({"CHATSVC_TOKEN": tok} if tok else {"CHATSVC_AUTH": "none"}))
    lines = run(node, "rejected", env)
    [error] = of(lines, "connect_error")
    assert set(error["data"]) == {"code", "message"}
    assert error["data"]["code"] == code
    assert error["message"] == error["data"]["message"]
    assert not of(lines, "connect")


@pytest.fixture(scope="module")
def banned_user(server: ServerProcess) -> str:
    """A user banned through the admin API (``chatsvc admin ban``)."""
    admin = token("ops", roles=["admin"])
    done = run_cli(["admin", "ban", "js-banned", "--token", admin, "--reason", "spam"], server.env)
    assert done.returncode == 0, done.stderr
    return "js-banned"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_banned_user_is_forbidden(node: str, server: ServerProcess, banned_user: str, transport: str) -> None:
    lines = run(node, "rejected", driver_env(server, transport, CHATSVC_TOKEN=token(banned_user)))
    [error] = of(lines, "connect_error")
    assert error["data"]["code"] == "forbidden"
    assert set(error["data"]) == {"code", "message"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_chat_between_two_js_clients(node: str, server: ServerProcess, transport: str) -> None:
    env = driver_env(server, transport, CHATSVC_TOKEN=token("jsa"), CHATSVC_TOKEN2=token("jsb"))
    room = env["CHATSVC_ROOM"]
    lines = run(node, "chat", env)
    assert [c["transport"] for c in of(lines, "connect")] == [transport, transport]

    assert acks(lines, "b", "join")[0]["room"] == room  # joined with a JSON-text payload
    presence = events(lines, "a", "presence")[0]
    assert presence == {"room": room, "user": {"id": "jsb", "name": "Jsb"}, "action": "join", "online": 2}

    first, as_text, retry, not_json, bad_text = acks(lines, "a", "message")
    assert set(first) == {"ok", "message", "duplicate"} and first["duplicate"] is False
    message = first["message"]
    assert set(message) == {"id", "room", "user", "text", "client_msg_id", "created_at", "pos"}
    assert (message["room"], message["text"], message["client_msg_id"]) == (room, "hello from js", "js-1")
    assert message["user"] == {"id": "jsa", "name": "Jsa"}
    assert as_text["ok"] is True and as_text["message"]["text"] == "sent as JSON text"
    assert retry == {"ok": True, "message": message, "duplicate": True}
    for ack in (not_json, bad_text):
        assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload"
        assert set(ack["error"]) == {"code", "message"}
    [unknown] = acks(lines, "a", "no_such_event")
    assert unknown["error"]["code"] == "invalid_payload"

    received = events(lines, "b", "message")
    assert received == [message, as_text["message"]]  # the retry delivered nothing
    assert events(lines, "a", "message") == []  # no echo to the sender
    assert events(lines, "b", "typing") == [
        {"room": room, "user": {"id": "jsa", "name": "Jsa"}, "typing": True}
    ]
    [history] = acks(lines, "b", "history")
    assert [m["text"] for m in history["messages"]] == ["sent as JSON text", "hello from js"]
    assert history["next_before"] is None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_js_client_receives_a_python_clients_message(
    node: str, server: ServerProcess, transport: str
) -> None:
    env = driver_env(server, transport, CHATSVC_TOKEN=token("js-listener"))
    room = env["CHATSVC_ROOM"]
    proc = await asyncio.create_subprocess_exec(
        node,
        str(DRIVER),
        "listen",
        env=env,
        cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            while not lines or lines[-1]["type"] != "ready":
                raw = await proc.stdout.readline()
                assert raw, f"driver ended early: {lines} {(await proc.stderr.read()).decode()}"
                lines.append(json.loads(raw))
            async with ClientPool() as clients:
                py = await clients.connect(server.url, token("py-sender"))
                await py.ok("join", {"room": room})
                sent = await py.ok("message", {"room": room, "text": "from python"})
                await py.ok("message", {"room": room, "text": "bye"})
                rest, err = await proc.communicate()
            lines += parse(rest.decode())
            assert proc.returncode == 0, f"{lines} {err.decode()}"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    received = events(lines, "a", "message")
    assert received[0] == sent["message"]
    assert [m["text"] for m in received] == ["from python", "bye"]
    joined = events(lines, "a", "presence")
    assert joined and joined[0]["user"]["id"] == "py-sender"


async def test_js_clients_are_drained_at_sigterm(node: str, tmp_path: Path) -> None:
    """Both transports get session_end {shutting_down, reconnect} and the server exits
    promptly (regression: websockets held it for twice CHATSVC_SHUTDOWN_TIMEOUT)."""
    bound = 20.0
    env = base_env(tmp_path / "data", free_port())
    env["CHATSVC_SHUTDOWN_TIMEOUT"] = str(bound)
    server = ServerProcess(env, tmp_path / "drain.log").start()
    procs: list[asyncio.subprocess.Process] = []
    try:
        for transport in TRANSPORTS:
            driver = driver_env(server, transport, CHATSVC_TOKEN=token(f"drained-{transport}"))
            procs.append(
                await asyncio.create_subprocess_exec(
                    node,
                    str(DRIVER),
                    "drain",
                    env=driver,
                    cwd=HERE,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        async with asyncio.timeout(RUN_TIMEOUT):
            for proc in procs:
                assert proc.stdout is not None
                while json.loads(await proc.stdout.readline())["type"] != "ready":
                    pass
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            # The clients stay alive (like open browser tabs) while the server stops.
            code = await asyncio.to_thread(server.wait_exit, bound + 10)
            elapsed = time.monotonic() - started
            outputs = [await proc.communicate(b"") for proc in procs]
        assert code == 0, server.log_tail()
        assert elapsed < bound / 2, f"exit took {elapsed:.1f}s although every client had left"
        for proc, (stdout, _) in zip(procs, outputs, strict=True):
            lines = parse(stdout.decode())
            assert proc.returncode == 0, lines
            [end] = events(lines, "a", "session_end")
            assert end["code"] == "shutting_down" and end["reconnect"] is True
            # Only the transport is closed (no Socket.IO DISCONNECT): socket.io-client
            # reconnects by itself when reconnection is on (it is off in this driver).
            assert of(lines, "disconnect")[0]["reason"] in {"transport close", "transport error"}
            assert of(lines, "left")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        server.stop()
