"""Where the token comes from at connect: auth payload, Authorization header, ?token=."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chatsvc.auth.handshake import MAX_TOKEN_LENGTH, token_from_handshake
from chatsvc.errors import TokenInvalid, TokenMissing
from tests.support.clients import TOKEN_PLACES, TRANSPORTS, ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token

# -- unit ------------------------------------------------------------------------------------


def env(header: str | None = None, query: str = "") -> dict[str, Any]:
    environ: dict[str, Any] = {"QUERY_STRING": query}
    if header is not None:
        environ["HTTP_AUTHORIZATION"] = header
    return environ


@pytest.mark.parametrize(
    ("environ", "auth"),
    [
        (env(), {"token": "abc"}),
        (env(), {"token": "Bearer abc"}),
        (env(), {"token": "bearer   abc  "}),
        (env(), "abc"),
        (env(), "Bearer abc"),
        (env("Bearer abc"), None),
        (env("BEARER abc"), {}),
        (env(query="EIO=4&transport=polling&token=abc"), None),
        (env(query="token=Bearer%20abc"), None),
    ],
    ids=[
        "auth-raw",
        "auth-bearer",
        "auth-bearer-lowercase-spaces",
        "auth-string",
        "auth-string-bearer",
        "header",
        "header-uppercase",
        "query",
        "query-bearer",
    ],
)
def test_token_places(environ: dict[str, Any], auth: Any) -> None:
    assert token_from_handshake(environ, auth) == "abc"


def test_precedence_auth_then_header_then_query() -> None:
    environ = env("Bearer from-header", "token=from-query")
    assert token_from_handshake(environ, {"token": "from-auth"}) == "from-auth"
    assert token_from_handshake(environ, None) == "from-header"
    assert token_from_handshake(env(query="token=from-query"), {"token": ""}) == "from-query"


@pytest.mark.parametrize(
    ("environ", "auth"),
    [
        (env(), None),
        (env(), {}),
        (env(), {"token": ""}),
        (env(), {"token": "Bearer "}),
        (env(), "   "),
        (env(), 42),
        (env("Basic dXNlcjpwYXNz"), None),
        (env("Bearer "), None),
        (env(query="token="), None),
        (env(query="other=1"), None),
    ],
)
def test_missing(environ: dict[str, Any], auth: Any) -> None:
    with pytest.raises(TokenMissing) as info:
        token_from_handshake(environ, auth)
    assert info.value.code == "token_missing"


@pytest.mark.parametrize("value", [42, ["a"], {"x": 1}, True])
def test_non_string_auth_token(value: Any) -> None:
    with pytest.raises(TokenInvalid):
        token_from_handshake(env(), {"token": value})


def test_oversized_token() -> None:
    with pytest.raises(TokenInvalid):
        token_from_handshake(env(), {"token": "a" * (MAX_TOKEN_LENGTH + 1)})
    assert token_from_handshake(env(), {"token": "a" * MAX_TOKEN_LENGTH})


# -- integration -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("handshake")) as running:
        yield running


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("where", TOKEN_PLACES)
async def test_connect_with_token(
    server: ServerProcess, clients: ClientPool, where: str, transport: str
) -> None:
    client = await clients.connect(server.url, token(f"u-{where}"), where=where, transport=transport)
    assert client.transport == transport
    ack = await client.ok("join", {"room": f"hs-{where}-{transport}"})
    assert ack["online"] == 1
    sent = await client.ok("message", {"room": ack["room"], "text": "hi"})
    assert sent["message"]["user"] == {"id": f"u-{where}", "name": f"U-{where.title()}"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_non_string_token_in_auth(server: ServerProcess, clients: ClientPool, transport: str) -> None:
    data = await clients.refused(server.url, None, auth={"token": 12345}, transport=transport)
    assert data["code"] == "token_invalid"


async def test_auth_token_wins_over_a_bad_header(server: ServerProcess, clients: ClientPool) -> None:
    client = await clients.connect(
        server.url, token("winner"), where="auth", headers={"Authorization": "Bearer garbage"}
    )
    assert (await client.ok("join", {"room": "precedence"}))["ok"]
