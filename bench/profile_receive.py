#!/usr/bin/env python3
"""Does the receive side matter? A py-spy profile of chatsvc in many small rooms.

    .venv/bin/python bench/profile_receive.py [--rooms 500] [--members 5] [--rate 400] [--seconds 8]

The workload where receiving weighs most (bench/run.py's "rooms" scenario: every message
is received once and delivered to only ``members - 1`` sockets). While it runs, ``py-spy
record --format raw`` samples the server; the report is the share of samples in

- delivery (the broadcast path, frames, socket writes);
- receiving: the websocket reader reading, parsing and dispatching a client's packet
  (``lean_websocket_handler`` -> ``receive`` -> ``_trigger_event``), and within it starting
  the task python-engineio runs each received message in (``async_handlers``);
- the chat handlers those tasks run (validation, store, acks);
- everything else (the event loop, GC, timers).

Bounded: one server, one load generator, at most ``--seconds`` + warm-up of load.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import harness

PY_SPY = Path(sys.executable).parent / "py-spy"


def classify(stack: str) -> list[str]:
    """The categories a collapsed py-spy stack counts towards (the first is exclusive)."""
    if "transport/broadcast.py" in stack or "_OnDemandWriter" in stack or "write_frame" in stack:
        return ["delivery (broadcast, frames, writes)"]
    if "lean_websocket_handler" in stack or "_websocket_handler" in stack:
        tags = ["receiving: reading, parsing, dispatching a packet"]
        if "start_background_task" in stack or "ensure_future" in stack or "create_task" in stack:
            tags.append("  of which: starting the task per received message")
        return tags
    if "chatsvc/chat/" in stack or "_handle_eio_message" in stack:
        return ["chat handlers in their per-message task (validation, store, acks)"]
    return ["other (event loop, GC, timers)"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--revert", default="", help="passed to bench/launch_chatsvc.py")
    parser.add_argument("--top", type=int, default=8, help="leaf frames of 'other' to show")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks in this file")
    args = parser.parse_args()
    if not (1 <= args.rooms * args.members <= 10000 and 0 < args.seconds <= 60 and 0 < args.rate <= 5000):
        parser.error("bounded: rooms x members <= 10000, seconds <= 60, rate <= 5000")
    revert = tuple(x for x in args.revert.split(",") if x)
    with tempfile.TemporaryDirectory(prefix="chatsvc-profile-") as tmp:
        work = Path(tmp)
        env = {"CHATSVC_STORE": "memory", **harness.FLOOD_LIMITS}
        with harness.chatsvc_with_loadgen("profile-receive", work, env, revert) as (server, lg):
            common = harness.small_rooms(lg, server, args.rooms, args.members, args.rate)
            out = work / "profile.txt"
            spy = subprocess.Popen(
                [
                    str(PY_SPY),
                    "record",
                    "--nonblocking",
                    "-r",
                    "200",
                    "-d",
                    str(int(args.seconds)),
                    "-f",
                    "raw",
                    "-o",
                    str(out),
                    "-p",
                    str(server.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            answer = lg.call(
                args.seconds + 60,
                **common,
                seconds=args.seconds,
                recipients_per_message=args.members - 1,
                drain_ms=1000,
            )
            spy.wait(timeout=args.seconds + 60)
            time.sleep(0.2)
            if args.raw is not None:
                args.raw.write_text(out.read_text())
        shares: Counter[str] = Counter()
        leaves: Counter[str] = Counter()
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                tags = classify(stack)
                for tag in tags:
                    shares[tag] += int(count)
                if tags[0].startswith("other"):
                    frames = stack.split(";")
                    leaves[";".join(f.split(" (")[0] for f in frames[-3:])] += int(count)
    total = sum(v for k, v in shares.items() if not k.startswith(" ")) or 1
    print(f"{answer['sent']} messages sent, {answer['delivered']} deliveries; {total} samples")
    for what, count in shares.most_common():
        print(f"{100 * count / total:5.1f}%  {what}")
    print("top of 'other' (last three frames):")
    for where, count in leaves.most_common(args.top):
        print(f"{100 * count / total:5.1f}%  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
