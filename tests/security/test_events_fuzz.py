"""A bounded, seeded fuzz of client events and JWT claim sets against a real server, over
both transports with python-socketio's client: random event names (declared, reserved,
method names, odd Unicode), payload shapes (nested, huge, odd types, lone surrogates, JSON
text nested past the parser) and claim sets signed with the test secret. Every answer is a
well-formed ack or connect_error, never ``internal``; the log holds no traceback; a normal
client still works afterwards."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.support.clients import TRANSPORTS, ClientPool, assert_error_ack, running_server, until
from tests.support.servers import TEST_JWT_SECRET, ServerProcess
from tests.support.tokens import token

SEED = 22
TOKENS = 40  # claim sets per transport
EVENTS = 150  # events per transport
RSS_SLACK_MIB = 48
CONNECT_CODES = {"token_invalid", "token_expired", "token_missing", "forbidden", "too_many_connections"}
CLIENT_EVENTS = ["join", "leave", "message", "typing", "history", "read", "edit", "delete", "refresh"]
ODD_EVENTS = [
    "connect",
    "disconnect",
    "connect_error",
    "disconnecting",
    "newListener",
    "removeListener",
    "on_connect",
    "end_session",
    "kick",
    "_join",
    "__class__",
    "trigger_event",
    "*",
    "",
    "join\ud800",
    "\udfff",
    "x" * 300,
    "JOIN",
    "message ",
]
KEYS = ["room", "text", "client_msg_id", "since", "before", "limit", "id", "message_id", "typing", "token"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("fuzz"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


@pytest.fixture
async def clients() -> AsyncIterator[ClientPool]:
    async with ClientPool() as pool:
        yield pool


def signed_json(payload: str) -> str:
    """HS256 with the test secret over a payload given as JSON text, exactly as written."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = part(b'{"alg":"HS256","typ":"JWT"}')
    signing_input = f"{header}.{part(payload.encode())}"
    signature = hmac.new(TEST_JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def random_claims(rng: random.Random) -> str:
    """A token whose claims are drawn from valid and odd JSON fragments."""
    now = int(time.time())
    many = "[" + ",".join(['"x"'] * rng.choice([17, 300, 1200])) + "]"
    choices = {
        "sub": ['"fuzz"', '"\\ud800"', "7", "null", '""', '"' + "s" * 200 + '"', '["a"]', "true"],
        "exp": [
            str(now + 600),
            f'"{now + 600}"',
            "true",
            "9" * 4000,
            "-" + "9" * 4000,
            "1e400",
            "-1e400",
            "-1",
            f"{now + 600}.5",
            "null",
            "{}",
            "[1]",
            "1e11",
        ],
        "nbf": [str(now - 10), f'"{now}"', "false", "1e400", str(now + 3600), "9" * 4000],
        "iat": [str(now), f'"{now}"', "true", "1e400", "[]", str(now + 3600)],
        "name": ['"Fuzz"', "7", '"\\udfff"', '{"a":1}', "null", '"' + "n" * 3000 + '"'],
        "roles": ['["admin"]', '"admin"', "[1]", many, '[["x"]]', '["\\ud800"]', "{}"],
        "rooms": ['["lobby"]', '["stock:*"]', "[]", many, '"lobby"', "[null]", '["' + "r" * 100 + '"]'],
        "aud": ['"x"', "[]", "7"],
        "iss": ['"x"', "null"],
    }
    parts = []
    for claim, values in choices.items():
        if (claim in {"sub", "exp"} and rng.random() < 0.9) or rng.random() < 0.4:
            parts.append(f'"{claim}":{rng.choice(values)}')
    return signed_json("{" + ",".join(parts) + "}")


def random_string(rng: random.Random) -> str:
    return rng.choice(
        [
            "lobby",
            "stock:005930",
            "",
            " ",
            "\ud800",
            "a\udfffb",
            "\U0001f600" * rng.randint(1, 50),
            "x" * rng.randint(60, 70),
            "x" * rng.randint(4000, 5000),
            "0" * 26,
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "null",
            "{}",
            '{"room":"lobby","text":"hi"}',
            '{"a":' * 3000 + "1" + "}" * 3000,
            "[" * 10000 + "]" * 10000,
            "[" + "9" * 5000 + "]",
            '{"room":"\\ud800"}',
        ]
    )


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "str", "int", "big", "float", "bool", "none"]
    if depth < 12:
        kinds += ["list", "dict", "payload"]
    kind = rng.choice(kinds)
    if kind == "str":
        return random_string(rng)
    if kind == "int":
        return rng.choice([0, -1, 1, 50, 100, 101, 2**31, -(2**63)])
    if kind == "big":
        return int("9" * rng.randint(20, 100))  # python-engineio drops a packet with longer ones
    if kind == "float":
        return rng.choice([0.5, -0.0, 1e308, 3.14])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "dict":
        return {random_string(rng)[:20]: random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return random_payload(rng, depth + 1)


def random_payload(rng: random.Random, depth: int = 0) -> Any:
    """Mostly dicts with the protocol's keys and random values; sometimes anything."""
    if rng.random() < 0.2:
        return random_value(rng, depth + 1)
    return {key: random_value(rng, depth + 1) for key in rng.sample(KEYS, rng.randint(0, 5))}


def rss_mib(server: ServerProcess) -> float:
    """The server process's resident memory."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def connections(server: ServerProcess) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        found = re.search(r"^chatsvc_connections (\S+)$", resp.read().decode(), re.MULTILINE)
    return float(found.group(1)) if found else -1.0


def assert_answer(ack: Any, what: Any) -> None:
    assert isinstance(ack, dict), (what, ack)
    if ack.get("ok") is not True:
        assert_error_ack(ack)
        assert ack["error"]["code"] != "internal", (what, ack)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_fuzzed_claims_and_events(server: ServerProcess, clients: ClientPool, transport: str) -> None:
    rng = random.Random(f"{SEED}-{transport}")
    baseline = rss_mib(server)
    for _ in range(TOKENS):
        tok = random_claims(rng)
        client = clients.new()
        try:
            await client.connect(server.url, tok, transport=transport)
        except socketio.exceptions.ConnectionError:
            data = client.connect_errors[-1]["data"]
            assert set(data) == {"code", "message"} and data["code"] in CONNECT_CODES, data
        else:
            await client.disconnect()

    user = f"fuzz{uuid.uuid4().hex[:6]}"
    fuzzer = await clients.connect(server.url, token(user), transport=transport)
    await fuzzer.ok("join", {"room": "lobby"})
    for _ in range(EVENTS):
        event = rng.choice(CLIENT_EVENTS) if rng.random() < 0.7 else rng.choice(ODD_EVENTS)
        payload = random_payload(rng)
        if event == "refresh" and rng.random() < 0.5:
            payload = {"token": random_claims(rng)}
        if len(json.dumps(payload)) > 60_000:
            continue  # past the transport's bound: that is the frame fuzzer's business
        ack = await fuzzer.call(event, payload)
        assert_answer(ack, (event, payload if len(repr(payload)) < 300 else repr(payload)[:300]))
    assert fuzzer.sio.connected, "the fuzzing client was disconnected"

    # A normal pair of clients still chats.
    room = f"after-{uuid.uuid4().hex[:8]}"
    alice = await clients.connect(server.url, token(f"a{user}"), transport=transport)
    bob = await clients.connect(server.url, token(f"b{user}"))
    await alice.ok("join", {"room": room})
    await bob.ok("join", {"room": room})
    sent = await alice.ok("message", {"room": room, "text": "still works"})
    assert (await bob.next("message", where=lambda m: m["id"] == sent["message"]["id"]))[
        "text"
    ] == "still works"
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]

    # Once the sockets are gone, so is what they held (a loose bound: CPython keeps some).
    for client in (fuzzer, alice, bob):
        await client.disconnect()
    await until(lambda: connections(server) == 0, "every socket closed", within=15)
    after = rss_mib(server)
    print(f"server RSS {baseline:.1f} MiB before, {after:.1f} MiB after ({transport})")
    assert after < baseline + RSS_SLACK_MIB, (baseline, after)
