#!/usr/bin/env python3
"""Where cross-replica latency goes on the events topic, stage by stage (issue 26/21).

    .venv/bin/python bench/cross_stages.py [--rate 200] [--seconds 5] [--partitions 3]

Two processes on the test broker (``scripts/kafka start``, its env file) and a fresh topic,
each with a :class:`chatsvc.bus.kafka_log.KafkaRoomLog` as a chatsvc replica has: replica A
appends records at a steady rate (open loop, one task per record, like many senders) and
reads the topic; replica B only reads it. Per record, wall-clock times (one host, one clock):

- ``ack``: A's ``append`` returned (the broker acknowledged with ``acks=all``);
- ``a_apply``: A's own reader handed the record over (when a sender's ack can go out);
- ``b_apply``: B's reader handed it over (when B's members get it live).

Prints p50/p99 of each stage from the send, and of B's apply after the ack. Bounded: one
rate for ``--seconds``, then a second to drain. Chatsvc's own send path (validation, the
socket emit) is not in these numbers; bench/run.py's ``cross`` scenario measures end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402

from chatsvc.bus.kafka_log import KafkaRoomLog  # noqa: E402
from chatsvc.bus.log import LogRecord  # noqa: E402

ROOMS = 20


def options() -> dict[str, Any]:
    return {
        "bootstrap_servers": [harness.service_env("kafka")["KAFKA_TEST_PLAINTEXT"]],
        "request_timeout_ms": 5000,
    }


async def reader(topic: str, seconds: float) -> None:
    """Replica B: print ``n t`` for every live record, for ``seconds``."""
    out = sys.stdout

    end = asyncio.Event()
    seen_at: list[tuple[int, float]] = []  # printed at the end: a full pipe would stall B

    async def seen(record: LogRecord) -> None:
        if record.body.get("end"):
            end.set()
        elif not record.replay:
            seen_at.append((int(record.body["n"]), time.time()))

    log = KafkaRoomLog(topic, options)
    log.on_record(seen)
    await log.start()
    out.write("ready\n")
    out.flush()
    cpu = time.process_time()
    try:
        async with asyncio.timeout(seconds):
            await end.wait()
    finally:
        cpu = time.process_time() - cpu
        out.writelines(f"{n} {t}\n" for n, t in seen_at)
        out.write(f"cpu {cpu}\n")
        out.flush()
        await log.aclose()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def writer(topic: str, rate: float, seconds: float) -> dict[str, list[float]]:
    """Replica A: append ``rate`` records/s for ``seconds``; the stage times per record."""
    sent: dict[int, float] = {}
    acked: dict[int, float] = {}
    applied: dict[int, float] = {}

    async def seen(record: LogRecord) -> None:
        if not record.replay:
            applied[int(record.body["n"])] = time.time()

    log = KafkaRoomLog(topic, options)
    log.on_record(seen)
    await log.start()

    async def one(n: int) -> None:
        sent[n] = time.time()
        await log.append(f"room-{n % ROOMS}", {"n": n, "pad": "x" * 120})
        acked[n] = time.time()

    try:
        for n in range(3):  # warm the connections; not measured
            await log.append("warm", {"n": -1 - n})
        tasks = []
        cpu = time.process_time()
        start = time.monotonic()
        total = int(rate * seconds)
        for n in range(total):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        await asyncio.sleep(1.0)
        cpu = time.process_time() - cpu
        await log.append("end", {"end": True})
    finally:
        await log.aclose()
    return {
        "sent": [sent[n] for n in range(total)],
        "acked": [acked[n] for n in range(total)],
        "a_apply": [applied.get(n, float("nan")) for n in range(total)],
        "cpu": [cpu],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reader", metavar="TOPIC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:  # the event loop chatsvc serves on (chatsvc.server)
        import uvloop  # noqa: PLC0415

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    if args.reader:
        asyncio.run(reader(args.reader, args.seconds))
        return 0
    topic = f"chatsvc.bench.stages.{uuid.uuid4().hex[:12]}"
    child = subprocess.Popen(
        [sys.executable, __file__, "--reader", topic, "--seconds", str(args.seconds + 30)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        # The reader starts at the topic's end: let it be ready (and the topic exist) first.
        boot = KafkaRoomLog(topic, options)
        asyncio.run(_touch(boot))
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise SystemExit("reader did not start")
        stages = asyncio.run(writer(topic, args.rate, args.seconds))
        rest, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    b_apply: dict[int, float] = {}
    b_cpu = float("nan")
    for line in rest.splitlines():
        n, t = line.split()
        if n == "cpu":
            b_cpu = float(t)  # includes B's idle second after A's last record
        else:
            b_apply[int(n)] = float(t)
    sent, acked = stages["sent"], stages["acked"]
    rows = {
        "ack": [a - s for s, a in zip(sent, acked, strict=True)],
        "a_apply": [a - s for s, a in zip(sent, stages["a_apply"], strict=True)],
        "b_apply": [b_apply[n] - s for n, s in enumerate(sent) if n in b_apply],
        "b_after_ack": [b_apply[n] - a for n, a in enumerate(acked) if n in b_apply],
    }
    result = {
        stage: {"p50_ms": round(1000 * pct(v, 0.5), 2), "p99_ms": round(1000 * pct(v, 0.99), 2), "n": len(v)}
        for stage, v in rows.items()
    }
    total = len(sent)
    result["a_cpu_us_per_record"] = round(1e6 * stages["cpu"][0] / total, 1)
    result["b_cpu_us_per_record"] = round(1e6 * b_cpu / total, 1)
    result["load"] = list(harness.loadavg())
    print(json.dumps({"rate": args.rate, "seconds": args.seconds, **result}))
    return 0


async def _touch(log: KafkaRoomLog) -> None:
    """Create the topic (auto-created on first use) so both replicas see its partitions."""
    for attempt in range(10):
        try:
            await log.start()
            break
        except Exception:
            if attempt == 9:
                raise
            await asyncio.sleep(0.5)
    await log.aclose()


if __name__ == "__main__":
    raise SystemExit(main())
