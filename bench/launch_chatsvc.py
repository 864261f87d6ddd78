#!/usr/bin/env python3
"""Run ``chatsvc`` for the benchmarks, optionally with some optimisations reverted.

    python bench/launch_chatsvc.py [--revert uvloop,gc,frame-once,lean-socket,receive-packet,
                                             packet-serializer,direct-emit]
                                   [--try orjson,gc-stats,tracemalloc,cprofile] serve

``--revert`` puts back python-socketio's, python-engineio's and asyncio's stock behaviour for
the named optimisations, so one run can measure chatsvc before and after them side by side
on the same machine. The transport's fast paths are turned off through chatsvc's own setting
(``CHATSVC_FAST_PATHS_OFF``, the switch production has too: no code is patched for them);
``uvloop`` and ``gc`` are process set-up choices of ``chatsvc.server``, replaced here.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

#: chatsvc.settings.FAST_PATHS: turned off by CHATSVC_FAST_PATHS_OFF.
#: A copy, not an import: the bench also launches older revisions of chatsvc (``run.py
#: --baseline``), whose settings may name fewer; tests/transport/test_fast_paths.py keeps
#: this copy equal to this checkout's.
FAST_PATHS = (
    "frame-once",
    "lean-socket",
    "receive-packet",
    "packet-serializer",
    "direct-emit",
    "event-worker",
    "event-dispatch",
)
KNOWN = ("uvloop", "gc", *FAST_PATHS)


def revert(names: set[str]) -> None:
    """Undo the named optimisations in this process before chatsvc starts."""
    if "uvloop" in names:
        import chatsvc.server  # noqa: PLC0415

        chatsvc.server.event_loop_factory = lambda: None
    if "gc" in names:
        import chatsvc.server  # noqa: PLC0415

        chatsvc.server.tune_gc = lambda: None
    off = sorted(names & set(FAST_PATHS))
    if off:
        os.environ["CHATSVC_FAST_PATHS_OFF"] = ",".join(off)


def experiment_orjson() -> None:
    """Try orjson as python-socketio's JSON codec (an experiment, not in chatsvc)."""
    import orjson  # noqa: PLC0415
    import socketio  # noqa: PLC0415
    from engineio import packet as eio_packet  # noqa: PLC0415

    from chatsvc.transport.socketio_packet import SocketIOPacket  # noqa: PLC0415

    class Codec:
        @staticmethod
        def dumps(obj: Any, **_: Any) -> str:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

        @staticmethod
        def loads(data: str | bytes, **_: Any) -> Any:
            return orjson.loads(data)

    socketio.packet.Packet.json = Codec
    eio_packet.Packet.json = Codec
    SocketIOPacket.json = Codec  # the server's serializer has a codec of its own


def experiment_tracemalloc() -> None:
    """Trace allocations (``BENCH_TRACEMALLOC_DEPTH`` frames, default 12); on SIGUSR1 collect
    garbage and dump a snapshot to ``$BENCH_TRACEMALLOC_OUT/snap-N.pickle`` (bench/profile_idle.py).

    A plain ``signal.signal`` handler runs at the next Python bytecode of the main thread, so
    the profiler pokes ``/healthz`` after signalling.
    """
    import gc  # noqa: PLC0415
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import tracemalloc  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    out = Path(os.environ["BENCH_TRACEMALLOC_OUT"])
    tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_DEPTH", "12")))
    taken = [0]

    def dump(_signum: int, _frame: Any) -> None:
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        path = out / f"snap-{taken[0]}.pickle"
        snapshot.dump(str(path) + ".tmp")
        os.replace(str(path) + ".tmp", path)
        taken[0] += 1

    signal.signal(signal.SIGUSR1, dump)


def experiment_gc_stats() -> None:
    """Log every garbage-collector pass longer than 5 ms (to stderr), to find latency spikes."""
    import atexit  # noqa: PLC0415
    import gc  # noqa: PLC0415
    import time  # noqa: PLC0415

    started: list[float] = [0.0]
    pauses: list[tuple[int, float]] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((int(info["generation"]), (time.perf_counter() - started[0]) * 1000))

    gc.callbacks.append(callback)

    def report() -> None:
        for gen in (0, 1, 2):
            ms = sorted(p for g, p in pauses if g == gen)
            if ms:
                print(
                    f"gc gen{gen}: {len(ms)} passes, max {ms[-1]:.1f} ms, total {sum(ms):.0f} ms",
                    file=sys.stderr,
                )

    atexit.register(report)


def experiment_cprofile() -> None:
    """cProfile the server between SIGUSR1 (start) and SIGUSR2 (stop, and dump the stats to
    ``$BENCH_CPROFILE_OUT``): exact call counts per function in a measured window of a real
    server (bench/cpu_split.py --calls), where ``message_cost.py`` sees only the chat path."""
    import cProfile  # noqa: PLC0415
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415

    profiler = cProfile.Profile()

    def start(_signum: int, _frame: Any) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: Any) -> None:
        profiler.disable()
        out = os.environ["BENCH_CPROFILE_OUT"]
        profiler.dump_stats(out + ".tmp")
        os.replace(out + ".tmp", out)  # whole when it appears

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--revert", default="", help=f"comma-separated subset of {', '.join(KNOWN)}")
    parser.add_argument(
        "--try",
        dest="experiments",
        default="",
        help="experiments: orjson (python-socketio JSON codec), gc-stats (log GC pauses at exit), "
        "tracemalloc (snapshots on SIGUSR1), cprofile (SIGUSR1 to SIGUSR2)",
    )
    args, rest = parser.parse_known_args()
    if "orjson" in args.experiments:
        experiment_orjson()
    if "gc-stats" in args.experiments:
        experiment_gc_stats()
    if "tracemalloc" in args.experiments:
        experiment_tracemalloc()
    if "cprofile" in args.experiments:
        experiment_cprofile()
    names = {n.strip() for n in args.revert.split(",") if n.strip()}
    unknown = names - set(KNOWN)
    if unknown:
        parser.error(f"unknown optimisations: {', '.join(sorted(unknown))}")
    revert(names)
    from chatsvc.cli import main as chatsvc_main  # noqa: PLC0415

    return chatsvc_main(rest)


if __name__ == "__main__":
    sys.exit(main())
