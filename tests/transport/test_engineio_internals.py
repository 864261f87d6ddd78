"""Contract test for chatsvc.transport.engineio_internals: python-engineio's and aiohttp's
internals it relies on are still there and still behave as it assumes.

If this fails after an upgrade, re-read the module's docstring against the new sources
before touching the pins; do not just update the expected values.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from aiohttp import web
from aiohttp._websocket.models import WSMsgType
from aiohttp._websocket.writer import WebSocketWriter
from aiohttp.test_utils import TestServer
from engineio import async_socket
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

from chatsvc.chat.sioserver import RecoveringServer
from chatsvc.transport import engineio_internals as internals
from chatsvc.transport.engineio_internals import EngineIOServer, clock, frame, frames
from chatsvc.web.websocket import decline_ws_compression

WS_PATH = "/engine.io/?EIO=4&transport=websocket"
POLL_PATH = "/engine.io/?EIO=4&transport=polling"


def test_pinned_versions_are_installed() -> None:
    for dist, version in internals.PINNED.items():
        assert metadata.version(dist) == version, (
            f"{dist} is {metadata.version(dist)}, chatsvc.transport.engineio_internals was checked "
            f"against {version}: re-read the internals it lists, then update PINNED"
        )


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
            if sock.queue.empty() and sock.queue._getters and self.eio.websockets.get(sid) is not None:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the websocket writer never parked")


async def open_ws(h: Harness, *, compress: int = 0) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await h.http.ws_connect(h.base + WS_PATH, compress=compress)
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0{")
    return ws, json.loads(opened[1:])["sid"]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    eio = EngineIOServer(async_mode="aiohttp", ping_interval=20, ping_timeout=20)
    app = web.Application(middlewares=[decline_ws_compression])
    eio.attach(app)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Harness(eio, http, str(server.make_url("")).rstrip("/"))
    finally:
        await server.close()


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
            return internals.WRITE_HIGH_WATER

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
    app = web.Application()  # no decline middleware: the client's deflate offer is accepted
    eio.attach(app)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            h = Harness(eio, http, str(server.make_url("")).rstrip("/"))
            ws, sid = await open_ws(h, compress=15)
            assert ws.compress == 15
            await h.parked(sid)
            assert not eio.write_frame(sid, frame("4x"), clock())
            await ws.close()
    finally:
        await server.close()
