"""The ``chatsvc`` command line: token, migrate, serve's dev mode, configuration errors."""

from __future__ import annotations

import argparse
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from chatsvc.auth.jwt import JwtVerifier
from chatsvc.cli import build_parser
from chatsvc.cliargs import parse_duration
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


# -- every error: one line naming cause and fix, exit 2, no traceback (issue 28) -------------

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _write_pair(key: PrivateKey, directory: Path, name: str) -> tuple[Path, Path]:
    private = directory / f"{name}.key"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = directory / f"{name}.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _public_key_env(env: dict[str, str], public: Path, algorithms: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in env.items() if k != "CHATSVC_JWT_SECRET"}
    env["CHATSVC_JWT_PUBLIC_KEY"] = str(public)
    if algorithms:
        env["CHATSVC_JWT_ALGORITHMS"] = algorithms
    return env


def assert_usage_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, nothing on stdout, exactly one line on stderr containing every needle."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize(
    ("key", "algorithm", "allowed"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "ES256", None),
        (ec.generate_private_key(ec.SECP384R1()), "ES384", "ES384"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", None),
        (ed25519.Ed25519PrivateKey.generate(), "EdDSA", "EdDSA"),
    ],
    ids=["ec-p256", "ec-p384", "rsa", "ed25519"],
)
def test_the_algorithm_follows_the_key(
    env: dict[str, str], tmp_path: Path, key: PrivateKey, algorithm: str, allowed: str | None
) -> None:
    private, public = _write_pair(key, tmp_path, "k")
    env = _public_key_env(env, public, allowed)
    done = run_cli(["token", "--sub", "dana", "--private-key", str(private)], env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert pyjwt.get_unverified_header(token)["alg"] == algorithm
    # The server, configured with the public key, accepts it.
    assert JwtVerifier(Settings.from_env(env).jwt).verify(token).user_id == "dana"


def test_hmac_secret_signs_hs256(env: dict[str, str]) -> None:
    done = run_cli(["token", "--sub", "erin"], env)
    assert done.returncode == 0, done.stderr
    assert pyjwt.get_unverified_header(done.stdout.strip())["alg"] == "HS256"


def test_token_errors_are_one_line(env: dict[str, str], tmp_path: Path) -> None:
    ec_private, ec_public = _write_pair(ec.generate_private_key(ec.SECP256R1()), tmp_path, "ec")
    p384_private, p384_public = _write_pair(ec.generate_private_key(ec.SECP384R1()), tmp_path, "p384")
    other_private, _ = _write_pair(ec.generate_private_key(ec.SECP256R1()), tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    public_env = _public_key_env(env, ec_public)
    cases: list[tuple[list[str], dict[str, str], tuple[str, ...]]] = [
        # an EC key with an RSA algorithm: used to be PyJWT's InvalidKeyError traceback
        (["--private-key", str(ec_private), "--algorithm", "RS256"], public_env, ("RS256", "ES256")),
        (["--private-key", str(tmp_path / "missing.pem")], public_env, ("missing.pem", "No such file")),
        (["--private-key", str(garbage)], public_env, ("garbage.pem", "not a PEM private key")),
        (["--private-key", str(other_private)], public_env, ("not the pair", "CHATSVC_JWT_PUBLIC_KEY")),
        # the server's default allow-list (RS256,ES256) would refuse an ES384 token
        (
            ["--private-key", str(p384_private)],
            _public_key_env(env, p384_public),
            ("ES384", "CHATSVC_JWT_ALGORITHMS"),
        ),
        ([], public_env, ("public key", "--private-key")),
        (["--algorithm", "ES256"], env, ("HMAC", "HS256")),
        (["--ttl", "0"], env, ("--ttl", "at least 1s")),
        (["--ttl", "0s"], env, ("--ttl", "at least 1s")),
        (["--ttl", "0.5s"], env, ("--ttl", "at least 1s")),  # JWT exp is whole seconds
        (["--ttl", "forever"], env, ("--ttl", "duration")),
        (["--bogus"], env, ("--bogus", "--help")),
    ]
    for extra, case_env, needles in cases:
        done = run_cli(["token", "--sub", "a", *extra], case_env)
        assert_usage_error(done, "chatsvc", *needles)


def test_admin_connection_options_before_or_after_the_subcommand() -> None:
    parser = build_parser()
    before = parser.parse_args(["admin", "--target", "h:1", "--timeout", "3", "info"])
    after = parser.parse_args(["admin", "info", "--target", "h:1", "--timeout", "3"])
    for args in (before, after):
        assert (args.target, args.timeout, args.admin_command) == ("h:1", 3.0, "info")
    neither = parser.parse_args(["admin", "info"])
    assert (neither.timeout, neither.tls, neither.ca) == (10.0, False, None)
    # Given in both places, the one after the subcommand wins (it is the more specific).
    both = parser.parse_args(["admin", "--target", "a:1", "presence", "lobby", "--target", "b:2"])
    assert (both.target, both.room) == ("b:2", "lobby")


def test_admin_options_before_the_subcommand_reach_the_call(env: dict[str, str]) -> None:
    port = free_port()  # nothing listens there
    for argv in (
        ["admin", "--target", f"127.0.0.1:{port}", "--timeout", "2", "info"],
        ["admin", "info", "--target", f"127.0.0.1:{port}", "--timeout", "2"],
    ):
        done = run_cli(argv, env)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and "UNAVAILABLE" in lines[0] and f"127.0.0.1:{port}" in lines[0], lines
        assert "Traceback" not in done.stderr


def test_admin_usage_errors_are_one_line(env: dict[str, str], tmp_path: Path) -> None:
    cases = [
        (["admin", "--cert", str(tmp_path / "c.pem"), "info"], ("--cert and --key",)),
        (["admin", "info", "--ca", str(tmp_path / "nope.pem")], ("nope.pem", "No such file")),
        (["admin", "info", "--timeout", "0"], ("--timeout", "> 0")),
        (["admin", "nonsense"], ("nonsense", "--help")),
        (["admin", "mute", "lobby", "mallory", "--for", "ever"], ("--for", "duration")),
    ]
    for argv, needles in cases:
        assert_usage_error(run_cli(argv, env), "chatsvc admin", *needles)


def test_admin_client_does_not_import_the_cli() -> None:
    code = "import sys, chatsvc.admin.client; assert 'chatsvc.cli' not in sys.modules, 'import cycle'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
