#!/usr/bin/env python3
"""Where a small room's message costs: user and system CPU per message, chatsvc against the
Node peer, and the system calls each makes per message.

    .venv/bin/python bench/cpu_split.py [--rooms 500] [--members 5] [--rate 400] [--seconds 8]
                                        [--windows 2] [--strace]

The workload of bench/run.py's "rooms" scenario (``--rooms`` rooms of ``--members``, one
sender per room, ``--rate`` messages/s in all, each delivered to ``members - 1`` sockets and
acked to its sender). chatsvc (memory store, sender limits raised) and the Node socket.io
peer run one after the other, each with its own load generator; per window of ``--seconds``
the server's user and system CPU (``/proc/PID/stat``) is divided by the messages sent.
``--strace`` then attaches ``strace -c -f`` to each server for one more window and prints
the calls per message (strace slows the server: read the counts, not its times).
``--calls`` counts chatsvc's Python calls per message in one more window, under cProfile
(the launcher's ``cprofile`` experiment), by package and function: what the real server runs
per message beyond the chat path ``bench/message_cost.py`` measures in process.

Why: the fan-out rows compare CPU per delivery and cannot say whether chatsvc's gap in small
rooms is the kernel's work (system calls per recipient) or its own (the interpreter). This
splits the two. Bounded: two servers, ``--windows`` windows each (plus one with strace).
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import harness

TICK = os.sysconf("SC_CLK_TCK")


def user_system(pid: int) -> tuple[float, float]:
    """The process's user and system CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def strace_counts(pid: int, run: Callable[[], int]) -> tuple[int, list[tuple[str, int]]]:
    """``run()`` (returns messages sent) under ``strace -c -f -p pid``: messages, and
    ``(syscall, calls)`` as strace counted them, most first."""
    out = Path(tempfile.mkstemp(suffix=".strace")[1])
    tracer = subprocess.Popen(
        ["strace", "-c", "-f", "-o", str(out), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)  # attached
        sent = run()
    finally:
        tracer.send_signal(2)
        tracer.wait(timeout=30)
    counts: list[tuple[str, int]] = []
    for line in out.read_text().splitlines():
        parts = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            counts.append((parts[-1], int(parts[3])))
    out.unlink()
    return sent, sorted(counts, key=lambda c: -c[1])


def report_calls(path: Path, sent: int, top: int) -> None:
    """Python calls per message in the profiled window: in all, by package, and the
    functions called most (cProfile's counts are exact; its times are inflated)."""
    stats = pstats.Stats(str(path))
    by_area: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for (filename, line, name), (_, ncalls, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        total += ncalls
        by_area[_area(filename)] += ncalls
        by_function[f"{_area(filename)}: {name} ({Path(filename).name}:{line})"] += ncalls
    print(f"chatsvc  Python calls per message (cProfile, {sent} messages): {total / sent:.0f}")
    for area, calls in by_area.most_common():
        print(f"    {calls / sent:7.1f}  {area}")
    print("  most called:")
    for function, calls in by_function.most_common(top):
        print(f"    {calls / sent:7.1f}  {function}")


def _area(filename: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins and generated code"
    parts = Path(filename).parts
    if "chatsvc" in parts:
        index = len(parts) - 1 - parts[::-1].index("chatsvc")
        return "/".join(parts[index : index + 2]) if index + 2 < len(parts) else "chatsvc"
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    return "stdlib: " + Path(filename).stem


def measure(server: harness.Server, lg: harness.LoadGen, args: argparse.Namespace) -> None:
    common = harness.small_rooms(lg, server, args.rooms, args.members, args.rate)
    per_message = args.members - 1

    def window(seconds: float) -> tuple[int, int]:
        answer = lg.call(
            seconds + 60, **common, seconds=seconds, recipients_per_message=per_message, drain_ms=1000
        )
        if answer["ack_errors"]:
            raise harness.BenchError(f"{server.name}: {answer['ack_errors']} ack errors")
        return int(answer["sent"]), int(answer["delivered"])

    for i in range(args.windows):
        u0, s0 = user_system(server.pid)
        sent, delivered = window(args.seconds)
        u1, s1 = user_system(server.pid)
        print(
            f"{server.name:8} window {i + 1}: {sent} messages, {delivered} deliveries; per message "
            f"user {1e6 * (u1 - u0) / sent:.0f} us, system {1e6 * (s1 - s0) / sent:.0f} us; "
            f"{delivered / max((u1 - u0) + (s1 - s0), 1e-9):,.0f} deliveries per CPU-s",
            flush=True,
        )
    if args.calls and server.name == "chatsvc":
        out = Path(server.env["BENCH_CPROFILE_OUT"])
        os.kill(server.pid, signal.SIGUSR1)
        time.sleep(0.5)
        sent, _ = window(min(args.seconds, 4.0))
        os.kill(server.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        report_calls(out, sent, args.top)
    if args.strace:
        sent, counts = strace_counts(server.pid, lambda: window(min(args.seconds, 4.0))[0])
        shown = ", ".join(f"{name} {calls / sent:.2f}" for name, calls in counts[:8])
        print(f"{server.name:8} system calls per message (strace, {sent} messages): {shown}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--strace", action="store_true", help="also count system calls (needs strace)")
    parser.add_argument(
        "--calls", action="store_true", help="also count chatsvc's Python calls per message (cProfile)"
    )
    parser.add_argument("--top", type=int, default=25, help="with --calls: the most called functions shown")
    args = parser.parse_args()
    if not (
        args.members >= 2
        and 1 <= args.rooms * args.members <= 10000
        and 0 < args.seconds <= 60
        and 0 < args.rate <= 5000
        and 1 <= args.windows <= 10
    ):
        parser.error("bounded: rooms x members <= 10000, seconds <= 60, rate <= 5000, windows <= 10")
    if args.strace and shutil.which("strace") is None:
        parser.error("--strace needs strace on PATH")
    with tempfile.TemporaryDirectory(prefix="chatsvc-cpu-split-") as tmp:
        work = Path(tmp)
        env = {"CHATSVC_STORE": "memory", **harness.FLOOD_LIMITS}
        experiments = ("cprofile",) if args.calls else ()
        if args.calls:
            env["BENCH_CPROFILE_OUT"] = str(work / "window.prof")  # the launcher writes it
        with harness.chatsvc_with_loadgen("chatsvc", work, env, experiments=experiments) as (server, lg):
            measure(server, lg, args)
        peer = harness.start_peer("node", work)
        lg = harness.LoadGen(work / "node-loadgen.log")
        try:
            measure(peer, lg, args)
        finally:
            lg.close()
            peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
