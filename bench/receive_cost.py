#!/usr/bin/env python3
"""What the websocket reader costs per received message before the chat handler runs.

    .venv/bin/python bench/receive_cost.py [--messages 100000] [--repeat 5]

python-engineio's ``AsyncSocket.receive`` of a decoded ``Packet`` (what the lean websocket
handler did before) against :func:`chatsvc.transport.engineio_internals.receive_packet`
(what it does now), interleaved in one run, each handing a typical chat message to a
``message`` handler that does nothing: the difference is the per-message saving, which
``bench/message_cost.py`` (about 100 us per message in process) cannot resolve on this
machine's noise. Every message must reach the handler exactly once, or the run fails.

Bounded: at most 1,000,000 messages per run and 20 runs per path.
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
from engineio import packet as eio_packet

from chatsvc.transport.engineio_internals import EngineIOServer, receive_packet

MESSAGE = '42["message",{"room":"bench","text":"hello world, this is a message of typical length"}]'


async def stock(sock: Any, encoded: str) -> None:
    await sock.receive(eio_packet.Packet(encoded_packet=encoded))


PATHS: dict[str, Callable[[Any, str], Awaitable[None]]] = {"stock": stock, "receive_packet": receive_packet}


async def measure(messages: int, repeat: int) -> dict[str, list[float]]:
    """Microseconds of process CPU per message, for each path, ``repeat`` interleaved runs."""
    eio = EngineIOServer(async_mode="aiohttp", async_handlers=False)
    handled = 0

    async def on_message(_sid: str, _data: str) -> None:
        nonlocal handled
        handled += 1

    eio.on("message", on_message)
    sock = async_socket.AsyncSocket(eio, "bench")
    costs: dict[str, list[float]] = {name: [] for name in PATHS}
    for _ in range(repeat):
        for name, receive in PATHS.items():
            before = handled
            started = time.process_time()
            for _ in range(messages):
                await receive(sock, MESSAGE)
            elapsed = time.process_time() - started
            if handled - before != messages:
                raise SystemExit(f"{name}: {handled - before} messages handled of {messages}")
            costs[name].append(1e6 * elapsed / messages)
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not 1 <= args.messages <= 1_000_000 or not 1 <= args.repeat <= 20:
        parser.error("bounded: 1..1,000,000 messages, 1..20 repeats")
    costs = asyncio.run(measure(args.messages, args.repeat))
    for name, runs in costs.items():
        shown = ", ".join(f"{c:.2f}" for c in runs)
        print(f"{name}: median {statistics.median(runs):.2f} us of CPU per message (runs {shown})")
    saved = statistics.median(costs["stock"]) - statistics.median(costs["receive_packet"])
    print(f"saved per received message: {saved:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
