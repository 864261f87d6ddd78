#!/usr/bin/env python3
"""What chatsvc's per-message fast paths save, each against the upstream code it replaces.

    .venv/bin/python bench/fast_path_cost.py [--units 100000] [--repeat 5] [--only receive,packet]

Each comparison runs both sides interleaved, ``--repeat`` times, in one process:

- ``receive``: python-engineio's ``AsyncSocket.receive`` of a decoded ``Packet`` (what the
  lean websocket handler did before) against ``receive_packet``, each handing a typical
  chat message to a ``message`` handler that does nothing. Every message must reach it.
- ``packet``: python-socketio's ``Packet`` against chatsvc's ``SocketIOPacket``, building
  and encoding the two packets a received chat message costs (its ack and its broadcast,
  chatsvc's payloads), a pair per unit. Both must encode alike.

The savings are a few microseconds per message, which ``bench/message_cost.py`` (about
100 us per message in process) cannot resolve on this machine's noise.

Bounded: at most 1,000,000 units per run and 20 runs per side.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from engineio import async_socket
from message_cost import stock_receive
from socketio import packet

from chatsvc.transport.engine import EngineIOServer
from chatsvc.transport.lean_socket import receive_packet
from chatsvc.transport.socketio_packet import SocketIOPacket

RECEIVED = '42["message",{"room":"bench","text":"hello world, this is a message of typical length"}]'
MESSAGE = {
    "id": "01JDZK3Q5V0000000000000000",
    "room": "bench",
    "user": {"id": "user1", "name": "user1"},
    "text": "hello world, this is a message of typical length",
    "client_msg_id": "m1",
    "created_at": "2026-12-03T15:00:00.000Z",
}
ACK: list[Any] = [{"ok": True, "message": MESSAGE, "duplicate": False}]
BROADCAST: list[Any] = ["message", MESSAGE]

#: A side of a comparison: runs ``n`` units and returns how many it completed.
Side = Callable[[int], Awaitable[int]]


def receive_sides() -> tuple[str, dict[str, Side]]:
    eio = EngineIOServer(async_mode="aiohttp", async_handlers=False)
    handled = [0]

    async def on_message(_sid: str, _data: str) -> None:
        handled[0] += 1

    eio.on("message", on_message)
    sock = async_socket.AsyncSocket(eio, "bench")

    def side(receive: Callable[[Any, str], Awaitable[None]]) -> Side:
        async def run(n: int) -> int:
            before = handled[0]
            for _ in range(n):
                await receive(sock, RECEIVED)
            return handled[0] - before

        return run

    return "received message", {"stock": side(stock_receive), "receive_packet": side(receive_packet)}


def build(cls: type[packet.Packet]) -> tuple[Any, Any]:
    ack = cls(packet.ACK, namespace="/", data=ACK, id=7).encode()
    return ack, cls(packet.EVENT, namespace="/", data=BROADCAST).encode()


def packet_sides() -> tuple[str, dict[str, Side]]:
    if build(packet.Packet) != build(SocketIOPacket):
        raise SystemExit("SocketIOPacket encodes differently from python-socketio's Packet")

    def side(cls: type[packet.Packet]) -> Side:
        async def run(n: int) -> int:
            for _ in range(n):
                build(cls)
            return n

        return run

    sides = {"python-socketio": side(packet.Packet), "SocketIOPacket": side(SocketIOPacket)}
    return "message's ack + broadcast", sides


COMPARISONS: dict[str, Callable[[], tuple[str, dict[str, Side]]]] = {
    "receive": receive_sides,
    "packet": packet_sides,
}


async def compare(name: str, units: int, repeat: int) -> None:
    """Print each side's median CPU per unit over ``repeat`` interleaved runs, and the saving."""
    unit, sides = COMPARISONS[name]()
    costs: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(repeat):
        for side, run in sides.items():
            started = time.process_time()
            done = await run(units)
            elapsed = time.process_time() - started
            if done != units:
                raise SystemExit(f"{name} {side}: {done} of {units} units done")
            costs[side].append(1e6 * elapsed / done)
    for side, runs in costs.items():
        shown = ", ".join(f"{c:.2f}" for c in runs)
        print(f"{name}: {side}: median {statistics.median(runs):.2f} us of CPU per {unit} (runs {shown})")
    before, after = (statistics.median(runs) for runs in costs.values())
    print(f"{name}: saved {before - after:.2f} us per {unit}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=100_000, help="received messages per run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default=",".join(COMPARISONS), help="comma-separated comparisons")
    args = parser.parse_args()
    names = [x for x in args.only.split(",") if x]
    if not 1 <= args.units <= 1_000_000 or not 1 <= args.repeat <= 20:
        parser.error("bounded: 1..1,000,000 units, 1..20 repeats")
    if not names or not set(names) <= COMPARISONS.keys():
        parser.error(f"comparisons among {sorted(COMPARISONS)}")
    for name in names:
        asyncio.run(compare(name, args.units, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
