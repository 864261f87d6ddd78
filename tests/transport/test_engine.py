"""Contract test for chatsvc.transport's Engine.IO server (engine, frames, lean_socket,
timers, http_state): python-engineio's and aiohttp's internals it relies on are still there
and still behave as it assumes (their sources are hash-pinned in chatsvc.transport.pins,
checked by test_pins.py).

If this fails after an upgrade, re-read the module's docstring against the new sources
before touching the pins; do not just update the expected values.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from aiohttp import web
from aiohttp._websocket.models import WSMsgType
from aiohttp._websocket.writer import WebSocketWriter
from aiohttp.test_utils import TestServer
from engineio import async_socket, base_socket
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

from chatsvc.transport import engine as internals
from chatsvc.transport import http_state
from chatsvc.transport.engine import EngineIOServer
from chatsvc.transport.frames import WRITE_HIGH_WATER, clock, frame, frames
from chatsvc.transport.lean_socket import BoundedQueue, LeanQueue, receive_packet
from chatsvc.transport.sioserver import RecoveringServer
from chatsvc.transport.timers import CoarseTimers

WS_PATH = "/engine.io/?EIO=4&transport=websocket"
POLL_PATH = "/engine.io/?EIO=4&transport=polling"


def test_engineio_attributes_and_signatures() -> None:
    stock = engineio.AsyncServer(async_mode="aiohttp")
    assert stock._async["websocket"] is eio_aiohttp.WebSocket
    assert list(inspect.signature(eio_aiohttp.WebSocket.__init__).parameters) == ["self", "handler", "server"]
    assert hasattr(async_socket.AsyncSocket, "_websocket_handler")
    sock = async_socket.AsyncSocket(stock, "sid")
    for name in ("queue", "closed", "closing", "upgraded", "upgrading", "last_ping", "sid"):
        assert hasattr(sock, name), name
    assert isinstance(sock.queue, asyncio.Queue)
    assert hasattr(asyncio.Queue(), "_getters")
    assert isinstance(stock.sockets, dict)
    assert isinstance(stock.ping_timeout, int | float)
    # python-socketio builds its engine.io server through this hook (the app's server
    # overrides it): the broadcast path's fast path needs an EngineIOServer there.
    assert "self._engineio_server_class()(" in inspect.getsource(socketio.base_server.BaseServer.__init__)
    sio = RecoveringServer(async_mode="aiohttp")
    assert isinstance(sio.eio, EngineIOServer)
    # Our driver replaces only this server's websocket class, not the module-level dict.
    assert sio.eio._async["websocket"] is internals._TrackedWebSocket
    assert eio_aiohttp._async["websocket"] is eio_aiohttp.WebSocket


def test_aiohttp_attributes() -> None:
    assert "_writer" in web.WebSocketResponse.__annotations__ or hasattr(web.WebSocketResponse, "_writer")
    writer = WebSocketWriter(Protocol(), Transport())  # type: ignore[arg-type]
    for name in ("transport", "_closing", "compress"):
        assert hasattr(writer, name), name


class Transport:
    """Records writes, like an asyncio transport with nothing buffered."""

    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class Protocol:
    _paused = False


@pytest.mark.parametrize(
    "payload",
    [
        *[
            "",
            "4",
            '42["message",{"text":"héllo"}]',
            "x" * 125,
            "x" * 126,
            "é" * 40000,
            "x" * 65535,
            "x" * 70000,
        ],
        *[b"", b"\x00\x01", b"y" * 300, b"z" * 65536],
    ],
)
async def test_frame_bytes_match_aiohttp(payload: str | bytes) -> None:
    transport = Transport()
    writer = WebSocketWriter(Protocol(), transport)  # type: ignore[arg-type]
    if isinstance(payload, str):
        await writer.send_frame(payload.encode("utf-8"), WSMsgType.TEXT)
    else:
        await writer.send_frame(payload, WSMsgType.BINARY)
    assert frame(payload) == bytes(transport.written)


def test_frames_encode_engineio_packets_in_order() -> None:
    packets = [
        eio_packet.Packet(eio_packet.MESSAGE, '2["a"]'),
        eio_packet.Packet(eio_packet.MESSAGE, b"\x01"),
    ]
    assert frames(packets) == frame('42["a"]') + frame(b"\x01")


# -- against a real engine.io server and websocket client ------------------------------------


@dataclass
class Harness:
    eio: EngineIOServer
    http: aiohttp.ClientSession
    base: str

    def socket(self) -> Any:
        (sock,) = self.eio.sockets.values()
        return sock

    async def parked(self, sid: str) -> None:
        """Wait until the socket's writer waits on an empty queue."""
        sock = self.eio.sockets[sid]
        for _ in range(200):
            queue = sock.queue
            idle = queue.parked() if isinstance(queue, LeanQueue) else bool(queue._getters)
            if queue.empty() and idle and self.eio.websockets.get(sid) is not None:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the websocket writer never parked")


async def open_ws(h: Harness, *, compress: int = 0) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await h.http.ws_connect(h.base + WS_PATH, compress=compress)
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0{")
    return ws, json.loads(opened[1:])["sid"]


@contextlib.asynccontextmanager
async def serving(eio: EngineIOServer) -> AsyncIterator[Harness]:
    """``eio`` on a loopback aiohttp test server, with a client session for it."""
    app = web.Application()
    eio.attach(app)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Harness(eio, http, str(server.make_url("")).rstrip("/"))
    finally:
        await server.close()


@pytest.fixture(params=[True, False], ids=["lean", "stock-socket"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    eio = EngineIOServer(async_mode="aiohttp", ping_interval=20, ping_timeout=20)
    eio.lean = request.param  # frame-once must hold with python-engineio's own socket too
    eio.websocket_compression = False  # as chatsvc: the client's deflate offer is declined
    async with serving(eio) as h:
        yield h


async def test_idle_websocket_gets_the_frame_written(harness: Harness) -> None:
    ws, sid = await open_ws(harness)
    await harness.parked(sid)
    assert harness.eio.write_frame(sid, frames([eio_packet.Packet(eio_packet.MESSAGE, "hi")]), clock())
    assert await ws.receive_str(timeout=5) == "4hi"
    await ws.close()
    for _ in range(200):
        if sid not in harness.eio.websockets:
            break
        await asyncio.sleep(0.005)
    assert sid not in harness.eio.websockets  # forgotten when the handler ends
    assert not harness.eio.write_frame(sid, frame("4late"), clock())


async def test_order_is_kept_at_every_step_of_the_writer(harness: Harness) -> None:
    """A packet queued just before a direct write reaches the client first, however far the
    writer task has got with it when the write is attempted."""
    ws, sid = await open_ws(harness)
    expected: list[str] = []
    for steps in range(12):
        await harness.parked(sid)
        await harness.eio.send_packet(sid, eio_packet.Packet(eio_packet.MESSAGE, f"queued{steps}"))
        expected.append(f"4queued{steps}")
        for _ in range(steps):
            await asyncio.sleep(0)
        direct = f"4direct{steps}"
        if not harness.eio.write_frame(sid, frame(direct), clock()):
            await harness.eio.send_packet(sid, eio_packet.Packet(eio_packet.MESSAGE, direct[1:]))
        expected.append(direct)
    got = [await ws.receive_str(timeout=5) for _ in expected]
    assert got == expected
    # The queue path was really exercised (pending queue), and so was the direct one.
    await harness.parked(sid)
    await harness.eio.send_packet(sid, eio_packet.Packet(eio_packet.MESSAGE, "pending"))
    assert not harness.eio.write_frame(sid, frame("4x"), clock())
    assert await ws.receive_str(timeout=5) == "4pending"
    await harness.parked(sid)
    assert harness.eio.write_frame(sid, frame("4y"), clock())
    assert await ws.receive_str(timeout=5) == "4y"
    await ws.close()


async def test_write_frames_writes_the_idle_and_returns_the_rest_in_order(harness: Harness) -> None:
    (ws_a, a), (ws_b, b) = await open_ws(harness), await open_ws(harness)
    await harness.parked(a)
    await harness.parked(b)
    await harness.eio.send_packet(b, eio_packet.Packet(eio_packet.MESSAGE, "pending"))
    left = harness.eio.write_frames(["gone", a, b], frame("4all"), clock())
    assert left == ["gone", b]  # unknown, and packets pending: for the caller to queue
    assert await ws_a.receive_str(timeout=5) == "4all"
    assert await ws_b.receive_str(timeout=5) == "4pending"
    await ws_a.close()
    await ws_b.close()


async def test_a_single_send_is_written_at_once_on_an_idle_websocket(harness: Harness) -> None:
    """What python-socketio sends one socket (an ack) goes straight to the transport when it
    may, and behind what is queued when it may not: same bytes, same order either way."""
    ws, sid = await open_ws(harness)
    await harness.parked(sid)
    queue = harness.eio.sockets[sid].queue
    await harness.eio.send(sid, '31["ack"]')
    assert queue.empty()  # nothing queued
    if isinstance(queue, LeanQueue):
        assert queue.parked()  # and no writer woken
    assert await ws.receive_str(timeout=5) == '431["ack"]'
    await harness.eio.send(sid, b"\x01binary")
    assert await ws.receive_bytes(timeout=5) == b"\x01binary"
    # Something queued and not yet written: the send queues behind it.
    await harness.parked(sid)
    await harness.eio.send_packet(sid, eio_packet.Packet(eio_packet.MESSAGE, "first"))
    await harness.eio.send(sid, "second")
    assert [await ws.receive_str(timeout=5) for _ in range(2)] == ["4first", "4second"]
    await ws.close()


async def test_polling_and_upgrading_sockets_take_the_queue(harness: Harness) -> None:
    async with harness.http.get(harness.base + POLL_PATH) as resp:
        sid = json.loads((await resp.text())[1:])["sid"]
    sock = harness.eio.sockets[sid]

    async def poll() -> str:
        async with harness.http.get(harness.base + POLL_PATH + f"&sid={sid}") as resp:
            return await resp.text()

    polling = asyncio.ensure_future(poll())
    for _ in range(200):
        if sock.queue._getters:
            break
        await asyncio.sleep(0.005)
    # A long-poll waits on the queue exactly as a parked websocket writer would.
    assert sock.queue.empty() and sock.queue._getters
    assert not harness.eio.write_frame(sid, frame("4poll"), clock())
    ws = await harness.http.ws_connect(harness.base + WS_PATH + f"&sid={sid}")
    for _ in range(200):
        if sock.upgrading:
            break
        await asyncio.sleep(0.005)
    assert sock.upgrading and sock.queue._getters and sid in harness.eio.websockets
    assert not harness.eio.write_frame(sid, frame("4upgrading"), clock())
    await ws.send_str("2probe")
    assert await ws.receive_str(timeout=5) == "3probe"
    assert await asyncio.wait_for(polling, 5) == "6"  # the upgrade ends the long-poll (NOOP)
    await ws.send_str("5")
    for _ in range(200):
        if sock.upgraded and not sock.upgrading:
            break
        await asyncio.sleep(0.005)
    await harness.parked(sid)
    assert harness.eio.write_frame(sid, frame("4upgraded"), clock())
    assert await ws.receive_str(timeout=5) == "4upgraded"
    await ws.close()


async def test_compressed_back_pressured_closing_and_timed_out_sockets_take_the_queue(
    harness: Harness,
) -> None:
    ws, sid = await open_ws(harness)
    await harness.parked(sid)
    response = harness.eio.websockets[sid]
    transport = response._writer.transport

    class Full:
        def __getattr__(self, name: str) -> Any:
            return getattr(transport, name)

        def get_write_buffer_size(self) -> int:
            return WRITE_HIGH_WATER

    response._writer.transport = Full()
    assert not harness.eio.write_frame(sid, frame("4full"), clock())
    response._writer.transport = transport
    response._writer.compress = 15
    assert not harness.eio.write_frame(sid, frame("4deflate"), clock())
    response._writer.compress = 0
    sock = harness.eio.sockets[sid]
    saved, sock.last_ping = sock.last_ping, clock()  # a ping went out and its pong is overdue:
    assert not harness.eio.write_frame(sid, frame("4late"), clock() + harness.eio.ping_timeout + 1)
    sock.last_ping = saved
    assert harness.eio.write_frame(sid, frame("4ok"), clock())
    assert await ws.receive_str(timeout=5) == "4ok"
    sock.closing = True
    assert not harness.eio.write_frame(sid, frame("4closing"), clock())
    sock.closing = False
    await ws.close()


async def test_negotiated_compression_takes_the_queue() -> None:
    eio = EngineIOServer(async_mode="aiohttp")
    async with serving(eio) as h:  # websocket_compression: the client's deflate offer is accepted
        ws, sid = await open_ws(h, compress=15)
        assert ws.compress == 15
        await h.parked(sid)
        assert not eio.write_frame(sid, frame("4x"), clock())
        await ws.close()


# -- the lean socket: what it replaces, pinned by source ----------------------------------


def test_sockets_get_their_queue_and_ping_through_the_server() -> None:
    # BaseSocket.__init__ asks the server for the queue; schedule_ping for a background task.
    assert "self.server.create_queue()" in inspect.getsource(base_socket.BaseSocket.__init__)
    assert "self.server.start_background_task(self._send_ping)" in inspect.getsource(
        async_socket.AsyncSocket.schedule_ping
    )
    lean = EngineIOServer(async_mode="aiohttp")
    assert isinstance(async_socket.AsyncSocket(lean, "s").queue, LeanQueue)
    lean.lean = False
    # python-engineio's own asyncio.Queue, bounded as the lean one is (a security bound).
    assert type(async_socket.AsyncSocket(lean, "s").queue) is BoundedQueue


async def test_lean_queue_behaves_like_asyncio_queue() -> None:
    q = LeanQueue()
    assert q.empty() and q.qsize() == 0 and not q.full() and q.maxsize == 0
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    await q.put(1)
    q.put_nowait(2)
    assert q.qsize() == 2 and await q.get() == 1 and q.get_nowait() == 2 and q._items is None
    joined = asyncio.ensure_future(q.join())
    await asyncio.sleep(0)
    assert not joined.done()
    q.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    q.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError, match="too many"):
        q.task_done()
    await asyncio.wait_for(q.join(), 1)  # nothing unfinished: returns at once


async def test_lean_queue_hands_items_to_waiting_getters_and_never_loses_one() -> None:
    q = LeanQueue()
    # python-engineio's long-poll: wait_for(queue.get(), t); a future, so no task is made.
    timed_out = asyncio.ensure_future(asyncio.wait_for(q.get(), 0.01))
    with pytest.raises(TimeoutError):
        await timed_out
    waiting = q.get()
    assert q.parked()
    q.put_nowait("a")  # skips the timed-out getter, goes to the waiting one
    assert not q.parked() and await waiting == "a" and q.empty()
    cancelled = q.get()
    cancelled.cancel()
    q.put_nowait("b")
    assert await q.get() == "b"  # not given to the cancelled getter


async def test_lean_queue_wakes_an_attached_writer_once_per_run() -> None:
    q = LeanQueue()
    q.put_nowait("early")
    wakes: list[int] = []
    q.attach(lambda: wakes.append(q.qsize()))
    assert wakes == [1] and not q.parked()  # woken at once for what was waiting
    q.put_nowait("more")  # the writer runs: no second wake
    assert wakes == [1]
    q.get_nowait(), q.get_nowait()
    q.writer_done()
    assert q.parked()
    q.put_nowait("next")
    assert wakes == [1, 1] and not q.parked()
    q.detach()
    q.put_nowait("after")
    assert wakes == [1, 1] and not q.parked()  # a dead writer: packets stay queued


#: The coroutines of the tasks python-engineio runs per idle websocket besides aiohttp's.
STOCK_SOCKET_TASKS = {
    "AsyncSocket._send_ping",
    "AsyncSocket._websocket_handler.<locals>.writer",
    "AsyncSocket._websocket_handler.<locals>.websocket_wait",
}


async def test_lean_socket_pings_by_timer_and_holds_no_task_when_idle() -> None:
    eio = EngineIOServer(async_mode="aiohttp", ping_interval=0.2, ping_timeout=5)
    eio.websocket_compression = False
    async with serving(eio) as h:
        sockets = [await open_ws(h) for _ in range(5)]
        for _, sid in sockets:
            await h.parked(sid)
        # aiohttp's tasks run the reader: no writer, ping or per-wait task per socket.
        names = {t.get_coro().__qualname__ for t in asyncio.all_tasks()}  # type: ignore[union-attr]
        assert not names & STOCK_SOCKET_TASKS, names
        for ws, _ in sockets:
            assert await ws.receive_str(timeout=5) == "2"  # the timer's PING
            await ws.send_str("3")
            assert await ws.receive_str(timeout=5) == "2"  # rescheduled by the PONG
            await ws.send_str("4hello")
            await ws.close()


async def test_the_stock_socket_has_the_tasks_the_lean_one_avoids(harness: Harness) -> None:
    """The counterpart of the check above, so that it cannot pass by naming nothing."""
    ws, sid = await open_ws(harness)
    await harness.parked(sid)
    names = {t.get_coro().__qualname__ for t in asyncio.all_tasks()}  # type: ignore[union-attr]
    if harness.eio.lean:
        assert not names & STOCK_SOCKET_TASKS
    else:
        assert names >= STOCK_SOCKET_TASKS, names
    await ws.close()


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "stock-socket"])
async def test_a_silent_client_is_dropped_after_ping_interval_plus_timeout(lean: bool) -> None:
    eio = EngineIOServer(async_mode="aiohttp", ping_interval=0.2, ping_timeout=0.2)
    eio.lean = lean
    eio.websocket_compression = False
    gone: list[str] = []
    received: list[str] = []

    @eio.on("disconnect")
    async def disconnect(sid: str, reason: Any) -> None:
        gone.append(sid)

    @eio.on("message")
    async def message(sid: str, data: Any) -> None:
        received.append(data)

    async with serving(eio) as h:
        ws, sid = await open_ws(h)
        await ws.send_str("4one")
        await ws.send_str("4two")
        assert await ws.receive_str(timeout=5) == "2"
        # No PONG: the server ends the socket within ping_interval + ping_timeout or so.
        for _ in range(300):
            if gone:
                break
            await asyncio.sleep(0.01)
        assert gone == [sid] and received == ["one", "two"]
        await ws.close()


# -- receive_packet: what it skips is what python-engineio would have done -----------------

#: Received messages, and whether receive_packet takes them straight to the handler.
RECEIVED = [
    ('2["message",{"room":"r","text":"hi"}]', True),
    ('21["join",{"room":"r"}]', True),
    ('2["m"," spaced "] \n', True),  # passed on byte for byte, whitespace and all
    ("0", True),  # a Socket.IO CONNECT: still a string
    ('0{"token":"t"}', True),
    ("1", True),
    ('2["x",' + '"' + "é" * 300 + '"]', True),
    ('{"not":"socket.io"}', False),  # decoded as JSON by python-engineio: a dict
    ("", False),  # "4" alone: python-engineio's IndexError path
    ("x", False),
]


_LOGGERS: list[logging.Logger] = []


def message_server(calls: list[tuple[str, Any]], *, fail: bool = False) -> EngineIOServer:
    """A server recording what its ``message`` handler gets, on a logger of its own (the
    default one is python-engineio's, shared by every server in the process)."""
    logger = logging.getLogger(f"tests.receive_packet.{len(_LOGGERS)}")
    _LOGGERS.append(logger)
    logger.setLevel(logging.WARNING)
    eio = EngineIOServer(async_mode="aiohttp", async_handlers=False, logger=logger)

    async def on_message(sid: str, data: Any) -> None:
        calls.append((sid, data))
        if fail:
            raise RuntimeError("handler failed")

    eio.on("message", on_message)
    return eio


@pytest.mark.parametrize(("payload", "direct"), RECEIVED)
async def test_receive_packet_hands_the_handler_what_receive_would(payload: str, direct: bool) -> None:
    stock: list[tuple[str, Any]] = []
    eio = message_server(stock)
    await async_socket.AsyncSocket(eio, "s1").receive(eio_packet.Packet(encoded_packet="4" + payload))
    fast: list[tuple[str, Any]] = []
    eio = message_server(fast)
    sock = async_socket.AsyncSocket(eio, "s1")
    receives: list[Any] = []
    stock_receive = sock.receive

    async def spy(pkt: Any) -> None:
        receives.append(pkt)
        await stock_receive(pkt)

    sock.receive = spy
    await receive_packet(sock, "4" + payload)
    assert fast == stock
    assert (not receives) is direct


@pytest.mark.parametrize("packet", ["2", "3", "6", "2probe", b"\x01\x02"])
async def test_receive_packet_leaves_other_packets_to_receive(packet: str | bytes) -> None:
    calls: list[tuple[str, Any]] = []
    eio = message_server(calls)
    sock = async_socket.AsyncSocket(eio, "s1")
    received: list[Any] = []

    async def spy(pkt: Any) -> None:
        received.append(pkt)

    sock.receive = spy
    await receive_packet(sock, packet)
    expected = eio_packet.Packet(encoded_packet=packet)
    assert len(received) == 1 and received[0].packet_type == expected.packet_type


async def test_receive_packet_logs_and_swallows_a_failing_handler_as_receive_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for path in ("stock", "fast"):
        calls: list[tuple[str, Any]] = []
        eio = message_server(calls, fail=True)
        sock = async_socket.AsyncSocket(eio, "s1")
        caplog.clear()
        with caplog.at_level("ERROR", logger=eio.logger.name):
            if path == "stock":
                await sock.receive(eio_packet.Packet(encoded_packet='42["m"]'))
            else:
                await receive_packet(sock, '42["m"]')
        assert calls == [("s1", '2["m"]')]
        (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
        assert record.getMessage() == "message async handler error" and record.exc_info is not None, path


async def test_receive_packet_goes_through_receive_when_handlers_are_async_or_info_logs() -> None:
    for setup in ("async_handlers", "info", "sync handler"):
        calls: list[tuple[str, Any]] = []
        eio = message_server(calls)
        if setup == "async_handlers":
            eio.async_handlers = True
        elif setup == "info":
            eio.logger.setLevel(logging.INFO)
        else:
            eio.on("message", lambda sid, data, calls=calls: calls.append((sid, data)))
        sock = async_socket.AsyncSocket(eio, "s1")
        received: list[Any] = []

        async def spy(pkt: Any, received: list[Any] = received) -> None:
            received.append(pkt)

        sock.receive = spy
        await receive_packet(sock, '42["m"]')
        assert len(received) == 1 and not calls, setup


async def test_an_upgraded_request_keeps_no_http_parser(harness: Harness) -> None:
    ws, sid = await open_ws(harness)
    await harness.parked(sid)
    request = harness.eio.websockets[sid]._req
    assert request is not None
    released = harness.eio.lean
    assert (request.protocol._parser is None) is released
    # The parsed request (raw header bytes and all) is not dropped: aiohttp's start() holds
    # it for the connection's life, so nothing chatsvc could drop of it would be freed.
    start = request.task.get_coro()
    assert start.cr_frame.f_locals["message"] is request._message  # type: ignore[union-attr]
    assert (request.protocol._messages == ()) is released
    assert request.headers["Upgrade"].lower() == "websocket"  # the parsed headers stay
    # A server never masks: its writer's mask generator is one shared by all.
    writer = harness.eio.websockets[sid]._writer
    assert writer is not None and not writer.use_mask
    assert (writer.get_random_bits is http_state._NEVER_MASKS) is released
    # Frames still flow both ways, and the close completes.
    assert harness.eio.write_frame(sid, frame("4still"), clock())
    assert await ws.receive_str(timeout=5) == "4still"
    await ws.close()
    for _ in range(200):
        if sid not in harness.eio.websockets:
            break
        await asyncio.sleep(0.005)
    assert sid not in harness.eio.websockets


def _awaiting(request: web.BaseRequest) -> list[str]:
    """The qualified names of the coroutines serving ``request`` are suspended in, outermost
    first: the task aiohttp runs its handler in (a second task, which ``start()`` awaits)."""
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if frame is None or frame.f_locals.get("request") is not request:
            continue
        if coro.cr_code.co_qualname != "RequestHandler._handle_request":
            continue
        names = []
        while coro is not None and hasattr(coro, "cr_code"):
            names.append(coro.cr_code.co_qualname)
            coro = coro.cr_await
        return names
    raise AssertionError("no task handles the request")


def _lean_handler_locals(request: web.BaseRequest) -> list[str]:
    """The names bound in the frame of the lean handler serving ``request``."""
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if frame is None or frame.f_locals.get("request") is not request:
            continue
        while coro is not None and hasattr(coro, "cr_code"):
            if coro.cr_code.co_qualname == "lean_websocket_handler":
                return list(coro.cr_frame.f_locals)
            coro = coro.cr_await
    raise AssertionError("no lean handler serves the request")


#: python-engineio's handshake frames a lean websocket does not hold for its life.
HANDSHAKE_FRAMES = {
    "AsyncServer._handle_connect",
    "AsyncSocket.handle_get_request",
    "AsyncSocket._upgrade_websocket",
    "_TrackedWebSocket.__call__",
}


@contextlib.asynccontextmanager
async def serving_as_chatsvc(eio: EngineIOServer) -> AsyncIterator[Harness]:
    """``eio`` as chatsvc serves it: aiohttp's ``AppRunner`` without handler cancellation
    (aiohttp's ``TestServer`` cancels a handler whose connection is lost, so no handler
    there ever gets to finish after a client's close)."""
    app = web.Application()
    eio.attach(app)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            yield Harness(eio, http, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "stock-socket"])
async def test_a_lean_websocket_holds_no_handshake_frames_and_is_forgotten_when_closed(lean: bool) -> None:
    eio = EngineIOServer(async_mode="aiohttp", ping_interval=20, ping_timeout=20)
    eio.lean = lean
    eio.websocket_compression = False
    async with serving_as_chatsvc(eio) as harness:
        await _handshake_frames_and_close(harness)


async def _handshake_frames_and_close(harness: Harness) -> None:
    ws, sid = await open_ws(harness)
    await harness.parked(sid)
    request = harness.eio.websockets[sid]._req
    assert request is not None
    held = _awaiting(request)
    if harness.eio.lean:
        assert held[-1] == "WebSocketResponse.receive", held  # the reader, in this task
        assert not HANDSHAKE_FRAMES & set(held), held
        # One frame from the handshake to the reader: EngineIOServer.handle_request is a
        # plain function returning it (chatsvc.transport.frameless).
        assert "lean_websocket_handler" in held and "EngineIOServer.handle_request" not in held, held
        # Its frame holds neither the finished handshake coroutine nor python-engineio's
        # driver: the reader and writer use aiohttp's response.
        assert not {"handshake", "upgraded", "ws"} & set(_lean_handler_locals(request)), held
        assert harness.eio.upgraded == {}  # taken by the request's handler at once
    else:
        assert set(held) >= HANDSHAKE_FRAMES, held  # the revert: python-engineio's stack
        assert "lean_websocket_handler" not in held
    # A message still arrives, the close still ends the session on both sides.
    assert harness.eio.write_frame(sid, frame("4hello"), clock())
    assert await ws.receive_str(timeout=5) == "4hello"
    await ws.close()
    for _ in range(400):
        if sid not in harness.eio.websockets and sid not in harness.eio.sockets:
            break
        await asyncio.sleep(0.005)
    assert sid not in harness.eio.websockets and sid not in harness.eio.sockets


async def test_coarse_timers_share_loop_timers_and_keep_their_bounds() -> None:
    loop = asyncio.get_running_loop()
    fired: list[tuple[str, float]] = []
    late = CoarseTimers(0.05, early=False)
    early = CoarseTimers(0.05, early=True)
    start = loop.time()
    for i in range(20):
        late.call_later(0.1, lambda name: fired.append((name, loop.time())), f"late{i}")
        early.call_later(0.1, lambda name: fired.append((name, loop.time())), f"early{i}")
    assert len(late._slots) <= 2 and len(early._slots) <= 2  # 40 calls, at most 4 loop timers
    await asyncio.sleep(0.3)
    assert len(fired) == 40 and len(late) == 0 and len(early) == 0
    for name, at in fired:
        if name.startswith("late"):
            assert 0.1 <= at - start + 1e-3 <= 0.1 + 0.05 + 0.05
        else:
            assert 0.1 - 0.05 - 1e-3 <= at - start <= 0.1 + 0.05


async def test_a_failing_timer_callback_does_not_drop_the_others() -> None:
    timers = CoarseTimers(0.01, early=False)
    ran: list[int] = []

    def boom(_: Any) -> None:
        raise RuntimeError("boom")

    timers.call_later(0.01, boom, None)
    timers.call_later(0.01, ran.append, 1)
    await asyncio.sleep(0.05)
    assert ran == [1]


async def test_coarse_timers_keep_a_call_of_their_usual_callback_as_its_argument() -> None:
    ran: list[tuple[str, Any]] = []

    def usual(arg: Any) -> None:
        ran.append(("usual", arg))

    timers = CoarseTimers(0.01, early=False, fn=usual)
    timers.call_later(0.01, usual, ("a", "tuple"))  # an argument that is itself a pair
    timers.call_later(0.01, lambda arg: ran.append(("other", arg)), 2)
    entries = [entry for calls in timers._slots.values() for entry in calls]
    assert ("a", "tuple") in entries  # the bare argument: no pair per entry
    await asyncio.sleep(0.05)
    assert sorted(ran) == [("other", 2), ("usual", ("a", "tuple"))]


async def test_lean_sockets_hold_no_loop_timer_of_their_own() -> None:
    eio = EngineIOServer(async_mode="aiohttp", ping_interval=5, ping_timeout=5)
    eio.websocket_compression = False
    async with serving(eio) as h:
        sockets = [await open_ws(h) for _ in range(20)]
        for _, sid in sockets:
            await h.parked(sid)
        # One entry per socket in each, on a couple of shared loop timers.
        assert len(eio.ping_timers) == 20 and len(eio.read_deadlines) == 20
        assert len(eio.ping_timers._slots) <= 3 and len(eio.read_deadlines._slots) <= 3
        for ws, _ in sockets:
            await ws.close()


async def test_lean_queue_reports_overflow_once_and_discards_its_backlog() -> None:
    overflowed: list[LeanQueue] = []
    queue = LeanQueue(3, overflowed.append)
    for item in range(3):
        queue.put_nowait(item)
    assert not overflowed
    queue.put_nowait(3)
    queue.put_nowait(4)
    assert overflowed == [queue]  # once
    assert queue.discard() == 5 and queue.empty()
    await asyncio.wait_for(queue.join(), 1)  # the dropped items count as done
    getter = queue.get()
    queue.put_nowait("next")
    assert getter.result() == "next"  # handed to a waiting getter: never queued, never counted
