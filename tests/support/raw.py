"""Engine.IO / Socket.IO spoken by hand, frame by frame, for the adversarial transport tests;
plus what those tests read of the server process (RSS, the bad-packet counter, its log)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp

from tests.support.servers import ServerProcess

#: Every wait here is bounded by this (seconds).
WAIT = 5.0

EIO_PATH = "/socket.io/?EIO=4"


def rss_kb(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (``VmRSS`` of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def server_rss_kb(server: ServerProcess) -> int:
    assert server.proc is not None
    return rss_kb(server.proc.pid)


def bad_packet_counts(server: ServerProcess) -> dict[str, float]:
    """``chatsvc_bad_packets_total`` by reason, from the server's /metrics."""
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=WAIT) as resp:
        text = resp.read().decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^chatsvc_bad_packets_total\{reason="([^"]+)"\} (\S+)$', text, re.M)
    }


def connect_frame(token: str | None) -> str:
    """A Socket.IO CONNECT to ``/`` carrying ``token`` in its auth payload."""
    return "40" + (json.dumps({"token": token}) if token is not None else "")


class RawPolling:
    """One Engine.IO long-polling session."""

    def __init__(self, http: aiohttp.ClientSession, server: ServerProcess) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{server.port}{EIO_PATH}&transport=polling"
        self.sid = ""

    @property
    def url(self) -> str:
        return f"{self.base}&sid={self.sid}"

    async def open(self) -> RawPolling:
        async with self.http.get(self.base, timeout=aiohttp.ClientTimeout(total=WAIT)) as resp:
            assert resp.status == 200, await resp.text()
            text = await resp.text()
        assert text.startswith("0{"), text
        self.sid = json.loads(text[1:])["sid"]
        return self

    async def post(self, body: str | bytes, *, within: float = WAIT) -> tuple[int, str]:
        async with self.http.post(
            self.url,
            data=body.encode() if isinstance(body, str) else body,
            timeout=aiohttp.ClientTimeout(total=within),
        ) as resp:
            return resp.status, await resp.text()

    async def get(self, *, within: float = WAIT) -> tuple[int, list[str]]:
        """One poll: its status and the Engine.IO packets it carried."""
        async with self.http.get(self.url, timeout=aiohttp.ClientTimeout(total=within)) as resp:
            text = await resp.text()
            return resp.status, text.split("\x1e") if resp.status == 200 else [text]

    async def connect(self, token: str) -> None:
        """Connect namespace ``/`` and take the CONNECT reply."""
        status, _ = await self.post(connect_frame(token))
        assert status == 200
        packets = await self.until(lambda p: p.startswith("40") or p.startswith("44"))
        assert packets[-1].startswith("40{"), packets

    async def until(self, done: Any, *, within: float = WAIT) -> list[str]:
        """Poll until a packet satisfies ``done``; every packet seen, in order."""
        seen: list[str] = []
        async with asyncio.timeout(within):
            while True:
                status, packets = await self.get(within=within)
                assert status == 200, packets
                for pkt in packets:
                    seen.append(pkt)
                    if pkt == "2":
                        await self.post("3")
                    if done(pkt):
                        return seen


class RawWebSocket:
    """One Engine.IO websocket (no polling first)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, server: ServerProcess) -> RawWebSocket:
        ws = await http.ws_connect(
            f"ws://127.0.0.1:{server.port}{EIO_PATH}&transport=websocket", autoclose=False, max_msg_size=0
        )
        opened = await ws.receive_str(timeout=WAIT)
        assert opened.startswith("0{"), opened
        return cls(ws)

    async def connect(self, token: str) -> None:
        await self.ws.send_str(connect_frame(token))
        reply = await self.until(lambda p: p.startswith("40") or p.startswith("44"))
        assert reply[-1].startswith("40{"), reply

    async def until(self, done: Any, *, within: float = WAIT) -> list[str]:
        """Read text frames until one satisfies ``done`` (answering pings); all of them."""
        seen: list[str] = []
        async with asyncio.timeout(within):
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"websocket ended: {msg.type} {msg.data!r}; saw {seen}")
                seen.append(msg.data)
                if msg.data == "2":
                    await self.ws.send_str("3")
                if done(msg.data):
                    return seen

    async def ack(self, ack_id: int, *, within: float = WAIT) -> Any:
        """The data of ack ``ack_id`` on ``/``."""
        prefix = f"43{ack_id}["
        frames = await self.until(lambda p: p.startswith(prefix), within=within)
        return json.loads(frames[-1][len(prefix) - 1 :])[0]


def ack_of(packets: list[str], ack_id: int) -> Any:
    """The data of ack ``ack_id`` among Engine.IO ``packets`` (None: not there)."""
    prefix = f"43{ack_id}["
    for pkt in packets:
        if pkt.startswith(prefix):
            return json.loads(pkt[len(prefix) - 1 :])[0]
    return None


def traceback_free(log: str) -> bool:
    return "Traceback" not in log and 'File "' not in log
