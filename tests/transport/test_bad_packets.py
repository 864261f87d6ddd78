"""chatsvc.transport.bad_packets, and a client's garbage on both websocket readers (the lean
one with receive_packet's fast path, python-engineio's stock one) and over polling, on an
in-process RecoveringServer: counted, answered where it has an ack id, never a traceback."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chatsvc.transport import bad_packets as bp
from chatsvc.transport.bad_packets import BadPackets, LibraryLogFilter
from chatsvc.transport.sioserver import RecoveringServer, packet_head

WS_PATH = "/socket.io/?EIO=4&transport=websocket"


class _Sock:
    """Stands in for an Engine.IO socket (BadPackets only sets an attribute on it)."""


def test_bad_packets_count_every_one_and_log_once_per_connection(caplog: pytest.LogCaptureFixture) -> None:
    seen: Counter[str] = Counter()
    bad = BadPackets()
    bad.observe = lambda reason: seen.update([reason])
    sock = _Sock()
    with caplog.at_level(logging.INFO, logger=bp.__name__):
        for _ in range(50):
            bad.report(sock, "binary", "binary frame")
    assert seen == {"binary": 50}
    assert len(caplog.records) == 1
    assert "binary frame" in caplog.text and "Traceback" not in caplog.text


def test_bad_packets_log_few_lines_across_many_connections(caplog: pytest.LogCaptureFixture) -> None:
    bad = BadPackets()
    with caplog.at_level(logging.INFO, logger=bp.__name__):
        for _ in range(100):
            bad.report(_Sock(), "too_large", "POST body over the limit")
            bad.report(None, "bad_post", "no length")
    assert len(caplog.records) == 2 * bp.LOG_LINES_PER_WINDOW


def test_bad_packet_reasons_are_a_closed_set() -> None:
    with pytest.raises(ValueError, match="unknown bad packet reason"):
        BadPackets().report(None, "anything a client wrote", "x")


def test_the_library_log_filter_drops_client_garbage_tracebacks_only() -> None:
    seen: Counter[str] = Counter()
    bad = BadPackets()
    bad.observe = lambda reason: seen.update([reason])
    log_filter = LibraryLogFilter(bad)

    def record(msg: str, exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "engineio.server", logging.ERROR, __file__, 1, msg, (), (type(exc), exc, None)
        )

    assert not log_filter.filter(record("Unknown receive error", ValueError("invalid literal")))
    assert not log_filter.filter(record("post request handler error", RecursionError()))
    assert log_filter.filter(record("Unknown receive error", KeyError("a bug")))  # keeps its traceback
    assert log_filter.filter(record("message async handler error", ValueError("a bug")))
    assert seen == {"eio_undecodable": 2}


@pytest.mark.parametrize(
    ("data", "head"),
    [
        ('51-7["message",{}]', ("5", "/", 7)),
        ('5999999-["m"]', ("5", "/", None)),
        ('51-/chat?x=1,12["m"]', ("5", "/chat", 12)),
        ('6/ns,["m"]', ("6", "/ns", None)),
        ("2" + "9" * 40 + "[]", ("2", "/", None)),  # no sane ack id
        ("2\u00b2[]", ("2", "/", None)),  # a Unicode digit is no digit of an id
        ("2", ("2", "/", None)),
        ("", ("", "/", None)),
    ],
)
def test_packet_head_reads_type_namespace_and_ack_id(data: str, head: tuple[str, str, int | None]) -> None:
    assert packet_head(data) == head


# -- both websocket readers, in process --------------------------------------------------


@pytest.fixture(params=["lean-fast-path", "lean-receive", "stock"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RecoveringServer, str]]:
    """A RecoveringServer with an ``echo`` event: lean with handlers inline (receive_packet's
    fast path), lean with async handlers (through AsyncSocket.receive), or python-engineio's
    stock socket."""
    sio = RecoveringServer(async_mode="aiohttp", async_handlers=request.param == "lean-receive")
    sio.eio.lean = request.param != "stock"

    @sio.on("echo")  # type: ignore[misc]
    async def echo(sid: str, data: Any) -> Any:
        return {"ok": True, "echo": data}

    app = web.Application()
    sio.attach(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield sio, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def _ack(ws: aiohttp.ClientWebSocketResponse, ack_id: int) -> Any:
    prefix = f"43{ack_id}["
    while True:
        frame = await ws.receive_str(timeout=5)
        if frame.startswith(prefix):
            return json.loads(frame[len(prefix) - 1 :])[0]


GARBAGE: list[str | bytes] = [
    "",  # empty Engine.IO packet
    "x",  # no type digit
    "9abc",  # no such Engine.IO type
    "0",  # OPEN from a client
    "6",  # NOOP from a client
    "bA",  # bad base64
    "4",  # empty Socket.IO packet
    "4x",  # no Socket.IO type digit
    "49",  # no such Socket.IO type
    "44{}",  # CONNECT_ERROR from a client
    "42[",  # truncated JSON
    "42" + "[" * 5000,  # deeper than the recursion limit
    "42" + "1" * 120 + "[]",  # ack id too long
    '42["echo",' + "1" * 120 + "]",  # an integer python-engineio's JSON refuses
    "42{}",  # event data not a list
    "42[]",  # event without a name
    "42[1]",  # event name not a string
    '42/nope,["echo"]',  # a namespace the socket is not in
    "43[]",  # ack nobody waits for
    "433[1]",  # ack nobody waits for, with an id
    '451-["echo",{"_placeholder":true,"num":0}]',
    '461-3[{"_placeholder":true,"num":0}]',
    b"\x00\x01binary",
    '40{"again":true}',  # CONNECT while connected
]


async def test_garbage_on_a_websocket_is_counted_and_never_logged_with_a_traceback(
    served: tuple[RecoveringServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    sio, base = served
    seen: Counter[str] = Counter()
    sio.eio.bad_packets.observe = lambda reason: seen.update([reason])
    async with aiohttp.ClientSession() as http, http.ws_connect(base + WS_PATH) as ws:
        assert (await ws.receive_str(timeout=5)).startswith("0{")
        await ws.send_str("40")
        assert (await ws.receive_str(timeout=5)).startswith("40{")
        with caplog.at_level(logging.DEBUG):
            for _ in range(3):
                for frame in GARBAGE:
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
            await ws.send_str('4217["echo",{"_placeholder":true,"num":0}]')  # missing "-": plain event
            assert (await _ack(ws, 17))["echo"] == {"_placeholder": True, "num": 0}
            await ws.send_str('451-18["echo",{"_placeholder":true,"num":0}]')
            refused = await _ack(ws, 18)
            await ws.send_str('4219{"not":"a list"}')
            shape = await _ack(ws, 19)
            await ws.send_str('4220["echo","still here"]')
            assert (await _ack(ws, 20))["echo"] == "still here"
    assert refused["ok"] is False and refused["error"]["code"] == "invalid_payload"
    assert shape["ok"] is False and shape["error"]["code"] == "invalid_payload"
    assert sum(seen.values()) >= 3 * (len(GARBAGE) - 1), seen  # each one counted (a CONNECT again: once)
    assert {
        "eio_undecodable",
        "eio_unexpected",
        "sio_undecodable",
        "sio_unexpected",
        "binary",
        "bad_namespace",
    } <= set(seen), seen
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 2, [r.getMessage() for r in warnings]


async def test_packets_after_a_close_in_the_same_frame_run_or_batch_are_dropped(
    served: tuple[RecoveringServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A CLOSE ends the Engine.IO session; what follows it (in the same POST, or frames the
    reader still takes) must not reach python-socketio's handlers, which need the session's
    environ (upstream: a KeyError traceback per packet)."""
    _sio, base = served
    with caplog.at_level(logging.DEBUG):
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(base + WS_PATH) as ws:
                assert (await ws.receive_str(timeout=5)).startswith("0{")
                for frame in ("1", "40", '42["echo"]', "40/other,"):
                    await ws.send_str(frame)
            polling = base + "/socket.io/?EIO=4&transport=polling"
            async with http.get(polling) as resp:
                sid = json.loads((await resp.text())[1:])["sid"]
            async with http.post(f"{polling}&sid={sid}", data='1\x1e40\x1e42["echo"]') as resp:
                assert resp.status == 200
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


def test_the_library_log_filter_redacts_session_ids() -> None:
    log_filter = LibraryLogFilter(BadPackets())
    record = logging.LogRecord(
        "engineio.server",
        logging.ERROR,
        __file__,
        1,
        "Invalid session Ab-cd_12 (further occurrences)",
        (),
        None,
    )
    assert log_filter.filter(record)
    assert record.getMessage() == "Invalid session <redacted> (further occurrences)"
