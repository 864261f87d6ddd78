#!/usr/bin/env python3
"""What Kafka fetch batching buys an idle replica, and what it costs in latency.

    .venv/bin/python bench/kafka_fetch.py [KAFKA_FETCH_MIN_BYTES=65536 KAFKA_FETCH_MAX_WAIT_MS=5 ...]

Two chatsvc replicas on the test broker (``scripts/kafka start``, its env file), a fresh
topic, the ``NAME=VALUE`` settings given on the command line on both. Replica B has 100
members in room ``lat`` and none in the 20 rooms replica A's senders post to. Measured, one
after the other (bounded: 5 s idle, 6 s at each rate, 6 s of latency):

- B's idle CPU (cores) with no traffic: the price of fetches the broker answers empty;
- B's CPU per record of rooms it has nobody in, at 250 and 1,000 records/s, idle subtracted
  (what docs/scaling.md calls ``c``);
- send-to-receive latency p50/p99 from A to B's 100 members at 40 msg/s;
- how many events-topic records B's reader read, and how many partitions it fetched
  (``KAFKA_EVENTS_ROUTING=true``: only those of rooms with a member on B).

Prints one line of results. docs/scaling.md has the numbers of 2026-12-02.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import harness
from harness import LoadGen

IDLE_ROOMS = 20
RECEIVERS = 100


def main() -> int:
    extra = dict(arg.split("=", 1) for arg in sys.argv[1:])
    topic = f"chatsvc.bench.fetch.{int(time.time() * 1000)}"
    env = {
        "CHATSVC_STORE": "memory",
        **harness.FLOOD_LIMITS,
        "KAFKA_BROKERS": harness.service_env("kafka")["KAFKA_TEST_PLAINTEXT"],
        "KAFKA_TOPIC": topic,
        **extra,
    }
    with tempfile.TemporaryDirectory(prefix="chatsvc-kafka-fetch-") as tmp:
        work = Path(tmp)
        a = harness.start_chatsvc("a", work, {**env, "CHATSVC_REPLICA_ID": "publisher"})
        b = harness.start_chatsvc("b", work, {**env, "CHATSVC_REPLICA_ID": "idle"})
        lg = LoadGen(work / "loadgen.log")
        try:
            lg.connect_all(b, RECEIVERS)  # clients 0..99: the latency room's members, on B
            lg.connect_all(a, IDLE_ROOMS + 1)  # then the idle rooms' senders and the latency sender
            sender = RECEIVERS + IDLE_ROOMS
            lg.call(60, cmd="join", rooms=["lat"], members=[*range(RECEIVERS), sender])
            rooms = [f"idle{r}" for r in range(IDLE_ROOMS)]
            lg.call(60, cmd="join", rooms=rooms, members=list(range(RECEIVERS, RECEIVERS + IDLE_ROOMS)))
            time.sleep(2.0)  # the join announcements settle
            c0 = harness.proc_cpu_seconds(b.pid)
            time.sleep(5.0)
            idle = (harness.proc_cpu_seconds(b.pid) - c0) / 5.0
            out: dict[str, Any] = {"idle_cores_B": round(idle, 4)}
            senders = [{"client": RECEIVERS + i, "room": rooms[i]} for i in range(IDLE_ROOMS)]
            for rate in (250.0, 1000.0):
                c0 = harness.proc_cpu_seconds(b.pid)
                sent = lg.call(
                    90,
                    cmd="fanout",
                    senders=senders,
                    rate=rate,
                    seconds=6,
                    recipients_per_message=0,
                    drain_ms=3000,
                )
                used = harness.proc_cpu_seconds(b.pid) - c0
                per = (used - idle * sent.get("send_seconds", 6.0)) / max(sent["sent"], 1)
                out[f"us_per_record@{int(rate)}"] = round(per * 1e6)
            lat = lg.call(
                90,
                cmd="fanout",
                senders=[{"client": sender, "room": "lat"}],
                rate=40,
                seconds=6,
                recipients_per_message=RECEIVERS,
                drain_ms=3000,
            )
            out["cross_replica_ms"] = {k: round(lat["latency_ms"][k], 1) for k in ("p50", "p99")}
            # Work counts, which CPU noise does not blur: the events-topic records B's reader
            # fetched (all partitions, or with KAFKA_EVENTS_ROUTING only those of "lat") of
            # all the events topic holds.
            out["B_events_read"] = _metric(b.port, "chatsvc_events_records_read_total")
            out["B_partitions_read"] = _metric(b.port, "chatsvc_events_partitions_read")
            print(extra or "aiokafka defaults", out)
        finally:
            lg.close()
            b.stop()
            a.stop()
    return 0


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        found = re.search(rf"^{name} (\S+)$", response.read().decode(), re.M)
    return float(found.group(1)) if found else -1.0


if __name__ == "__main__":
    sys.exit(main())
