#!/usr/bin/env python3
"""chatsvc's own Python per received chat message, in process, without system calls.

    .venv/bin/python bench/message_cost.py [--rooms 2,10,100] [--messages 2000] [--repeat 1]
                                           [--receive fast,stock] [--off NAMES ...] [--profile]

The real app (``create_app``, memory store, started with its cleanup contexts) with fake
websocket transports that only count writes: each room's members are python-engineio
sockets as the lean websocket handler leaves them after the upgrade, and one member's
``message`` frames are handed to ``receive_packet`` as that handler hands them (``fast``),
or to python-engineio's ``AsyncSocket.receive`` (``stock``, what it did before). What
is timed (process CPU) is python-engineio/python-socketio decode and dispatch, validation,
the id, the store, the ack and the broadcast loop, and not aiohttp's websocket reader, the
event loop or the writes themselves (bench/README.md, "Third round"). Every message must
come back as one write per member (the ack plus the deliveries), or the run fails.
``--repeat`` interleaves the receive paths that many times per room (before/after, one run).
``--off`` measures each of its arguments as a variant, interleaved the same way: the fast
paths named (``CHATSVC_FAST_PATHS_OFF``, comma-separated; ``none`` for none) turned off.
``--calls`` counts instead of timing (a second run per variant, under cProfile): Python
function calls and event-loop rounds per message, which a busy machine does not move.

Bounded: at most 500 members and 20,000 messages per room.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from engineio import async_socket
from engineio import packet as eio_packet

from chatsvc.app import SIO, create_app
from chatsvc.auth.jwt import mint_token
from chatsvc.settings import Settings

try:
    from chatsvc.transport.lean_socket import receive_packet
except ImportError:  # a checkout from before the transport split (f42e91c, ac1d935), for --calls
    from chatsvc.transport.engineio_internals import receive_packet  # type: ignore[no-redef]

SECRET = "bench-message-cost-secret-0123456789abcdef"
TEXT = "hello world, this is a message of typical length"


class CountingTransport:
    """What the broadcast loop and single sends touch of an asyncio transport."""

    writes = 0

    def write(self, data: bytes) -> None:
        CountingTransport.writes += 1

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class FakeWriter:
    """aiohttp's ``WebSocketWriter`` as chatsvc reads it: transport, closing, compression."""

    def __init__(self) -> None:
        self.transport = CountingTransport()
        self._closing = False
        self.compress = 0


class FakeResponse:
    def __init__(self) -> None:
        self._writer = FakeWriter()


async def stock_receive(sock: Any, encoded: str) -> None:
    """What the lean websocket handler did with a received message before receive_packet."""
    await sock.receive(eio_packet.Packet(encoded_packet=encoded))


RECEIVE = {"fast": receive_packet, "stock": stock_receive}


async def written(count: int) -> None:
    """Let the loop run until ``count`` writes have been made (bounded)."""
    for _ in range(10_000):
        if CountingTransport.writes >= count:
            return
        await asyncio.sleep(0)
    raise SystemExit(f"{CountingTransport.writes} writes, {count} expected: a message was lost")


async def settled(sio: Any, sid: str) -> None:
    """Let the socket's queued events finish: ``sio.settled`` where the checkout has it (the
    event worker), else a few loop rounds (older checkouts ran events as tasks)."""
    if hasattr(sio, "settled"):
        await sio.settled(sid)
        return
    for _ in range(50):
        await asyncio.sleep(0)


#: Set by ``--calls``: the timed loop runs under this profiler (counts, not time).
COUNTER: cProfile.Profile | None = None


async def one_room(
    members: int, messages: int, data_dir: Path, receive: str = "fast", off: str = "none"
) -> float:
    """Microseconds of process CPU per message in a room of ``members``, with the fast paths
    ``off`` (comma-separated, or ``none``) turned off."""
    deliver = RECEIVE[receive]
    settings = Settings.from_env(
        {
            "CHATSVC_FAST_PATHS_OFF": "" if off == "none" else off,
            "CHATSVC_JWT_SECRET": SECRET,
            "CHATSVC_DATA_DIR": str(data_dir),
            "CHATSVC_STORE": "memory",
            "CHATSVC_GRPC_ENABLED": "false",
            "CHATSVC_RATE_LIMIT_PER_SECOND": "1000000",
            "CHATSVC_RATE_LIMIT_BURST": "1000000",
            "CHATSVC_SURGE_RATE": "0",  # a benchmark floods rooms on purpose
        }
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        sio = app[SIO]
        eio = sio.eio
        sockets: list[Any] = []
        for i in range(members):
            eio_sid = f"bench{i:05d}"
            sock = async_socket.AsyncSocket(eio, eio_sid)
            sock.connected = sock.upgraded = True
            sock.queue.attach(lambda: None)  # the on-demand writer is never needed: all direct
            eio.sockets[eio_sid] = sock
            eio.websockets[eio_sid] = FakeResponse()
            await sio._handle_eio_connect(eio_sid, {"REQUEST_METHOD": "GET", "QUERY_STRING": ""})
            token = mint_token(key=SECRET, algorithm="HS256", sub=f"user{i}")
            await sock.receive(eio_packet.Packet(encoded_packet="40" + json.dumps({"token": token})))
            await sock.receive(eio_packet.Packet(encoded_packet='421["join",{"room":"bench"}]'))
            await settled(sio, eio_sid)
            sockets.append(sock)
        warmup = 300
        # Each text differs (a counter): one user repeating one text is refused as spam.
        frames = [
            f'42{i}["message",{json.dumps({"room": "bench", "text": f"{TEXT} {i}"})}]'
            for i in range(10, 10 + warmup + messages)
        ]
        sender = sockets[0]
        for encoded in frames[:warmup]:
            await deliver(sender, encoded)
            await settled(sio, sender.sid)
        gc.collect()
        before = CountingTransport.writes
        if COUNTER is not None:
            COUNTER.enable()
        started = time.process_time()
        expected = before
        for encoded in frames[warmup:]:
            await deliver(sender, encoded)
            # The reader only queues it: the connection's worker handles it (timed too). Waited
            # for by its writes, not by sio.settled, so that checkouts whose workers differ
            # (bench/results/message-cost-*.md) are measured by the same loop.
            expected += members
            await written(expected)
        elapsed = time.process_time() - started
        if COUNTER is not None:
            COUNTER.disable()
        await settled(sio, sender.sid)
        writes = CountingTransport.writes - before
        if writes != messages * members:
            raise SystemExit(
                f"room of {members}: {writes} writes for {messages} messages, not {members} per message"
            )
        return 1e6 * elapsed / messages
    finally:
        await runner.cleanup()


def count_calls(members: int, messages: int, data_dir: Path, path: tuple[str, str]) -> None:
    """Print the Python function calls and event-loop rounds per message of one variant."""
    global COUNTER  # noqa: PLW0603 -- the one switch one_room reads
    COUNTER = cProfile.Profile()
    try:
        asyncio.run(one_room(members, messages, data_dir, *path))
        stats = pstats.Stats(COUNTER)
    finally:
        COUNTER = None
    rounds = sum(
        entry[1]
        for (_, _, name), entry in stats.stats.items()
        if name == "_run_once"  # type: ignore[attr-defined]
    )
    receive, off = path
    variant = "" if off == "none" else f", off: {off}"
    print(
        f"room of {members}, {receive} receive{variant}: {stats.total_calls / messages:.1f} "  # type: ignore[attr-defined]
        f"Python function calls and {rounds / messages:.2f} event-loop rounds per message"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", default="2,10,100", help="room sizes (members, the sender included)")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs per room and path")
    parser.add_argument("--receive", default="fast", help="comma-separated: fast (receive_packet), stock")
    parser.add_argument(
        "--off", nargs="+", default=["none"], help="variants: fast paths turned off (comma-separated; none)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile each room (slower; shares only)")
    parser.add_argument("--calls", action="store_true", help="also count calls and loop rounds per message")
    args = parser.parse_args()
    sizes = [int(x) for x in args.rooms.split(",") if x.strip()]
    paths = [(x, off) for x in args.receive.split(",") if x for off in args.off]
    if not sizes or not all(2 <= n <= 500 for n in sizes) or not 1 <= args.messages <= 20000:
        parser.error("bounded: rooms of 2..500 members, 1..20000 messages")
    if not 1 <= len(args.off) <= 8:
        parser.error("bounded: 1..8 --off variants")
    if not 1 <= args.repeat <= 20 or not paths or not {x for x, _ in paths} <= RECEIVE.keys():
        parser.error(f"bounded: 1..20 repeats; receive paths among {sorted(RECEIVE)}")
    with tempfile.TemporaryDirectory(prefix="chatsvc-message-cost-") as tmp:
        for members in sizes:
            costs: dict[tuple[str, str], list[float]] = {path: [] for path in paths}
            for _ in range(args.repeat):
                for path in paths:
                    profiler = cProfile.Profile() if args.profile else None
                    if profiler is not None:
                        profiler.enable()
                    cost = asyncio.run(one_room(members, args.messages, Path(tmp), *path))
                    costs[path].append(cost)
                    if profiler is not None:
                        profiler.disable()
                        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
            if args.calls:
                for path in paths:
                    count_calls(members, args.messages, Path(tmp), path)
            for (path, off), runs in costs.items():
                shown = ", ".join(f"{c:.1f}" for c in runs)
                variant = "" if off == "none" else f", off: {off}"
                print(
                    f"room of {members}, {path} receive{variant}: median {statistics.median(runs):.1f} us "
                    f"of CPU per message ({members} writes each; runs {shown})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
