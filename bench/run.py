#!/usr/bin/env python3
"""chatsvc benchmarks, side by side with Node's socket.io and Centrifugo, in one bounded run.

    .venv/bin/python bench/run.py            # the full run (`make bench`), < 15 min on 2 cores
    .venv/bin/python bench/run.py --quick    # `make bench-quick`, < 2 min
    .venv/bin/python bench/run.py --size tiny --out /tmp/x --scenarios idle,fanout,storm

Each scenario starts the servers it needs (chatsvc after and before the optimisation work,
the Node peer, Centrifugo, SQLite/Cassandra/Kafka variants), warms up, measures, and stops everything
it started. Results: ``results*.json`` (raw), ``results*.md`` (tables), ``results*.png``.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import history_read
import kafka_replicas
import report
from harness import BenchError, LoadGen, Server, Window, stderr

from chatsvc.model.ids import id_at

ALL_SCENARIOS = (
    "idle",
    "fanout",
    "rooms",
    "storm",
    "joinstorm",
    "cross",
    "kafka-idle",
    "kafka-replicas",
    "history",
    "ablation",
)
QUICK_SCENARIOS = ("idle", "fanout", "rooms", "storm", "joinstorm", "history")
#: The optimisations "before" runs with reverted (the transport's through the setting
#: CHATSVC_FAST_PATHS_OFF, see harness.start_chatsvc). The launcher also knows the fast paths
#: receive-packet and packet-serializer; "before" keeps them, as it always has.
OPTIMISATIONS = ("uvloop", "direct-emit", "gc", "frame-once", "lean-socket")
#: Clients that seed the history scenario's room (closed loop, bench/history_read.fill).
SEED_SENDERS = 8
#: Clients paging history back to back in the history scenario.
HISTORY_READERS = 4
RATE_LIMIT = harness.FLOOD_LIMITS


@dataclass(frozen=True)
class Size:
    """How big and how long each scenario runs."""

    idle_counts: tuple[int, ...]
    fanout_rooms: tuple[tuple[int, float], ...]  # (members, messages per second)
    fanout_senders: int
    rooms: tuple[int, int, float]  # (rooms, members per room, messages per second in total)
    cross: tuple[int, float]  # (receivers, messages per second)
    history_messages: int
    history_seconds: float
    ablation: tuple[tuple[int, float], tuple[int, int, float], float]  # big room, small rooms, seconds
    storm: tuple[int, int, int]  # (clients, members per room, connections in flight at once)
    #: (clients, rooms, rooms per client, connections in flight at once): the join storm
    joinstorm: tuple[int, int, int, int]
    #: ((records, records per second), ...) at each offered rate; idle baseline seconds
    kafka_idle: tuple[tuple[tuple[int, float], ...], float]
    #: (replica counts, records per second per replica, seconds): bench/kafka_replicas.py
    kafka_replicas: tuple[tuple[int, ...], float, float]
    warmup_s: float
    measure_s: float
    windows: int
    drain_ms: int


SIZES = {
    "full": Size(
        idle_counts=(1000, 5000),
        fanout_rooms=((10, 400.0), (100, 100.0), (1000, 12.0)),
        fanout_senders=5,
        rooms=(500, 5, 400.0),
        cross=(100, 40.0),
        history_messages=2000,
        history_seconds=5.0,
        ablation=((1000, 12.0), (200, 5, 400.0), 5.0),
        storm=(2000, 20, 100),
        joinstorm=(2000, 300, 3, 100),
        kafka_idle=(((5000, 250.0), (15000, 1000.0)), 3.0),
        kafka_replicas=((1, 2, 4, 6), 100.0, 5.0),
        warmup_s=2.0,
        measure_s=6.0,
        windows=3,
        drain_ms=3000,
    ),
    "quick": Size(
        idle_counts=(250, 1000),
        fanout_rooms=((10, 100.0), (100, 30.0)),
        fanout_senders=3,
        rooms=(100, 5, 100.0),
        cross=(50, 20.0),
        history_messages=300,
        history_seconds=1.5,
        ablation=((200, 20.0), (40, 5, 80.0), 1.5),
        storm=(500, 20, 100),
        joinstorm=(500, 75, 3, 100),
        kafka_idle=(((1000, 250.0), (3000, 750.0)), 1.5),
        kafka_replicas=((1, 2), 100.0, 3.0),
        warmup_s=0.5,
        measure_s=2.0,
        windows=2,
        drain_ms=1500,
    ),
    "tiny": Size(
        idle_counts=(5, 10),
        fanout_rooms=((4, 20.0),),
        fanout_senders=2,
        rooms=(3, 3, 10.0),
        cross=(3, 10.0),
        history_messages=30,
        history_seconds=0.5,
        ablation=((4, 10.0), (2, 2, 10.0), 0.5),
        storm=(6, 3, 4),
        joinstorm=(12, 4, 2, 4),
        kafka_idle=(((40, 40.0),), 0.5),
        kafka_replicas=((1, 2), 20.0, 1.0),
        warmup_s=0.2,
        measure_s=0.8,
        windows=1,
        drain_ms=1000,
    ),
}


@dataclass(frozen=True)
class Target:
    """One server configuration under test."""

    key: str
    label: str
    kind: str  # "chatsvc", "peer" or "centrifugo"
    env: tuple[tuple[str, str], ...] = ()
    revert: tuple[str, ...] = ()
    experiments: tuple[str, ...] = ()
    #: Another interpreter (``--python-alt``); None: this one.
    python: str | None = None
    #: Another revision's tree (``--baseline``); None: this checkout.
    source: Path | None = None


MEMORY = ("CHATSVC_STORE", "memory")
#: The pre-optimisation behaviour: permessage-deflate accepted, stock asyncio and emit.
COMPRESSION_ON = ("CHATSVC_WS_COMPRESSION", "true")
AFTER_MEM = Target("chatsvc", "chatsvc (memory store)", "chatsvc", (MEMORY,))
BEFORE_MEM = Target(
    "chatsvc-before", "chatsvc before (memory store)", "chatsvc", (MEMORY, COMPRESSION_ON), OPTIMISATIONS
)
BASELINE_KEY = "chatsvc-base"
AFTER_SQLITE = Target("chatsvc-sqlite", "chatsvc (SQLite file, default)", "chatsvc")
PEER = Target("peer", "node socket.io 4.8 (peer)", "peer")
CENTRIFUGO = Target("centrifugo", "Centrifugo v6.9.1 (peer)", "centrifugo")
#: One optimisation at a time, on the same workloads (client offers no deflate unless noted).
ABLATION = (
    (BEFORE_MEM, False, "before: stock asyncio loop, task per recipient, default GC"),
    (
        Target("abl-emit", "", "chatsvc", (MEMORY,), ("uvloop", "gc", "frame-once", "lean-socket")),
        False,
        "+ direct emit only (no task per recipient)",
    ),
    (
        Target("abl-uvloop", "", "chatsvc", (MEMORY,), ("direct-emit", "gc", "frame-once", "lean-socket")),
        False,
        "+ uvloop only",
    ),
    (
        Target("abl-gc", "", "chatsvc", (MEMORY,), ("uvloop", "direct-emit", "frame-once", "lean-socket")),
        False,
        "+ GC tuning only",
    ),
    # Frame-once builds on direct emit (python-socketio's stock emit never reaches it).
    (Target("abl-noframe", "", "chatsvc", (MEMORY,), ("frame-once",)), False, "after without frame-once"),
    (
        Target("abl-nolean", "", "chatsvc", (MEMORY,), ("lean-socket",)),
        False,
        "after without the lean socket (engine.io's own queue, tasks)",
    ),
    (AFTER_MEM, False, "after: all of them"),
    (
        Target("abl-orjson", "", "chatsvc", (MEMORY,), (), ("orjson",)),
        False,
        "after + orjson codec (experiment)",
    ),
    (BEFORE_MEM, True, "before, browser-like client: permessage-deflate negotiated"),
    (AFTER_MEM, True, "after, browser-like client: deflate declined (CHATSVC_WS_COMPRESSION=false)"),
)


#: Presence announcements on, per kind of server, for the join storm. chatsvc has them on
#: by default (aggregated from CHATSVC_BIG_ROOM_MEMBERS, 100).
PRESENCE_ON: dict[str, dict[str, str]] = {
    "peer": {"PEER_PRESENCE": "1"},
    "centrifugo": {
        "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_PRESENCE": "true",
        "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_JOIN_LEAVE": "true",
        "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_FORCE_PUSH_JOIN_LEAVE": "true",
    },
}


def zipf_room_sets(clients: int, rooms: int, per_client: int, seed: int = 26) -> list[list[str]]:
    """For each client, ``per_client`` distinct rooms drawn with Zipf weights (room r has
    weight 1/(r+1)): a few hot rooms and a long tail, as stock discussions are. Seeded, so
    every server gets the same topology."""
    rng = random.Random(seed)
    names = [f"zipf{r}" for r in range(rooms)]
    weights = [1 / (r + 1) for r in range(rooms)]
    sets = []
    for _ in range(clients):
        chosen: list[str] = []
        while len(chosen) < min(per_client, rooms):
            room = rng.choices(names, weights)[0]
            if room not in chosen:
                chosen.append(room)
        sets.append(chosen)
    return sets


class Bench:
    """Runs scenarios; owns the scratch directory and every process it starts."""

    def __init__(self, size: Size, work: Path, centrifugo: Path | None = None) -> None:
        self.size = size
        self.work = work
        self.centrifugo = centrifugo
        self.servers: list[Server] = []
        self.loadgens: list[LoadGen] = []
        self.cleanups: list[Callable[[], None]] = []

    # -- processes ---------------------------------------------------------------------------

    def start(self, target: Target, name: str, extra: dict[str, str] | None = None) -> Server:
        env = {**dict(target.env), **RATE_LIMIT, **(extra or {})}
        if target.kind == "peer":
            server = harness.start_peer(name, self.work, extra)
        elif target.kind == "centrifugo":
            if self.centrifugo is None:
                raise BenchError("Centrifugo is not installed (bench/peers/centrifugo/install)")
            server = harness.start_centrifugo(name, self.work, self.centrifugo, extra)
        else:
            server = harness.start_chatsvc(
                name, self.work, env, target.revert, target.experiments, target.python, target.source
            )
        self.servers.append(server)
        return server

    @contextmanager
    def loadgen(self, name: str = "loadgen") -> Iterator[LoadGen]:
        lg = LoadGen(self.work / f"{name}.log")
        self.loadgens.append(lg)
        try:
            yield lg
        finally:
            lg.close()

    def stop_all(self) -> None:
        for lg in self.loadgens:
            with suppress(Exception):
                lg.close()
        for server in reversed(self.servers):
            with suppress(Exception):
                server.stop()
        for cleanup in reversed(self.cleanups):
            with suppress(Exception):
                cleanup()
        self.servers.clear()
        self.loadgens.clear()
        self.cleanups.clear()

    def stop(self, *servers: Server) -> None:
        for server in servers:
            server.stop()

    # -- scenarios -----------------------------------------------------------------------------

    def idle(self, targets: list[Target]) -> dict[str, Any]:
        """Resident memory per idle (connected, authenticated) connection."""
        out: dict[str, Any] = {}
        for target in targets:
            server = self.start(target, f"idle-{target.key}")
            with self.loadgen() as lg:
                lg.connect_all(server, 20, deflate=True)  # warm imports, pools and allocator arenas
                lg.call(30, cmd="close")
                time.sleep(1.0)
                base = server.rss_kb()
                rows = []
                have = 0
                for count in self.size.idle_counts:
                    answer = lg.connect_all(server, count - have, deflate=True)
                    have = count
                    time.sleep(1.5)
                    rss = server.rss_kb()
                    rows.append(
                        {
                            "connections": count,
                            "rss_kb": rss,
                            "rss_base_kb": base,
                            "kb_per_conn": (rss - base) / count,
                            "connect_per_s": (count if len(rows) == 0 else answer["connected"])
                            / max(answer["seconds"], 1e-6),
                        }
                    )
                    stderr(f"  idle {target.key} n={count}: {rows[-1]['kb_per_conn']:.1f} KiB/conn")
                lg.call(60, cmd="close")
            self.stop(server)
            out[target.key] = rows
        return out

    def _fanout_warmup(
        self, lg: LoadGen, senders: list[dict[str, Any]], rate: float, recipients: int
    ) -> None:
        lg.call(
            60,
            cmd="fanout",
            senders=senders,
            rate=rate,
            seconds=self.size.warmup_s,
            recipients_per_message=recipients,
            drain_ms=500,
        )

    def _fanout_window(
        self,
        lg: LoadGen,
        servers: list[Server],
        senders: list[dict[str, Any]],
        rate: float,
        recipients: int,
        seconds: float,
        accumulate: bool,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """One measurement window: (its CPU readings and counts, the load generator's answer)."""
        size = self.size
        window = Window([s.pid for s in servers], lg.pid)
        answer = lg.call(
            seconds + size.drain_ms / 1000 + 60,
            cmd="fanout",
            senders=senders,
            rate=rate,
            seconds=seconds,
            recipients_per_message=recipients,
            drain_ms=size.drain_ms,
            accumulate=accumulate,
        )
        counts = {k: answer[k] for k in ("sent", "acked", "ack_errors", "delivered", "expected")}
        return {**window.close(), **counts}, answer

    @staticmethod
    def _fanout_row(windows: list[dict[str, Any]], answer: dict[str, Any], rate: float) -> dict[str, Any]:
        """Deliveries per CPU-second is the median over the windows (a neighbour's burst on the
        shared machine spoils one window, not the figure); latency percentiles are over every
        window's samples (``answer``: the last window's, which accumulates them)."""
        per_cpu = sorted(w["delivered"] / w["server_cpu_s"] for w in windows if w["server_cpu_s"] > 0)
        elapsed = sum(w["elapsed_s"] for w in windows)
        delivered = sum(w["delivered"] for w in windows)
        return {
            "offered_msgs_per_s": rate,
            "sent": sum(w["sent"] for w in windows),
            "acked": sum(w["acked"] for w in windows),
            "ack_errors": sum(w["ack_errors"] for w in windows),
            "first_error": answer["first_error"],
            "delivered": delivered,
            "expected": sum(w["expected"] for w in windows),
            "delivered_per_s": delivered / max(elapsed, 1e-6),
            # /proc counts CPU in clock ticks (10 ms): too short a window may show none.
            "delivered_per_cpu_s": round(statistics.median(per_cpu)) if per_cpu else None,
            "delivered_per_cpu_s_range": [round(per_cpu[0]), round(per_cpu[-1])] if per_cpu else None,
            "server_cores": sum(w["server_cpu_s"] for w in windows) / elapsed,
            "latency_ms": answer["latency_ms"],
            "ack_latency_ms": answer["ack_latency_ms"],
            "loadgen_cores": sum(w["loadgen_cpu_s"] for w in windows) / elapsed,
            "other_cores": sum(w["other_cores"] * w["elapsed_s"] for w in windows) / elapsed,
            "windows": len(windows),
        }

    def _fanout_measure(
        self,
        lg: LoadGen,
        servers: list[Server],
        senders: list[dict[str, Any]],
        rate: float,
        recipients: int,
        seconds: float | None = None,
    ) -> dict[str, Any]:
        """Warm up, then measure in ``size.windows`` back-to-back windows (``_fanout_row``)."""
        size = self.size
        self._fanout_warmup(lg, senders, rate, recipients)
        total = seconds or size.measure_s
        windows = []
        answer: dict[str, Any] = {}
        for i in range(size.windows):
            window, answer = self._fanout_window(
                lg, servers, senders, rate, recipients, total / size.windows, i > 0
            )
            windows.append(window)
        return self._fanout_row(windows, answer, rate)

    def fanout(self, targets: list[Target]) -> dict[str, Any]:
        """One room of N members, open-loop senders at a fixed rate, every target at once.

        All targets run side by side, each with its own clients and load generator, and their
        measurement windows take turns (round ``i`` starts at target ``i``): a neighbour's busy
        minute on the shared machine then lands on every server alike instead of on whichever
        was being measured, so the ratios within the run hold still (measured one after the
        other, two runs of the same code differed by up to 1.2x)."""
        size = self.size
        biggest = max(m for m, _ in size.fanout_rooms)
        rows: dict[str, list[dict[str, Any]]] = {target.key: [] for target in targets}
        with ExitStack() as stack:
            running: list[tuple[Target, Server, LoadGen]] = []
            for target in targets:
                server = self.start(target, f"fanout-{target.key}")
                lg = stack.enter_context(self.loadgen(f"loadgen-{target.key}"))
                lg.connect_all(server, biggest)
                for members, _ in size.fanout_rooms:
                    lg.call(120, cmd="join", rooms=[f"fan{members}"], members=list(range(members)))
                running.append((target, server, lg))
            for members, rate in size.fanout_rooms:
                room = f"fan{members}"
                senders = [{"client": i, "room": room} for i in range(min(size.fanout_senders, members))]
                for _, _, lg in running:
                    self._fanout_warmup(lg, senders, rate, members - 1)
                windows: dict[str, list[dict[str, Any]]] = {target.key: [] for target in targets}
                answers: dict[str, dict[str, Any]] = {}
                for i in range(size.windows):
                    for target, server, lg in running[i % len(running) :] + running[: i % len(running)]:
                        window, answers[target.key] = self._fanout_window(
                            lg, [server], senders, rate, members - 1, size.measure_s / size.windows, i > 0
                        )
                        windows[target.key].append(window)
                for target, _, _ in running:
                    row = self._fanout_row(windows[target.key], answers[target.key], rate)
                    row["members"] = members
                    rows[target.key].append(row)
                    stderr(
                        f"  fanout {target.key} room={members}: {row['delivered_per_s']:.0f} deliveries/s, "
                        f"p99 {row['latency_ms']['p99']:.1f} ms"
                    )
            self.stop(*(server for _, server, _ in running))
        return rows

    def rooms(self, targets: list[Target]) -> dict[str, Any]:
        """Many small rooms: one sender per room, all rooms at once."""
        n_rooms, members, rate = self.size.rooms
        out: dict[str, Any] = {}
        for target in targets:
            server = self.start(target, f"rooms-{target.key}")
            with self.loadgen() as lg:
                lg.connect_all(server, n_rooms * members)
                room_names = [f"small{r}" for r in range(n_rooms)]
                lg.call(120, cmd="join", rooms=room_names)  # client i joins room i % n_rooms
                senders = [{"client": r, "room": room_names[r]} for r in range(n_rooms)]
                row = self._fanout_measure(lg, [server], senders, rate, members - 1)
                row.update(rooms=n_rooms, members=members)
            stderr(
                f"  rooms {target.key}: {row['delivered_per_s']:.0f} deliveries/s, "
                f"p99 {row['latency_ms']['p99']:.1f} ms"
            )
            self.stop(server)
            out[target.key] = row
        return out

    def storm(self, targets: list[Target]) -> dict[str, Any]:
        """Connect storm: N clients connect (with a JWT where the server takes one) and join a
        room as fast as the load generator can, a bounded number in flight at once. On chatsvc
        the join carries ``since`` (a reconnecting client catching up; nothing is missed, so
        the catch-up query runs and returns nothing); on Centrifugo it is a subscribe.

        Rooms of ``members`` each: chatsvc announces every join to the rest of the room, so a
        storm into one room would measure an N-squared presence fan-out, not connecting. The
        peers announce joins too (``PRESENCE_ON``, as in the join storm): each server then
        does the same work per connect (before 2026-12-07 they did not, and chatsvc's row
        carried its presence deliveries alone)."""
        clients, members, in_flight = self.size.storm
        rooms = [f"storm{r}" for r in range(max(1, clients // members))]
        since = id_at(int(time.time() * 1000) - 10_000)
        deadline_s = 120.0
        out: dict[str, Any] = {}
        for target in targets:
            server = self.start(target, f"storm-{target.key}", PRESENCE_ON.get(target.kind))
            with self.loadgen() as lg:
                # Warm imports, pools and allocator arenas, as in the idle scenario.
                lg.connect_all(server, min(20, clients))
                lg.call(60, cmd="join", rooms=["storm-warm"])
                lg.call(30, cmd="close")
                time.sleep(0.5)
                window = Window([server.pid], lg.pid)
                answer = lg.connect(
                    server,
                    clients,
                    deadline_s + 60,
                    join_rooms=rooms,
                    since=since,
                    concurrency=in_flight,
                    deadline_ms=deadline_s * 1000,
                )
                usage = window.close()
                lg.call(60, cmd="close")
            self.stop(server)
            if answer["failures"] or answer["not_started"]:
                raise BenchError(f"connect storm on {target.key}: {answer}")
            cpu = usage["server_cpu_s"]
            row = {
                "clients": clients,
                "rooms": len(rooms),
                "in_flight": in_flight,
                "connected": answer["connected"],
                "seconds_to_all": answer["seconds"],
                "connects_per_s": answer["connected"] / max(answer["seconds"], 1e-6),
                "server_cpu_s": cpu,
                # /proc counts CPU in 10 ms ticks: a tiny storm may show none.
                "connects_per_cpu_s": answer["connected"] / cpu if cpu > 0 else None,
                "per_client_ms": answer["per_client_ms"],
                "loadgen_cores": usage["loadgen_cpu_s"] / usage["elapsed_s"],
                "other_cores": usage["other_cores"],
            }
            stderr(
                f"  storm {target.key}: {clients} in {row['seconds_to_all']:.2f}s, "
                f"{row['connects_per_cpu_s'] or 0:.0f} per server CPU-s"
            )
            out[target.key] = row
        return out

    def joinstorm(self, targets: list[Target]) -> dict[str, Any]:
        """Join storm (market open, issue 26): N clients connect and each joins a few rooms
        drawn from a Zipf distribution (the largest room holds about a sixth of them), with
        presence on everywhere: chatsvc announces joins (aggregated in big rooms, its
        default threshold), the Node peer emits one ``presence`` per join to the rest of
        the room, Centrifugo pushes join/leave. Measured: time until every client has
        joined every room, server CPU, presence deliveries, and sockets the server dropped
        (a ping timeout under load shows there)."""
        clients, n_rooms, per_client, in_flight = self.size.joinstorm
        sets = zipf_room_sets(clients, n_rooms, per_client)
        sizes: dict[str, int] = {}
        for rooms in sets:
            for room in rooms:
                sizes[room] = sizes.get(room, 0) + 1
        deadline_s = 120.0
        out: dict[str, Any] = {}
        for target in targets:
            server = self.start(target, f"joinstorm-{target.key}", PRESENCE_ON.get(target.kind))
            with self.loadgen() as lg:
                lg.connect_all(server, min(20, clients))  # warm-up, as in the connect storm
                lg.call(60, cmd="join", rooms=["joinstorm-warm"])
                lg.call(30, cmd="close")
                time.sleep(0.5)
                before = lg.call(30, cmd="ping")
                window = Window([server.pid], lg.pid)
                answer = lg.connect(
                    server,
                    clients,
                    deadline_s + 60,
                    join_sets=sets,
                    concurrency=in_flight,
                    deadline_ms=deadline_s * 1000,
                )
                usage = window.close()
                time.sleep(1.0)  # late presence deliveries, and time for a stalled server to drop sockets
                after = lg.call(30, cmd="ping")
                lg.call(60, cmd="close")
            self.stop(server)
            if answer["failures"] or answer["not_started"]:
                raise BenchError(f"join storm on {target.key}: {answer}")
            cpu = usage["server_cpu_s"]
            row = {
                "clients": clients,
                "rooms": n_rooms,
                "rooms_per_client": per_client,
                "largest_room": max(sizes.values()),
                "in_flight": in_flight,
                "connected": answer["connected"],
                "seconds_to_all": answer["seconds"],
                "server_cpu_s": cpu,
                "joins_per_cpu_s": clients * per_client / cpu if cpu > 0 else None,
                "presence_deliveries": after["presence_events"] - before["presence_events"],
                "dropped": after["dropped"],
                "per_client_ms": answer["per_client_ms"],
                "loadgen_cores": usage["loadgen_cpu_s"] / usage["elapsed_s"],
                "other_cores": usage["other_cores"],
            }
            stderr(
                f"  joinstorm {target.key}: {clients} x {per_client} joins in {row['seconds_to_all']:.2f}s, "
                f"{row['presence_deliveries']} presence deliveries, {row['dropped']} dropped"
            )
            out[target.key] = row
        return out

    def kafka_idle(self, brokers: str) -> dict[str, Any]:
        """What an idle replica pays per Kafka record of rooms it has no members in.

        Replica A (the publisher) and replica B (the idle one) share a fresh topic. Senders
        on A post K messages at a fixed rate into rooms that have nobody on B, so every record
        is exactly what chatsvc's Kafka manager publishes for a room message. B's CPU over that
        window, minus its own idle CPU rate (measured just before), is the cost of reading and
        discarding them. Then one canary message per canary room (each with one member on B)
        proves B has read up to the end: records of a partition arrive in order, and the
        canary rooms' keys land on all 3 partitions of the test broker's topics (murmur2,
        checked once: kcanary0-11 -> partitions 0, 1 and 2). Each offered rate is one such
        measurement: the consumer fetches bigger batches at higher rates, so the cost per
        record is not a constant."""
        points, baseline_s = self.size.kafka_idle
        topic = f"chatsvc.bench.idle.{int(time.time())}"
        kafka = {"KAFKA_BROKERS": brokers, "KAFKA_TOPIC": topic}
        a = self.start(AFTER_MEM, "kafka-idle-a", {**kafka, "CHATSVC_REPLICA_ID": "bench-publisher"})
        b = self.start(AFTER_MEM, "kafka-idle-b", {**kafka, "CHATSVC_REPLICA_ID": "bench-idle"})
        n_senders = min(20, *(records for records, _ in points))
        canaries = 12
        rows = []
        with self.loadgen() as lg:
            lg.connect_all(b, canaries)  # clients 0..canaries-1: canary receivers on B
            lg.connect_all(a, n_senders + canaries)  # then the senders, then the canary senders
            rooms = [f"kidle{r}" for r in range(n_senders)]
            lg.call(60, cmd="join", rooms=rooms, members=list(range(canaries, canaries + n_senders)))
            canary_rooms = [f"kcanary{r}" for r in range(canaries)]
            members = [*range(canaries), *range(canaries + n_senders, canaries + n_senders + canaries)]
            lg.call(60, cmd="join", rooms=canary_rooms, members=members)
            time.sleep(1.0)  # the join announcements reach B before the baseline starts
            for records, rate in points:
                idle = Window([b.pid], lg.pid)
                time.sleep(baseline_s)
                base = idle.close()
                window_a = Window([a.pid], lg.pid)
                window_b = Window([b.pid], lg.pid)
                sent = lg.call(
                    records / rate + 120,
                    cmd="fanout",
                    senders=[{"client": canaries + i, "room": rooms[i]} for i in range(n_senders)],
                    rate=rate,
                    seconds=records / rate,
                    recipients_per_message=0,
                    drain_ms=30000,
                )
                canary = lg.call(
                    120,
                    cmd="fanout",
                    senders=[
                        {"client": canaries + n_senders + i, "room": canary_rooms[i]} for i in range(canaries)
                    ],
                    rate=100.0,
                    seconds=canaries / 100.0,
                    recipients_per_message=1,
                    drain_ms=30000,
                )
                used_b = window_b.close()
                used_a = window_a.close()
                if sent["acked"] != sent["sent"] or canary["delivered"] != canaries:
                    raise BenchError(
                        f"kafka-idle: published {sent['acked']}/{sent['sent']}, canaries {canary}"
                    )
                base_cores = base["server_cpu_s"] / base["elapsed_s"]
                net = max(0.0, used_b["server_cpu_s"] - base_cores * used_b["elapsed_s"])
                row = {
                    "records": sent["acked"],
                    "offered_records_per_s": rate,
                    "achieved_records_per_s": sent["acked"] / max(sent["send_seconds"], 1e-6),
                    "topic_partitions": 3,
                    "elapsed_s": used_b["elapsed_s"],
                    "idle_cpu_s": used_b["server_cpu_s"],
                    "idle_baseline_cores": base_cores,
                    "idle_cpu_ms_per_1000": 1e6 * net / sent["acked"],
                    "idle_cores_at_rate": net / used_b["elapsed_s"],
                    "publisher_cpu_ms_per_1000": 1e6 * used_a["server_cpu_s"] / sent["acked"],
                    "ack_latency_ms": sent["ack_latency_ms"],
                    "other_cores": used_b["other_cores"],
                }
                stderr(
                    f"  kafka-idle @ {rate:g}/s: idle replica {row['idle_cpu_ms_per_1000']:.1f} CPU-ms per "
                    f"1,000 records (publisher {row['publisher_cpu_ms_per_1000']:.0f})"
                )
                rows.append(row)
        self.stop(a, b)
        return {"chatsvc": rows}

    def ablation(self) -> list[dict[str, Any]]:
        """Each optimisation on its own, on a big room and on many small rooms."""
        (big, big_rate), (n_small, small_members, small_rate), seconds = self.size.ablation
        clients = max(big, n_small * small_members)
        rows = []
        for target, deflate, label in ABLATION:
            if "orjson" in target.experiments and harness.python_package_version("orjson") is None:
                continue
            server = self.start(target, f"ablation-{len(rows)}")
            with self.loadgen() as lg:
                lg.connect_all(server, clients, deflate=deflate)
                lg.call(120, cmd="join", rooms=["big"], members=list(range(big)))
                small = [f"s{r}" for r in range(n_small)]
                lg.call(120, cmd="join", rooms=small, members=list(range(n_small * small_members)))
                senders = [{"client": i, "room": "big"} for i in range(min(self.size.fanout_senders, big))]
                big_row = self._fanout_measure(lg, [server], senders, big_rate, big - 1, seconds)
                senders = [{"client": r, "room": small[r]} for r in range(n_small)]
                small_row = self._fanout_measure(
                    lg, [server], senders, small_rate, small_members - 1, seconds
                )
            self.stop(server)
            rows.append(
                {
                    "label": label,
                    "target": target.key,
                    "deflate_offered": deflate,
                    "big": {**big_row, "members": big},
                    "small": {**small_row, "rooms": n_small, "members": small_members},
                }
            )
            stderr(
                f"  ablation {label}: big {big_row['delivered_per_cpu_s']}/cpu-s, "
                f"small {small_row['delivered_per_cpu_s']}/cpu-s"
            )
        return rows

    def service_running(self, name: str) -> bool:
        """``scripts/<name> status`` says it runs."""
        status = harness.run_quiet([f"scripts/{name}", "status"], 60)
        return status.returncode == 0 and "running" in status.stdout and "not running" not in status.stdout

    def ensure_service(self, name: str, *, may_start: bool) -> None:
        """Start ``scripts/<name>`` (and stop it at the end) when allowed and needed."""
        if self.service_running(name):
            return
        if not may_start:
            raise BenchError(f"{name} is not running: start it with `scripts/{name} start`")
        stderr(f"  starting {name} (scripts/{name} start); it will be stopped at the end")
        started = harness.run_quiet([f"scripts/{name}", "start"], 600)
        if started.returncode != 0:
            raise BenchError(f"scripts/{name} start failed: {started.stdout[-500:]}{started.stderr[-500:]}")
        self.cleanups.append(lambda: harness.run_quiet([f"scripts/{name}", "stop"], 300) and None)

    def cross(self, targets: list[Target], brokers: str) -> dict[str, Any]:
        """Sender on replica A, receivers on replica B, through the real Kafka broker;
        against the same layout on one replica (in-process bus) and on the Node peer."""
        receivers, rate = self.size.cross
        out: dict[str, Any] = {}
        stamp = int(time.time())
        for target in targets:
            # A topic per target: replicas rebuild their duplicate window from the room stream
            # at start (first record wins), so a second target on the first one's topic would
            # take the load generator's repeated client_msg_ids for retries and deliver nothing.
            topic = f"chatsvc.bench.{stamp}.{target.key}"
            layouts = ["single"] if target.kind == "peer" else ["cross", "single"]
            for layout in layouts:
                key = f"{target.key}:{layout}"
                if layout == "cross":
                    kafka = {"KAFKA_BROKERS": brokers, "KAFKA_TOPIC": topic}
                    a = self.start(
                        target, f"cross-{target.key}-a", {**kafka, "CHATSVC_REPLICA_ID": "bench-a"}
                    )
                    b = self.start(
                        target, f"cross-{target.key}-b", {**kafka, "CHATSVC_REPLICA_ID": "bench-b"}
                    )
                    servers = [a, b]
                else:
                    a = b = self.start(target, f"cross-{target.key}-single")
                    servers = [a]
                with self.loadgen() as lg:
                    lg.connect_all(b, receivers)
                    lg.connect_all(a, 1)
                    lg.call(60, cmd="join", rooms=["xroom"], members=list(range(receivers + 1)))
                    time.sleep(0.5)
                    senders = [{"client": receivers, "room": "xroom"}]
                    row = self._fanout_measure(lg, servers, senders, rate, receivers)
                    row.update(receivers=receivers, layout=layout, replicas=len(servers))
                lat = row["latency_ms"]
                stderr(f"  cross {key}: p50 {lat['p50']:.1f} p99 {lat['p99']:.1f} ms")
                self.stop(*servers)
                out[key] = row
        return out

    def history(self, stores: list[tuple[str, Target, dict[str, str]]]) -> dict[str, Any]:
        """``history`` page latency (closed loop, 4 clients paging 50 at a time)."""
        out: dict[str, Any] = {}
        room = "hist"
        for key, target, extra in stores:
            server = self.start(target, f"history-{key}", extra)
            with self.loadgen() as lg:
                # Seeded closed loop from SEED_SENDERS clients (bench/history_read.py): an
                # open-loop rate was refused whenever the CQL node's appends stalled.
                asyncio.run(history_read.fill(server, room, self.size.history_messages, SEED_SENDERS))
                lg.connect_all(server, HISTORY_READERS)  # one connection each: handled in turn
                lg.call(60, cmd="join", rooms=[room])
                window = Window([server.pid], lg.pid)
                answer = lg.call(
                    self.size.history_seconds + 60,
                    cmd="history",
                    room=room,
                    seconds=self.size.history_seconds,
                    limit=50,
                    pages=4,
                    workers=HISTORY_READERS,
                )
                usage = window.close()
            if answer["errors"]:
                raise BenchError(
                    f"history on {key}: {answer['errors']} errors, first {answer['first_error']}"
                )
            row = {
                "messages": self.size.history_messages,
                "requests": answer["requests"],
                "requests_per_s": answer["requests"] / usage["elapsed_s"],
                "latency_ms": answer["latency_ms"],
                "server_cores": usage["server_cpu_s"] / usage["elapsed_s"],
                "other_cores": usage["other_cores"],
                "label": target.label if not extra else key,
            }
            lat = row["latency_ms"]
            stderr(f"  history {key}: p50 {lat['p50']:.1f} p99 {lat['p99']:.1f} ms")
            self.stop(server)
            out[key] = row
        return out


def kafka_brokers(args: argparse.Namespace) -> str:
    """``--kafka-brokers``, else this checkout's test broker (its ports are per checkout)."""
    return str(args.kafka_brokers or harness.service_env("kafka")["KAFKA_TEST_PLAINTEXT"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the bench-quick sizes (same as --size quick)")
    parser.add_argument("--size", choices=sorted(SIZES), default=None)
    parser.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)} "
        f"(default: all; quick: {','.join(QUICK_SCENARIOS)})",
    )
    parser.add_argument("--out", type=Path, default=harness.BENCH_DIR / "results")
    parser.add_argument("--name", default=None, help="results file stem (default: results or results-quick)")
    parser.add_argument("--no-before", action="store_true", help="skip the 'before optimisations' runs")
    parser.add_argument(
        "--python-alt",
        default=None,
        help="the python of a venv with chatsvc installed on another CPython: adds a "
        "chatsvc-alt row to the idle and fan-out scenarios (bench/README.md)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="adds a chatsvc-base row to the idle, fan-out, rooms and cross scenarios: chatsvc as it was at "
        "git revision REV, on this interpreter, beside this checkout (before/after of a change, one "
        "run; in cross it gets the same Kafka settings, so it runs its own cluster path)",
    )
    parser.add_argument(
        "--kafka-brokers", default=None, help="default: this checkout's test broker (scripts/kafka env)"
    )
    parser.add_argument(
        "--kafka",
        choices=("auto", "require"),
        default="auto",
        help="auto: start the test broker (scripts/kafka) if it is down, and stop it after; require: fail",
    )
    parser.add_argument(
        "--cql-contact", default=None, help="the CQL node, host:port (default: scripts/cassandra env)"
    )
    parser.add_argument(
        "--cql",
        choices=("auto", "running", "require", "off"),
        default=None,
        help="history on the CQL node: auto (full default) starts scripts/cassandra if it is down and "
        "stops it after; running (quick default) uses it only if it is up; require fails if it is down",
    )
    parser.add_argument(
        "--centrifugo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the Centrifugo peer (built once by bench/peers/centrifugo/install, a few minutes "
        "cold); --no-centrifugo leaves its rows out and says so in the report",
    )
    parser.add_argument("--chart", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    size_name = args.size or ("quick" if args.quick else "full")
    size = SIZES[size_name]
    chosen = args.scenarios or ",".join(ALL_SCENARIOS if size_name == "full" else QUICK_SCENARIOS)
    scenarios = [s.strip() for s in chosen.split(",") if s.strip()]
    unknown = set(scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    for tool in ("node",):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    for folder in (harness.BENCH_DIR, harness.PEER.parent):
        if not (folder / "node_modules").is_dir():
            parser.error(f"run `npm ci` in {folder} first (or `make bench`)")
    harness.raise_fd_limit()
    started = time.monotonic()
    results: dict[str, Any] = {
        "size": size_name,
        "size_params": size.__dict__,
        "machine": harness.machine_description(),
        "rate_limit_env": RATE_LIMIT,
        "optimisations": OPTIMISATIONS,
        "versions": {
            "python-socketio": harness.python_package_version("python-socketio"),
            "python-engineio": harness.python_package_version("python-engineio"),
            "aiohttp": harness.python_package_version("aiohttp"),
            "uvloop": harness.python_package_version("uvloop"),
            "orjson": harness.python_package_version("orjson"),
        },
        "scenarios": {},
        "skipped": {},
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    before = [] if args.no_before else [BEFORE_MEM]
    alt = []
    if args.python_alt:
        version = harness.run_quiet(
            [args.python_alt, "-c", "import platform; print(platform.python_version())"], 30
        )
        label = f"chatsvc on CPython {version.stdout.strip()} (memory store)"
        alt = [Target("chatsvc-alt", label, "chatsvc", (MEMORY,), python=args.python_alt)]
    baseline_tree: Path | None = None
    baseline: list[Target] = []
    if args.baseline:
        source = baseline_tree = Path(tempfile.mkdtemp(prefix="chatsvc-baseline-"))
        short = harness.export_revision(args.baseline, source)
        results["baseline"] = {"rev": args.baseline, "commit": short}
        baseline = [
            Target(BASELINE_KEY, f"chatsvc at {short} (memory store)", "chatsvc", (MEMORY,), source=source)
        ]
        alt += baseline
    centrifugo_bin = None
    centrifugo: list[Target] = []
    if not args.centrifugo:
        results["skipped"]["centrifugo"] = "--no-centrifugo: no Centrifugo rows in this run"
    elif any(s in scenarios for s in ("idle", "fanout", "storm", "joinstorm")):
        stderr("installing/locating Centrifugo (bench/peers/centrifugo/install)")
        centrifugo_bin = harness.install_centrifugo()
        centrifugo = [CENTRIFUGO]
        results["versions"]["centrifugo"] = harness.CENTRIFUGO_VERSION
    results["scenario_list"] = scenarios
    work = Path(tempfile.mkdtemp(prefix="chatsvc-bench-"))
    bench = Bench(size, work, centrifugo_bin)
    if baseline_tree is not None:
        bench.cleanups.append(functools.partial(shutil.rmtree, baseline_tree, ignore_errors=True))
    stderr(f"chatsvc bench ({size_name}); scratch {work}; load {harness.loadavg()}")
    try:
        for scenario in scenarios:
            t0 = time.monotonic()
            stderr(f"[{scenario}]")
            if scenario == "idle":
                data = bench.idle([AFTER_MEM, *alt, *before, PEER, *centrifugo])
            elif scenario == "fanout":
                data = bench.fanout([AFTER_MEM, *alt, *before, AFTER_SQLITE, PEER, *centrifugo])
            elif scenario == "storm":
                data = bench.storm([AFTER_MEM, PEER, *centrifugo])
            elif scenario == "joinstorm":
                data = bench.joinstorm([AFTER_MEM, PEER, *centrifugo])
            elif scenario == "kafka-idle":
                bench.ensure_service("kafka", may_start=args.kafka == "auto")
                data = bench.kafka_idle(kafka_brokers(args))
            elif scenario == "kafka-replicas":
                bench.ensure_service("kafka", may_start=args.kafka == "auto")
                counts, rate, seconds = bench.size.kafka_replicas
                data = {
                    "chatsvc": kafka_replicas.measure(
                        counts, kafka_brokers(args), bench.work, rate=rate, seconds=seconds
                    )
                }
            elif scenario == "rooms":
                data = bench.rooms([AFTER_MEM, *baseline, *before, AFTER_SQLITE, PEER])
            elif scenario == "ablation":
                if harness.python_package_version("orjson") is None:
                    results["skipped"]["ablation:orjson"] = "orjson is not installed"
                data = bench.ablation()
            elif scenario == "cross":
                bench.ensure_service("kafka", may_start=args.kafka == "auto")
                # The baseline gets the same cluster settings: it runs its own path (the events
                # topic if it has one, <KAFKA_TOPIC>.events by default, else the fan-out bus).
                data = bench.cross([AFTER_MEM, *baseline, *before, PEER], kafka_brokers(args))
            else:
                stores: list[tuple[str, Target, dict[str, str]]] = [
                    ("sqlite", AFTER_SQLITE, {}),
                    ("memory", AFTER_MEM, {}),
                ]
                cql = args.cql or ("auto" if size_name == "full" else "running")
                if cql == "running" and not bench.service_running("cassandra"):
                    results["skipped"]["history:cassandra"] = (
                        "the CQL node is not running (scripts/cassandra start)"
                    )
                elif cql == "off":
                    results["skipped"]["history:cassandra"] = "--cql off"
                else:
                    bench.ensure_service("cassandra", may_start=cql == "auto")
                    if args.cql_contact is None:
                        cql_test = harness.service_env("cassandra")
                        args.cql_contact = (
                            f"{cql_test['CASSANDRA_TEST_CONTACT_POINTS']}:{cql_test['CASSANDRA_TEST_PORT']}"
                        )
                    target = Target("chatsvc-cql", "chatsvc (Cassandra 5 CQL)", "chatsvc")
                    # A keyspace of this run's own, dropped at the end (before a CQL node this
                    # run started is stopped): one left on the shared node by another run, or
                    # by another chatsvc version with a newer schema, must not break this one.
                    keyspace = f"chatsvc_bench_{secrets.token_hex(4)}"
                    bench.cleanups.append(
                        functools.partial(harness.drop_cql_keyspace, args.cql_contact, keyspace)
                    )
                    stores.append(("cassandra", target, harness.cql_env(args.cql_contact, keyspace)))
                data = bench.history(stores)
            results["scenarios"][scenario] = data
            results["scenarios"].setdefault("_seconds", {})[scenario] = round(time.monotonic() - t0, 1)
    finally:
        bench.stop_all()
    results["machine"]["loadavg_end"] = harness.loadavg()
    results["seconds"] = round(time.monotonic() - started, 1)
    stem = args.name or ("results" if size_name == "full" else f"results-{size_name}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(report.markdown(results, stem))
    chart = args.chart and harness.python_package_version("matplotlib") is not None
    if chart:
        report.chart(results, args.out / f"{stem}.png")
    elif args.chart:
        stderr("no chart: matplotlib is not installed (pip install matplotlib)")
    shutil.rmtree(work, ignore_errors=True)
    stderr(f"done in {results['seconds']}s -> {args.out / stem}.{{md,json{',png' if chart else ''}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
