"""Issue 22 stretch: a client that stops taking what is sent to it cannot grow the server's
outgoing queue without bound (CHATSVC_MAX_QUEUED_PACKETS). A real server process; the
websocket reader is a raw TCP socket with a tiny receive buffer that stops reading."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.clients import FAST_PATH_MODES, ClientPool, fast_paths_env, running_server
from tests.support.raw import RawPolling, server_rss_kb
from tests.support.servers import ServerProcess
from tests.support.tokens import token

QUEUED_MAX = 50
TEXT = "s" * 30_000
FLOOD = 300  # 9 MB towards the reader; the kernel and aiohttp buffer a few MB of it


@pytest.fixture(scope="module", params=FAST_PATH_MODES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("slow"),
        **fast_paths_env(request.param),
        CHATSVC_MAX_QUEUED_PACKETS=str(QUEUED_MAX),
        CHATSVC_MAX_MESSAGE_BYTES="40000",
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


def _masked(text: str) -> bytes:
    """A client's (masked) text frame."""
    data = text.encode()
    mask = os.urandom(4)
    n = len(data)
    head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def _frames(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of each complete server frame at the start of ``buffer`` (consumed)."""
    while len(buffer) >= 2:
        opcode, n = buffer[0] & 0x0F, buffer[1] & 0x7F
        at = 2
        if n == 126:
            if len(buffer) < 4:
                return
            n, at = struct.unpack("!H", buffer[2:4])[0], 4
        elif n == 127:
            if len(buffer) < 10:
                return
            n, at = struct.unpack("!Q", buffer[2:10])[0], 10
        if len(buffer) < at + n:
            return
        payload = bytes(buffer[at : at + n])
        del buffer[: at + n]
        yield opcode, payload


class StalledReader:
    """A websocket client on a raw socket, which can stop reading."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = bytearray()
        self.sock.sendall(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buffer = bytearray(rest)

    def send(self, text: str) -> None:
        self.sock.sendall(_masked(text))

    def read_until(self, done: object, within: float = 10.0) -> list[str]:
        """Text frames until ``done(frame)`` (or the connection's end); all of them."""
        texts: list[str] = []
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for opcode, payload in _frames(self.buffer):
                if opcode == 0x8:
                    return texts
                if opcode == 0x1:
                    texts.append(payload.decode())
                    if callable(done) and done(texts[-1]):
                        return texts
            chunk = self.sock.recv(65536)
            if not chunk:
                return texts
            self.buffer += chunk
        raise AssertionError(f"not within {within}s; last frames {[t[:80] for t in texts[-3:]]}")


async def test_a_websocket_that_stops_reading_is_ended_as_a_slow_consumer(server: ServerProcess) -> None:
    reader = StalledReader(server.port)
    assert reader.read_until(lambda t: t.startswith("0{"))
    reader.send("40" + json.dumps({"token": token("stalled")}))
    reader.read_until(lambda t: t.startswith("40{"))
    reader.send('421["join",{"room":"slow"}]')
    reader.read_until(lambda t: t.startswith("431["))
    async with ClientPool() as pool:
        sender = await pool.connect(server.url, token("sender"))
        await sender.ok("join", {"room": "slow"})
        baseline = server_rss_kb(server)
        for i in range(FLOOD):  # the stalled reader takes none of it
            await sender.ok("message", {"room": "slow", "text": TEXT, "client_msg_id": f"m{i}"})
        grown = server_rss_kb(server) - baseline
        # The reader reads again: what was on its way, then why, then the end.
        frames = await asyncio.to_thread(reader.read_until, lambda t: "session_end" in t, 15.0)
        ended = json.loads(frames[-1][2:])
        assert ended[0] == "session_end" and ended[1]["code"] == "slow_consumer", ended
        received = sum(1 for t in frames if t.startswith('42["message"'))
        assert received <= FLOOD - QUEUED_MAX, received  # the backlog was dropped, not delivered
        rest = await asyncio.to_thread(reader.read_until, None, 10.0)
        assert any(t.startswith("41") for t in rest) or rest == [], rest  # DISCONNECT, then the close
        reader.sock.close()
        # The sender is unaffected.
        await sender.ok("message", {"room": "slow", "text": "still here"})
    # 9 MB were sent towards the reader: without the bound most would be queued.
    assert grown < 4 * 1024, f"RSS grew {grown} KiB"


async def test_a_poller_that_stops_polling_is_ended_as_a_slow_consumer(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        poller = await RawPolling(http, server).open()
        await poller.connect(token("stalled-poller"))
        status, _ = await poller.post('421["join",{"room":"slowpoll"}]')
        assert status == 200
        await poller.until(lambda p: p.startswith("431["))
        async with ClientPool() as pool:
            sender = await pool.connect(server.url, token("sender2"))
            await sender.ok("join", {"room": "slowpoll"})
            for i in range(QUEUED_MAX + 20):
                await sender.ok("message", {"room": "slowpoll", "text": "x", "client_msg_id": f"p{i}"})
        status, packets = await poller.get()
        assert status == 200
        assert len(packets) < QUEUED_MAX, len(packets)  # the backlog was dropped
        ended = [json.loads(p[2:]) for p in packets if p.startswith('42["session_end"')]
        assert ended and ended[0][1]["code"] == "slow_consumer", packets[-4:]
        assert packets[-1].startswith("41"), packets[-4:]  # DISCONNECT
