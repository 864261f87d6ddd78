#!/usr/bin/env python3
"""Run ``chatsvc`` for the benchmarks, optionally with some optimisations reverted.

    python bench/launch_chatsvc.py [--revert uvloop,direct-emit,gc,frame-once] [--try orjson,gc-stats] serve

``--revert`` puts back python-socketio's and asyncio's stock behaviour for the named
optimisations, so one run can measure chatsvc before and after them side by side on the
same machine. It is a benchmark tool only: production never reverts anything.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

KNOWN = ("uvloop", "direct-emit", "gc", "frame-once")


def revert(names: set[str]) -> None:
    """Undo the named optimisations in this process before chatsvc starts."""
    if "uvloop" in names:
        import chatsvc.server  # noqa: PLC0415

        chatsvc.server.event_loop_factory = lambda: None
    if "gc" in names:
        import chatsvc.server  # noqa: PLC0415

        chatsvc.server.tune_gc = lambda: None
    if "frame-once" in names:
        from chatsvc.transport import engineio_internals  # noqa: PLC0415

        # Every broadcast takes python-engineio's queue and writer, framed per recipient.
        engineio_internals.EngineIOServer.write_frame = lambda *_: False
    if "direct-emit" in names:
        import socketio  # noqa: PLC0415

        import chatsvc.bus.direct  # noqa: PLC0415

        async def stock_emit(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await socketio.AsyncManager.emit(self, *args, **kwargs)

        # Both the in-process and the Kafka manager inherit it.
        chatsvc.bus.direct.DirectEmitMixin.emit = stock_emit


def experiment_orjson() -> None:
    """Try orjson as python-socketio's JSON codec (an experiment, not in chatsvc)."""
    import orjson  # noqa: PLC0415
    import socketio  # noqa: PLC0415
    from engineio import packet as eio_packet  # noqa: PLC0415

    class Codec:
        @staticmethod
        def dumps(obj: Any, **_: Any) -> str:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

        @staticmethod
        def loads(data: str | bytes, **_: Any) -> Any:
            return orjson.loads(data)

    socketio.packet.Packet.json = Codec
    eio_packet.Packet.json = Codec


def experiment_fastpoll() -> None:
    """Wait for a socket's next packet under ``asyncio.timeout`` instead of ``asyncio.wait_for``
    (an experiment on python-engineio, not in chatsvc).

    Every websocket has a writer task that sleeps in ``AsyncSocket.poll`` until a packet is
    queued; ``wait_for`` wraps each of those waits in a new task, so every delivery to an idle
    socket costs a task creation. Same behaviour otherwise: a timeout or cancellation ends the
    writer (``QueueEmpty``), ``None`` closes it.
    """
    import asyncio  # noqa: PLC0415

    from engineio import async_socket, exceptions  # noqa: PLC0415

    async def poll(self: Any) -> list[Any]:
        queue = self.queue
        try:
            if queue.empty():
                async with asyncio.timeout(self.server.ping_interval + self.server.ping_timeout):
                    first = await queue.get()
            else:
                first = queue.get_nowait()
            queue.task_done()
        except (TimeoutError, asyncio.CancelledError):
            raise exceptions.QueueEmpty() from None
        if first is None:
            return []
        packets = [first]
        while not queue.empty():
            pkt = queue.get_nowait()
            queue.task_done()
            if pkt is None:
                queue.put_nowait(None)
                break
            packets.append(pkt)
        return packets

    async_socket.AsyncSocket.poll = poll


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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--revert", default="", help=f"comma-separated subset of {', '.join(KNOWN)}")
    parser.add_argument(
        "--try",
        dest="experiments",
        default="",
        help="experiments: orjson (python-socketio JSON codec), fastpoll (engine.io writer wait "
        "without a task), gc-stats (log GC pauses at exit)",
    )
    args, rest = parser.parse_known_args()
    if "orjson" in args.experiments:
        experiment_orjson()
    if "fastpoll" in args.experiments:
        experiment_fastpoll()
    if "gc-stats" in args.experiments:
        experiment_gc_stats()
    names = {n.strip() for n in args.revert.split(",") if n.strip()}
    unknown = names - set(KNOWN)
    if unknown:
        parser.error(f"unknown optimisations: {', '.join(sorted(unknown))}")
    revert(names)
    from chatsvc.cli import main as chatsvc_main  # noqa: PLC0415

    return chatsvc_main(rest)


if __name__ == "__main__":
    sys.exit(main())
