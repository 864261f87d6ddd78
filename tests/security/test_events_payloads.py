"""Issue 22, items 4 and 8 against a real server over both transports: odd but validly
signed tokens are ``token_invalid`` at connect and at ``refresh``; lone surrogates and
JSON text nested past the parser's depth are ``invalid_payload``; never ``internal``, and
no traceback in the log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.clients import TRANSPORTS, assert_error_ack, running_server
from tests.support.raw_socketio import RawSocket
from tests.support.servers import TEST_JWT_SECRET, ServerProcess
from tests.support.tokens import token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("payloads"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def signed_json(payload: str) -> str:
    """HS256 with the test secret over a payload given as JSON text, exactly as written."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = part(b'{"alg":"HS256","typ":"JWT"}')
    signing_input = f"{header}.{part(payload.encode())}"
    signature = hmac.new(TEST_JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def odd_tokens() -> dict[str, str]:
    later = int(time.time()) + 600
    many = "[" + ",".join(['"x"'] * 1000) + "]"
    return {
        "exp-string": signed_json(f'{{"sub":"a","exp":"{later}"}}'),
        "exp-bool": signed_json('{"sub":"a","exp":true}'),
        "exp-4000-digits": signed_json('{"sub":"a","exp":' + "9" * 4000 + "}"),
        "exp-1e400": signed_json('{"sub":"a","exp":1e400}'),
        "nbf-string": signed_json(f'{{"sub":"a","exp":{later},"nbf":"1"}}'),
        "iat-string": signed_json(f'{{"sub":"a","exp":{later},"iat":"1"}}'),
        "sub-lone-surrogate": signed_json(f'{{"sub":"\\ud800","exp":{later}}}'),
        "name-number": signed_json(f'{{"sub":"a","name":12,"exp":{later}}}'),
        "roles-huge": signed_json(f'{{"sub":"a","roles":{many},"exp":{later}}}'),
        "rooms-huge": signed_json(f'{{"sub":"a","rooms":{many},"exp":{later}}}'),
        "not-ascii": "\ud800" + token("a"),
    }


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_odd_tokens_are_token_invalid(
    server: ServerProcess, session: aiohttp.ClientSession, transport: str
) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    for name, odd in odd_tokens().items():
        raw = await RawSocket.open(session, server.url, transport)
        try:
            refused = await raw.connect({"token": odd})
            assert refused.get("data", refused).get("code") == "token_invalid", (name, refused)
        finally:
            await raw.close()
    raw = await RawSocket.open(session, server.url, transport)
    try:
        assert set(await raw.connect({"token": token(user)})) == {"sid"}
        for name, odd in odd_tokens().items():
            ack = await raw.call("refresh", {"token": odd})
            assert ack["ok"] is False and ack["error"]["code"] in {"token_invalid", "forbidden"}, (name, ack)
            assert_error_ack(ack)
        room = f"r{uuid.uuid4().hex[:8]}"
        assert (await raw.call("join", {"room": room}))["ok"] is True  # the socket is as it was
    finally:
        await raw.close()
    assert "Traceback" not in server.log_text()


def bad_payloads(room: str) -> list[tuple[str, Any]]:
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    return [
        ("message", {"room": room, "text": "hi \ud800"}),
        ("message", {"room": room, "text": "\udfff"}),
        ("message", {"room": room, "text": "ok", "client_msg_id": "c\ud800"}),
        ("join", {"room": "lobby\ud800"}),
        ("join", {"room": "\ud800"}),
        ("edit", {"room": room, "id": "0" * 26, "text": "\ud800"}),
        ("history", {"room": "\ud83d"}),
        ("message", json.dumps({"room": room, "text": "x"}).replace("x", "\\ud800")),  # JSON text
        ("message", '{"room":"' + room + '","text":"\ud800"}'),  # lone surrogate in the text itself
        ("message", deep),
        ("join", "[" * 20000 + "]" * 20000),
        ("refresh", {"token": "\ud800"}),
        ("message", {"room": room, "text": {"nested": [[[[[]]]]]}}),
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_surrogates_and_deep_json_are_invalid_payload(
    server: ServerProcess, session: aiohttp.ClientSession, transport: str
) -> None:
    user, room = f"u{uuid.uuid4().hex[:8]}", f"r{uuid.uuid4().hex[:8]}"
    raw = await RawSocket.open(session, server.url, transport)
    try:
        assert set(await raw.connect({"token": token(user)})) == {"sid"}
        assert (await raw.call("join", {"room": room}))["ok"] is True
        for event, payload in bad_payloads(room):
            ack = await raw.call(event, payload)
            assert_error_ack(ack)
            assert ack["error"]["code"] in {"invalid_payload", "token_invalid"}, (event, ack)
        sent = await raw.call("message", {"room": room, "text": "still fine \U0001f600"})
        assert sent["ok"] is True, sent
    finally:
        await raw.close()
    assert "Traceback" not in server.log_text()
