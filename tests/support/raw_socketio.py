"""A Socket.IO client speaking the frames by hand, over websocket or long-polling.

Real clients never send what attacks send (events named ``disconnect``, packets that are
not lists, lone surrogates): this one sends any text packet as it is given and keeps every
packet it receives until a test takes it, so a test can check the server's answer to
exactly the bytes it chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp

#: Every wait of a raw socket is bounded by this (seconds).
WAIT = 5.0
RS = "\x1e"  # Engine.IO v4 separates the packets of a polling payload with it


class RawSocket:
    """One Engine.IO session on ``transport`` (``websocket`` or ``polling``)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, transport: str) -> None:
        self.session = session
        self.base = base
        self.transport = transport
        self.sid = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.inbox: list[str] = []  # Socket.IO packets (the Engine.IO "4" stripped), unread
        self._next_ack = 0

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, base: str, transport: str) -> RawSocket:
        """Handshake (the Engine.IO OPEN packet), not yet connected to a namespace."""
        sock = cls(session, base, transport)
        if transport == "websocket":
            url = base.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
            sock.ws = await session.ws_connect(url, autoclose=False)
            opening = await sock.ws.receive_str(timeout=WAIT)
        else:
            async with session.get(
                f"{base}/socket.io/?EIO=4&transport=polling", timeout=aiohttp.ClientTimeout(total=WAIT)
            ) as resp:
                assert resp.status == 200, resp.status
                opening = await resp.text()
        assert opening.startswith("0{"), opening
        sock.sid = json.loads(opening[1:])["sid"]
        return sock

    async def send(self, packet: str) -> None:
        """Send one Socket.IO packet (``"42[...]"``) as an Engine.IO MESSAGE."""
        await self.send_eio("4" + packet)

    async def send_eio(self, packet: str) -> None:
        """Send one raw Engine.IO packet."""
        if self.ws is not None:
            await self.ws.send_str(packet)
            return
        async with self.session.post(
            self._polling_url(), data=packet.encode(), timeout=aiohttp.ClientTimeout(total=WAIT)
        ) as resp:
            assert resp.status == 200, (resp.status, await resp.text())

    def _polling_url(self) -> str:
        return f"{self.base}/socket.io/?EIO=4&transport=polling&sid={self.sid}"

    async def _receive_more(self, within: float) -> None:
        if self.ws is not None:
            msg = await self.ws.receive(timeout=within)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"websocket ended: {msg.type} {msg.data!r}")
            packets = [str(msg.data)]
        else:
            async with self.session.get(
                self._polling_url(), timeout=aiohttp.ClientTimeout(total=within)
            ) as resp:
                if resp.status != 200:
                    raise ConnectionError(f"poll answered {resp.status}: {await resp.text()}")
                packets = (await resp.text()).split(RS)
        for packet in packets:
            if packet == "2":
                await self.send_eio("3")
            elif packet.startswith("4"):
                self.inbox.append(packet[1:])
            elif packet.startswith("1"):
                raise ConnectionError("the server closed the session")

    async def take(self, match: Any, within: float = WAIT) -> str:
        """The first received packet for which ``match(packet)`` is true (waiting for it)."""
        async with asyncio.timeout(within):
            while True:
                for i, packet in enumerate(self.inbox):
                    if match(packet):
                        return self.inbox.pop(i)
                await self._receive_more(within)

    async def connect(self, auth: Any) -> dict[str, Any]:
        """CONNECT to ``/``; return the reply's data (``{sid}``, or the connect_error data)."""
        await self.send("0" + json.dumps(auth))
        reply = await self.take(lambda p: p.startswith(("0", "4")))
        data: dict[str, Any] = json.loads(reply[1:])
        return data

    async def emit_raw(self, packet_body: str) -> int:
        """Send ``42<ack id><packet_body>``; return the ack id."""
        self._next_ack += 1
        await self.send(f"2{self._next_ack}{packet_body}")
        return self._next_ack

    async def ack(self, ack_id: int, within: float = WAIT) -> Any:
        """The (first) argument of the ACK with ``ack_id``."""
        prefix = f"3{ack_id}["
        packet = await self.take(lambda p: p.startswith(prefix), within)
        args = json.loads(packet[len(prefix) - 1 :])
        return args[0] if args else None

    async def call(self, event: str, data: Any = None) -> Any:
        """Emit ``event`` with ``data`` and an ack id; return the ack's argument."""
        args = [event] if data is None else [event, data]
        return await self.ack(await self.emit_raw(json.dumps(args)))

    async def event(self, name: str, within: float = WAIT) -> list[Any]:
        """The arguments of the next ``name`` event."""

        def match(packet: str) -> bool:
            if not packet.startswith("2["):
                return False
            return bool(json.loads(packet[1:])[0] == name)

        return json.loads((await self.take(match, within))[1:])[1:]  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Engine.IO CLOSE, then drop the transport."""
        with contextlib.suppress(OSError, AssertionError, aiohttp.ClientError, TimeoutError):
            await self.send_eio("1")
        if self.ws is not None:
            await self.ws.close()
