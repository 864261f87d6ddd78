#!/usr/bin/env python3
"""What building a Socket.IO packet costs chatsvc per ack and per broadcast.

    .venv/bin/python bench/packet_cost.py [--packets 100000] [--repeat 5]

python-socketio's ``Packet`` against chatsvc's ``SocketIOPacket`` (its binary check),
interleaved in one run, each building and encoding the two packets a received chat message
costs: the ack and the room broadcast, with the payloads chatsvc sends. Both must encode
to the same text, or the run fails.

Bounded: at most 1,000,000 packets per run and 20 runs per class.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from socketio import packet

from chatsvc.transport.socketio_packet import SocketIOPacket

MESSAGE = {
    "id": "01JDZK3Q5V0000000000000000",
    "room": "bench",
    "user": {"id": "user1", "name": "user1"},
    "text": "hello world, this is a message of typical length",
    "client_msg_id": "m1",
    "created_at": "2026-12-03T15:00:00.000Z",
    "seq": 12,
}
ACK: list[Any] = [{"ok": True, "message": MESSAGE, "duplicate": False}]
BROADCAST: list[Any] = ["message", MESSAGE]
CLASSES: dict[str, type[packet.Packet]] = {"python-socketio": packet.Packet, "SocketIOPacket": SocketIOPacket}


def build(cls: type[packet.Packet]) -> tuple[Any, Any]:
    ack = cls(packet.ACK, namespace="/", data=ACK, id=7).encode()
    broadcast = cls(packet.EVENT, namespace="/", data=BROADCAST).encode()
    return ack, broadcast


def measure(packets: int, repeat: int) -> dict[str, list[float]]:
    """Microseconds of process CPU per packet built and encoded, per class and run."""
    if build(packet.Packet) != build(SocketIOPacket):
        raise SystemExit("SocketIOPacket encodes differently from python-socketio's Packet")
    costs: dict[str, list[float]] = {name: [] for name in CLASSES}
    for _ in range(repeat):
        for name, cls in CLASSES.items():
            started = time.process_time()
            for _ in range(packets // 2):
                build(cls)
            costs[name].append(1e6 * (time.process_time() - started) / (packets // 2 * 2))
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not 2 <= args.packets <= 1_000_000 or not 1 <= args.repeat <= 20:
        parser.error("bounded: 2..1,000,000 packets, 1..20 repeats")
    costs = measure(args.packets, args.repeat)
    for name, runs in costs.items():
        shown = ", ".join(f"{c:.2f}" for c in runs)
        print(f"{name}: median {statistics.median(runs):.2f} us of CPU per packet (runs {shown})")
    saved = statistics.median(costs["python-socketio"]) - statistics.median(costs["SocketIOPacket"])
    print(f"saved per packet: {saved:.2f} us (two per received chat message: its ack and its broadcast)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
