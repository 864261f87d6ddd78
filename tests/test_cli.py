"""The ``chatsvc`` command line: token, migrate, serve's dev mode, configuration errors."""

from __future__ import annotations

import argparse
import re
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chatsvc.auth.jwt import JwtVerifier
from chatsvc.cli import build_parser, parse_duration
from chatsvc.settings import Settings
from tests.support.clients import ClientPool
from tests.support.servers import TEST_JWT_SECRET, ServerProcess, base_env, free_port, run_cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return base_env(tmp_path / "data", free_port())


# -- unit ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("1.5h", 5400), ("7d", 604800), (" 2m ", 120)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1w", "-5m", "1h30m", "soon"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_parser_knows_the_commands() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).command == "serve"
    args = parser.parse_args(["token", "--sub", "a", "--role", "admin", "--role", "mod", "--ttl", "30m"])
    assert (args.sub, args.role, args.ttl) == ("a", ["admin", "mod"], 1800.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["token"])  # --sub is required


# -- chatsvc token ---------------------------------------------------------------------------


def test_token_verifies_with_the_configured_key(env: dict[str, str]) -> None:
    done = run_cli(
        [
            "token",
            "--sub",
            "alice",
            "--name",
            "Alice",
            "--ttl",
            "1h",
            "--role",
            "admin",
            "--rooms",
            "lobby,stock:*",
        ],
        env,
    )
    assert done.returncode == 0, done.stderr
    tok = done.stdout.strip()
    assert tok.count(".") == 2 and "\n" not in tok
    identity = JwtVerifier(Settings.from_env(env).jwt).verify(tok)
    assert (identity.user_id, identity.name, identity.is_admin) == ("alice", "Alice", True)
    assert identity.room_patterns == ("lobby", "stock:*")
    assert identity.expires_at is not None
    assert 3500 < identity.expires_at - time.time() <= 3600


def test_token_carries_issuer_and_audience(env: dict[str, str]) -> None:
    env = {**env, "CHATSVC_JWT_ISSUER": "https://auth.example", "CHATSVC_JWT_AUDIENCE": "chatsvc"}
    done = run_cli(["token", "--sub", "bob"], env)
    assert done.returncode == 0, done.stderr
    assert JwtVerifier(Settings.from_env(env).jwt).verify(done.stdout.strip()).name == "bob"


def test_token_with_a_public_key_deployment(env: dict[str, str], tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "private.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = tmp_path / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    env = {k: v for k, v in env.items() if k != "CHATSVC_JWT_SECRET"}
    env["CHATSVC_JWT_PUBLIC_KEY"] = str(public)
    refused = run_cli(["token", "--sub", "carol"], env)
    assert refused.returncode != 0
    assert "--private-key" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = run_cli(["token", "--sub", "carol", "--private-key", str(private), "--algorithm", "ES256"], env)
    assert done.returncode == 0, done.stderr
    assert JwtVerifier(Settings.from_env(env).jwt).verify(done.stdout.strip()).user_id == "carol"


def test_configuration_error_names_the_variable(env: dict[str, str]) -> None:
    for command in (["token", "--sub", "a"], ["migrate"], ["serve"]):
        done = run_cli(command, {**env, "CHATSVC_MAX_MESSAGE_BYTES": "lots"})
        assert done.returncode == 2, command
        assert "CHATSVC_MAX_MESSAGE_BYTES" in done.stderr
        assert "Traceback" not in done.stderr


def test_bad_ttl_is_a_usage_error(env: dict[str, str]) -> None:
    done = run_cli(["token", "--sub", "a", "--ttl", "forever"], env)
    assert done.returncode == 2
    assert "duration" in done.stderr


# -- chatsvc migrate -------------------------------------------------------------------------


def test_migrate_twice(env: dict[str, str]) -> None:
    for _ in range(2):
        done = run_cli(["migrate"], env)
        assert done.returncode == 0, done.stderr
        assert "schema is up to date" in done.stdout
    database = Path(env["CHATSVC_DATA_DIR"]) / "chatsvc.sqlite3"
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"messages", "read_markers", "rooms"} <= tables


def test_migrate_with_an_unusable_data_dir(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    done = run_cli(["migrate"], {**env, "CHATSVC_DATA_DIR": str(blocker / "data")})
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert "cannot open" in done.stderr


def test_serve_with_an_unusable_data_dir(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    done = run_cli(["serve"], {**env, "CHATSVC_DATA_DIR": str(blocker / "data")}, timeout=60)
    assert done.returncode == 3
    assert "startup failed" in done.stderr
    assert "Traceback" not in done.stderr


# -- chatsvc serve without a JWT key: the `make run` experience -------------------------------


async def test_dev_mode_prints_a_token_that_connects(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data", free_port())
    del env["CHATSVC_JWT_SECRET"]
    server = ServerProcess(env, tmp_path / "dev.log").start()
    try:
        log = server.log_text()
        assert "DEVELOPMENT MODE" in log
        match = re.search(r"Dev token: (\S+)", log)
        assert match, log
        dev_token = match.group(1)
        assert f"http://localhost:{server.port}" in log
        assert TEST_JWT_SECRET not in log
        secret_file = tmp_path / "data" / "dev-jwt-secret"
        assert secret_file.read_text().strip() not in log  # the secret itself is never printed
        async with ClientPool() as clients:
            client = await clients.connect(server.url, dev_token)
            ack = await client.ok("join", {"room": "lobby"})
            assert ack["room"] == "lobby"
            sent = await client.ok("message", {"room": "lobby", "text": "hello from make run"})
            assert sent["message"]["user"] == {"id": "dev", "name": "Dev"}
        server.signal(signal.SIGTERM)
        assert server.wait_exit(timeout=30) == 0
    finally:
        server.stop()


def test_serve_on_a_taken_port(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(["serve"], {**env, "CHATSVC_PORT": str(port)}, timeout=60)
    assert done.returncode == 3, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
