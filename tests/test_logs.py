"""Redaction: no token ever reaches a log line, including the access log of a real server."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from chatsvc import logs
from tests.support.clients import TRANSPORTS, ClientPool, running_server, until
from tests.support.servers import ServerProcess
from tests.support.tokens import token

JWT = token("alice")


@pytest.mark.parametrize(
    "line",
    [
        f"GET /socket.io/?EIO=4&transport=polling&token={JWT}",
        f"GET /socket.io/?token={JWT}&EIO=4",
        f"GET /socket.io/?TOKEN={JWT}",
        f"Authorization: Bearer {JWT}",
        f"authorization: bearer {JWT}",
        f"auth payload {{'token': '{JWT}'}}",
        f"raw {JWT} in the middle",
    ],
)
def test_redact(line: str) -> None:
    cleaned = logs.redact(line)
    assert JWT not in cleaned
    for part in JWT.split("."):
        assert part not in cleaned
    assert "***" in cleaned


def test_redact_keeps_ordinary_text() -> None:
    line = 'GET /socket.io/?EIO=4&transport=polling&sid=abc "joined room stock:005930" 200'
    assert logs.redact(line) == line


def test_redact_opaque_tokens_in_the_query() -> None:
    assert logs.redact("GET /?token=not-a-jwt-but-secret&x=1") == "GET /?token=***&x=1"


def test_filter_redacts_formatted_arguments() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RedactingFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("handshake from %s with %s", "127.0.0.1", f"/socket.io/?token={JWT}")
        logger.warning("plain %d", 5)
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert JWT not in output
    assert "token=***" in output
    assert "plain 5" in output


def test_configure_installs_one_redacting_handler() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.configure("DEBUG")
        assert len(root.handlers) == 1
        assert any(isinstance(f, logs.RedactingFilter) for f in root.handlers[0].filters)
        assert root.level == logging.DEBUG
        assert logging.getLogger("engineio.server").level == logging.WARNING
        logs.configure("ERROR")
        assert logging.getLogger("socketio.server").level == logging.ERROR
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


# -- a real server's log file ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("logs"), CHATSVC_LOG_LEVEL="DEBUG") as running:
        yield running


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_query_token_never_logged(server: ServerProcess, transport: str) -> None:
    secret_tokens = [token(f"logged-{transport}-{i}") for i in range(3)]
    expired = token("old", ttl=-60)
    async with ClientPool() as clients:
        ok = await clients.connect(server.url, secret_tokens[0], where="query", transport=transport)
        await ok.ok("join", {"room": "logs"})
        await clients.connect(server.url, secret_tokens[1], where="header", transport=transport)
        await clients.connect(server.url, secret_tokens[2], where="auth", transport=transport)
        await clients.refused(server.url, expired, where="query", transport=transport)
        await clients.refused(server.url, "opaque-garbage-token", where="query", transport=transport)
    marker = f"/socket.io/?token=***&transport={transport}"
    # The access line is written when the request ends.
    await until(lambda: marker in server.log_text(), f"{marker!r} in the server log")
    text = server.log_text()
    for secret in [*secret_tokens, expired, "opaque-garbage-token"]:
        assert secret not in text
        assert secret.split(".")[-1] not in text
    assert "Traceback" not in text
