"""Redaction: no token ever reaches a log line, including the access log of a real server."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp.http_exceptions import LineTooLong

from chatsvc import logs
from chatsvc.transport import http_errors
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
    line = (
        'GET /socket.io/?EIO=4&transport=polling "joined room stock:005930" 200 msg 01JABCDEFGHJKMNPQRSTVWXYZ'
    )
    assert logs.redact(line) == line


@pytest.mark.parametrize(
    "line",
    [
        "GET /socket.io/?EIO=4&transport=polling&sid=Zk3x-QpT_a9bYbAAAB HTTP/1.1",
        "GET /socket.io/?sid=Zk3x-QpT_a9bYbAAAB&EIO=4",
        '0{"sid":"Zk3x-QpT_a9bYbAAAB","upgrades":["websocket"]}',
        "{'sid': 'Zk3x-QpT_a9bYbAAAB'}",
    ],
)
def test_redact_engineio_sid(line: str) -> None:
    """Issue 22 item 6: a polling sid is a bearer credential."""
    cleaned = logs.redact(line)
    assert "Zk3x-QpT_a9bYbAAAB" not in cleaned
    assert "***" in cleaned


_HEADER, _PAYLOAD, _SIGNATURE = JWT.split(".")


@pytest.mark.parametrize(
    "line",
    [
        # aiohttp's LineTooLong text: the first 100 bytes of the header value, cut mid-way.
        f"Got more than 8190 bytes when reading: b'Bearer {JWT[:100]}...'.",
        f"Got more than 8190 bytes when reading: b'{JWT[:100]}...'.",
        f"authorization: Bearer {_HEADER}.{_PAYLOAD[:7]}",
        f"Authorization={_PAYLOAD[:40]}",
        f"header authorization: Token {_SIGNATURE}",
        f"cut {_PAYLOAD[:12]}",
        f"cut {_HEADER}.",
    ],
)
def test_redact_partial_tokens(line: str) -> None:
    cleaned = logs.redact(line)
    for fragment in (_HEADER[3:], _PAYLOAD[3:12], _SIGNATURE[:16]):
        assert fragment not in cleaned, cleaned


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


# -- JSON lines --------------------------------------------------------------------------------


def _json_logger(name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    handler.addFilter(logs.RedactingFilter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream, handler


def test_json_lines_carry_fields_context_and_one_line_exceptions() -> None:
    logger, stream, handler = _json_logger("tests.json")
    try:
        logger.info("plain %s", "line")
        logs.bind("sock-1", "alice", {"room": "stock:005930", "text": "hi"})
        logs.bind_request("req-7")
        try:
            raise ValueError(f"bad header b'Bearer {JWT[:60]}'\nsecond line")
        except ValueError:
            logger.exception("failed with %s", f"/socket.io/?sid=SECRETSID&token={JWT}")
        logger.warning('surrogate \udcff and quote " in text')
        logs.bind(None, None)
        logs.bind_request(None)
        logger.info("after")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4, lines
    records = [json.loads(line) for line in lines]
    first, failed, surrogate, after = records
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["level"] == "INFO" and first["logger"] == "tests.json" and first["message"] == "plain line"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert failed["sid"] == "sock-1" and failed["user_id"] == "alice"
    assert failed["room"] == "stock:005930" and failed["request_id"] == "req-7"
    assert failed["level"] == "ERROR"
    assert "Traceback" in failed["exc"] and "second line" in failed["exc"]
    text = stream.getvalue()
    for fragment in ("SECRETSID", _PAYLOAD[:20], JWT[:60]):
        assert fragment not in text
    assert "surrogate" in surrogate["message"]
    assert "sid" not in after and "request_id" not in after


def test_bind_ignores_a_room_that_is_not_a_string() -> None:
    logger, stream, handler = _json_logger("tests.json.room")
    try:
        logs.bind("s", "u", {"room": {"nested": 1}})
        logger.info("x")
        logs.bind("s", "u", ["room"])
        logger.info("y")
        logs.bind(None, None)
    finally:
        logger.removeHandler(handler)
    for line in stream.getvalue().splitlines():
        assert "room" not in json.loads(line)


def test_configure_json() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.configure("INFO", "json")
        assert isinstance(root.handlers[0].formatter, logs.JsonFormatter)
        logs.configure("INFO")
        assert isinstance(root.handlers[0].formatter, logs.TextFormatter)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


# -- a real server in JSON mode, driven over polling --------------------------------------------


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("jsonlogs"), CHATSVC_LOG_LEVEL="DEBUG", CHATSVC_LOG_FORMAT="json"
    ) as running:
        yield running


def _raw_request(port: int, head: bytes) -> bytes:
    """Send raw bytes (an oversize header aiohttp refuses) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(head)
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


async def test_json_server_log_has_no_sid_and_no_token_fragment(json_server: ServerProcess) -> None:
    secret = token("polling-user", pad="x" * 64)
    big = token("oversize-user", pad="y" * 9000)
    assert len(big) > 8190
    url = json_server.url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/socket.io/?EIO=4&transport=polling&token={secret}") as resp:
            body = await resp.text()
        assert resp.status == 200 and body.startswith("0"), body
        eio_sid = json.loads(body[1:])["sid"]
        base = f"{url}/socket.io/?EIO=4&transport=polling&sid={eio_sid}"
        async with http.post(base, data="40") as resp:
            assert resp.status == 200
        async with http.get(base) as resp:
            connected = await resp.text()
        assert connected.startswith("40"), connected
        async with http.post(base, data='421["join",{"room":"jsonlogs"}]') as resp:
            assert resp.status == 200
        async with http.get(base) as resp:
            assert (await resp.text()).startswith("431"), "join ack"
        async with http.get(f"{url}/healthz", headers={"X-Request-Id": "probe-42"}) as resp:
            assert resp.headers["X-Request-Id"] == "probe-42"
        async with http.post(base, data="41") as resp:
            assert resp.status == 200
    for value in (f"Bearer {big}", big):
        answer = _raw_request(
            json_server.port,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: " + value.encode() + b"\r\n\r\n",
        )
        assert answer.split(b"\r\n", 1)[0].endswith(b"400 Bad Request"), answer[:200]

    def lines() -> list[dict[str, object]]:
        return [json.loads(line) for line in json_server.log_text().splitlines() if line.strip()]

    await until(
        lambda: sum("Got more than" in str(r.get("exc", "")) + str(r["message"]) for r in lines()) >= 2,
        "the oversize header errors in the log",
    )
    await until(lambda: any(r.get("request_id") == "probe-42" for r in lines()), "the /healthz access line")
    records = lines()  # every line parses: json.loads raised otherwise
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    polling = [
        r for r in records if r["logger"] == "aiohttp.access" and "transport=polling" in str(r["message"])
    ]
    assert polling and all(r["level"] == "DEBUG" for r in polling), polling
    health = [r for r in records if r.get("request_id") == "probe-42"]
    assert health[0]["level"] == "INFO" and "/healthz" in str(health[0]["message"])
    assert "sid=***" in json.dumps(polling)
    # Events are handled by each connection's worker task (chatsvc.transport.events), not in
    # the POST's request task, so a POST's access line no longer carries who and where; what
    # the handlers log does (test_json_lines_carry_fields_context_and_one_line_exceptions).
    assert not any(r.get("sid") == eio_sid for r in records)
    text = json_server.log_text()
    assert eio_sid not in text
    for jwt_text in (secret, big):
        for part in jwt_text.split("."):
            for start in range(0, len(part) - 12, 12):  # no 12-character run of any part
                assert part[start : start + 12] not in text


def test_driver_warnings_lose_their_traceback_errors_keep_it() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.TextFormatter())
    handler.addFilter(logs.DriverTracebackFilter())
    loggers = [logging.getLogger(name) for name in ("cassandra.cluster", "chatsvc.tests.driver")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        for logger in loggers:
            try:
                raise ConnectionRefusedError(111, "Tried connecting to [('127.0.0.1', 1)]")
            except ConnectionRefusedError:
                logger.warning("[control connection] Error connecting to %s:", "127.0.0.1:1", exc_info=True)
                logger.error("really broken", exc_info=True)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    first = lines[0]
    assert first.endswith(
        "cassandra.cluster: [control connection] Error connecting to 127.0.0.1:1: "
        "ConnectionRefusedError: [Errno 111] Tried connecting to [('127.0.0.1', 1)]"
    ), first
    assert "Traceback" not in lines[1]
    assert stream.getvalue().count("Traceback") == 3  # the driver's error, and both of chatsvc's


def test_bad_request_filter_keeps_one_line_and_bounds_them() -> None:
    now = [0.0]
    bad = http_errors.BadRequestFilter(clock=lambda: now[0])

    def record(exc: BaseException | None, name: str = "aiohttp.server") -> logging.LogRecord:
        info = (type(exc), exc, None) if exc is not None else None
        return logging.LogRecord(
            name, logging.ERROR, __file__, 1, "Error handling request from %s", ("1.2.3.4",), info
        )

    kept = []
    for _ in range(http_errors.BadRequestFilter.per_minute + 3):
        r = record(LineTooLong("Got more than 8190 bytes when reading", "8190"))
        if bad.filter(r):
            kept.append(r)
    assert len(kept) == http_errors.BadRequestFilter.per_minute
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in kept)
    assert "LineTooLong" in kept[0].getMessage() and "1.2.3.4" in kept[0].getMessage()
    now[0] = 61.0
    later = record(LineTooLong("again", "8190"))
    assert bad.filter(later) and "(3 more left out)" in later.getMessage()
    server_bug = record(RuntimeError("a bug of ours"))
    assert bad.filter(server_bug) and server_bug.exc_info is not None  # keeps its traceback
    other = record(LineTooLong("x", "1"), name="aiohttp.access")
    assert bad.filter(other) and other.exc_info is not None


async def test_a_flood_of_unparsable_requests_logs_a_few_lines_and_no_traceback(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with running_server(tmp_path_factory.mktemp("badrequests")) as server:
        big = b"a" * 9000
        for n in range(30):
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + big + b"\r\n\r\n"
            if n % 2:
                head = b"GET /\x00bad HTTP/1.1\r\n" + head
            answer = _raw_request(server.port, head)
            assert answer.split(b"\r\n", 1)[0].endswith(b"400 Bad Request"), answer[:100]
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as resp:
            assert resp.status == 200
        text = server.log_text()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if "aiohttp.server" in line]
    assert 1 <= len(lines) <= http_errors.BadRequestFilter.per_minute + 1, lines
