#!/usr/bin/env python3
"""What one idle connection costs chatsvc: RSS per connection, and where the bytes are.

    .venv/bin/python bench/profile_idle.py [--rss 1000,5000] [--trace 1000] [--top 25]
                                         [--revert lean-socket,...] [--try orjson,...]
                                         [--baseline REV]

Two bounded runs against a real ``chatsvc serve`` on 127.0.0.1 (memory store, as the idle
scenario of bench/run.py), each with the Node load generator's websocket clients (JWT,
connected, idle, deflate offered as browsers do):

1. ``--rss N,M``: RSS growth per connection at N (then M) connections, each on a fresh
   server, no tracing (what the bench's idle rows measure).
2. ``--trace N``: the same under tracemalloc (``launch_chatsvc.py --try tracemalloc``):
   a snapshot before and after the connects, the difference per connection grouped by
   file and by allocating line (with the frames above it), so each kind of per-socket
   object can be traced to its owner. tracemalloc sees Python allocations only; RSS also
   holds the allocator's slack, the kernel's socket buffers are not in either.

``--baseline REV``: every server runs another revision's tree (exported with ``git archive``,
as ``run.py --baseline`` does), so a before/after pair can be taken in one sitting while the
checkout changes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

import harness
from harness import LoadGen, Server

MEMORY_STORE = {"CHATSVC_STORE": "memory"}
#: The tree the servers run from (``--baseline``); None: this checkout.
SOURCE: Path | None = None


def connect(lg: LoadGen, server: Server, n: int) -> None:
    lg.connect_all(server, n, deflate=True, timeout=300)


def warm(lg: LoadGen, server: Server) -> None:
    connect(lg, server, 20)  # imports, pools and allocator arenas
    lg.call(30, cmd="close")
    time.sleep(1.0)


def rss_per_connection(work: Path, n: int, revert: tuple[str, ...], tries: tuple[str, ...]) -> float:
    run = harness.chatsvc_with_loadgen(f"profile-rss-{n}", work, MEMORY_STORE, revert, tries, source=SOURCE)
    with run as (server, lg):
        warm(lg, server)
        base = server.rss_kb()
        connect(lg, server, n)
        time.sleep(1.5)
        per = (server.rss_kb() - base) / n
        lg.call(60, cmd="close")
    return per


def snapshot(server: Server, out: Path, index: int) -> tracemalloc.Snapshot:
    path = out / f"snap-{index}.pickle"
    os.kill(server.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            raise harness.BenchError("no tracemalloc snapshot within 120 s")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=5):
                pass  # runs Python code in the server, so the signal handler gets to run
        except OSError:
            pass  # busy taking the snapshot (seconds under tracing on a loaded machine)
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(str(path))


def show(title: str, stats: list[Any], n: int, top: int, frames: int) -> None:
    print(f"\n## {title} (per connection, top {top})")
    total, blocks = sum(s.size_diff for s in stats), sum(s.count_diff for s in stats)
    print(f"total {total / n:.0f} B/conn ({total / n / 1024:.1f} KiB), {blocks / n:.1f} blocks/conn")
    for stat in stats[:top]:
        if stat.size_diff <= 0:
            break
        where = stat.traceback.format(limit=frames, most_recent_first=True)
        print(f"{stat.size_diff / n:8.0f} B {stat.count_diff / n:6.2f} blk  {where[0].strip()}")
        for line in where[2::2]:
            print(f"{'':26}<- {line.strip()}")


def trace(work: Path, n: int, top: int, revert: tuple[str, ...], tries: tuple[str, ...]) -> None:
    out = work / "snapshots"
    out.mkdir()
    extra = {**MEMORY_STORE, "BENCH_TRACEMALLOC_OUT": str(out), "BENCH_TRACEMALLOC_DEPTH": "12"}
    traced = (*tries, "tracemalloc")
    # Tracing every allocation 12 frames deep makes start-up (the imports) several times
    # slower: on a shared, busy machine that outlasts the default minute.
    run = harness.chatsvc_with_loadgen(
        "profile-trace", work, extra, revert, traced, start_timeout=300.0, source=SOURCE
    )
    with run as (server, lg):
        warm(lg, server)
        before = snapshot(server, out, 0)
        connect(lg, server, n)
        time.sleep(1.5)
        after = snapshot(server, out, 1)
        lg.call(60, cmd="close")
    show("by file", after.compare_to(before, "filename"), n, top, 1)
    show("by allocating line", after.compare_to(before, "lineno"), n, top, 1)
    show("by allocating line, with callers", after.compare_to(before, "traceback"), n, top, 5)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rss", default="1000,5000", help="connections of each RSS run, comma-separated ('': skip)"
    )
    parser.add_argument("--trace", type=int, default=1000, help="connections for the traced run (0: skip)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--revert", default="", help="passed to bench/launch_chatsvc.py")
    parser.add_argument("--try", dest="tries", default="", help="passed to bench/launch_chatsvc.py")
    parser.add_argument("--baseline", default="", help="run the servers from this git revision's tree")
    args = parser.parse_args()
    try:
        sizes = [int(x) for x in args.rss.split(",") if x.strip()]
    except ValueError:
        parser.error("--rss takes comma-separated connection counts")
    for n in (*sizes, args.trace):
        if not 0 <= n <= 20000:
            parser.error("connection counts are bounded to 0..20000")
    revert = tuple(x for x in args.revert.split(",") if x)
    tries = tuple(x for x in args.tries.split(",") if x)
    harness.raise_fd_limit(2 * max(*sizes, args.trace, 0) + 1000)
    global SOURCE  # noqa: PLW0603 (set once, before any server starts)
    with tempfile.TemporaryDirectory(prefix="chatsvc-profile-") as tmp:
        work = Path(tmp)
        if args.baseline:
            SOURCE = work / "baseline"
            short = harness.export_revision(args.baseline, SOURCE)
            print(f"servers from {args.baseline} ({short})", flush=True)
        for n in sizes:
            if n:
                per = rss_per_connection(work, n, revert, tries)
                print(f"RSS: {per:.1f} KiB per idle connection at {n} connections", flush=True)
        if args.trace:
            trace(work, args.trace, args.top, revert, tries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
