#!/usr/bin/env python3
"""Each replica's CPU for the other replicas' traffic, as the number of replicas grows.

    .venv/bin/python bench/kafka_replicas.py [N,N,...] [NAME=VALUE ...]   (default N: 1,2)

For each N: N chatsvc replicas on the test broker (``scripts/kafka start``), one fresh topic,
the ``NAME=VALUE`` settings on all. Each replica has its own ``SENDERS`` clients, each the only
member of its own room, posting ``RATE`` messages/s per replica for ``SECONDS`` s (bounded:
N <= 6, at most 6 x RATE messages/s): so each replica publishes ``RATE`` records/s and reads
``(N - 1) x RATE`` records/s of rooms it has nobody in. Measured per replica: cores over the
window. The cost of foreign traffic is the difference from N = 1 (same own load, no foreign
records), per foreign record: ``(cpu_s(N) - cpu_s(1)) / records read from others``; run N = 1 in the
same invocation. Prints one JSON line per N. ``bench/run.py --scenarios kafka-replicas`` runs it
with the sizes of ``run.py``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import harness
from harness import BenchError, LoadGen, Window

SENDERS = 5
RATE = 100.0
SECONDS = 5.0
MAX_REPLICAS = 6


def measure(
    counts: Iterable[int],
    brokers: str,
    work: Path,
    *,
    rate: float = RATE,
    seconds: float = SECONDS,
    extra: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One row per replica count (``foreign_us_per_record`` once N = 1 was measured)."""
    rows: list[dict[str, Any]] = []
    alone: float | None = None
    for n in counts:
        if not 1 <= n <= MAX_REPLICAS:
            raise BenchError(f"kafka-replicas: N={n} outside 1..{MAX_REPLICAS}")
        row = _one(n, brokers, work, rate, seconds, dict(extra or {}))
        if n == 1:
            alone = row["cpu_s_per_replica"][0]
        elif alone is not None:
            # Each replica read the others' share of what was sent (equal rates per replica).
            foreign = row["sent"] * (n - 1) / n
            row["foreign_records_per_replica"] = round(foreign)
            row["foreign_us_per_record"] = [
                round(1e6 * (cpu - alone) / foreign, 1) for cpu in row["cpu_s_per_replica"]
            ]
        rows.append(row)
    return rows


def _one(
    n: int, brokers: str, work: Path, rate: float, seconds: float, extra: dict[str, str]
) -> dict[str, Any]:
    topic = f"chatsvc.bench.replicas.{n}.{int(time.time() * 1000)}"
    env = {
        "CHATSVC_STORE": "memory",
        **harness.FLOOD_LIMITS,
        "KAFKA_BROKERS": brokers,
        "KAFKA_TOPIC": topic,
        **extra,
    }
    replicas = [
        harness.start_chatsvc(f"n{n}-r{i}", work, {**env, "CHATSVC_REPLICA_ID": f"r{i}"}) for i in range(n)
    ]
    lg = LoadGen(work / f"loadgen-n{n}.log")
    try:
        for replica in replicas:
            lg.connect_all(replica, SENDERS)  # replica i's clients: i*SENDERS ..
        rooms = [f"rep{i}" for i in range(n * SENDERS)]
        for client, room in enumerate(rooms):
            lg.call(60, cmd="join", rooms=[room], members=[client])
        time.sleep(1.0)  # the join announcements settle
        window = [Window([r.pid], lg.pid) for r in replicas]
        sent = lg.call(
            seconds + 90,
            cmd="fanout",
            senders=[{"client": c, "room": rooms[c]} for c in range(n * SENDERS)],
            rate=rate * n,
            seconds=seconds,
            recipients_per_message=0,
            drain_ms=2000,
        )
        used = [w.close() for w in window]
        if sent["acked"] != sent["sent"]:
            raise BenchError(f"kafka-replicas N={n}: acked {sent['acked']}/{sent['sent']}")
        return {
            "replicas": n,
            "records_per_s_per_replica": rate,
            "sent": sent["sent"],
            "cpu_s_per_replica": [round(u["server_cpu_s"], 3) for u in used],
            "cores_per_replica": [round(u["server_cpu_s"] / u["elapsed_s"], 4) for u in used],
            "other_cores": round(used[0]["other_cores"], 2),
            "loadavg": harness.loadavg(),
        }
    finally:
        lg.close()
        for replica in replicas:
            replica.stop()


def main() -> int:
    args = sys.argv[1:]
    counts = [int(c) for c in args.pop(0).split(",")] if args and "=" not in args[0] else [1, 2]
    extra = dict(arg.split("=", 1) for arg in args)
    brokers = harness.service_env("kafka")["KAFKA_TEST_PLAINTEXT"]
    with tempfile.TemporaryDirectory(prefix="chatsvc-kafka-replicas-") as tmp:
        for row in measure(counts, brokers, Path(tmp), extra=extra):
            print(json.dumps({**row, "settings": extra or "defaults"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
