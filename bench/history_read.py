#!/usr/bin/env python3
"""History page latency on the CQL node, before and after, interleaved in one run.

    .venv/bin/python bench/history_read.py [--baseline REV] [--messages 1000] [--windows 4]

Two chatsvc servers on the CQL test node (``scripts/cassandra start``, its env file), one
keyspace of this run's own (dropped at the end): ``before`` runs revision ``--baseline``
(default ``main``), ``after`` this checkout, on the same rows. Seeded through ``after``
(``--messages`` in one room, every tenth with a reaction and every twentieth a reply, as a
stock room has), then ``--readers`` (4) python-socketio readers per server page back 50 at a time, 4 pages
deep, closed loop, ``--seconds`` per window; the windows alternate between the servers so
both see the same machine load. Prints p50/p90/p99 per server and the load average.
Bounded: every wait has a deadline; servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import jwt  # noqa: E402
import socketio  # noqa: E402

ROOM = "hist"
READERS = 4  # default of --readers
PAGES = 4
LIMIT = 50


def token(sub: str) -> str:
    now = int(time.time())
    body = {"sub": sub, "name": sub, "iat": now, "exp": now + 3600}
    return jwt.encode(body, harness.BENCH_JWT_SECRET, algorithm="HS256")


async def client(server: harness.Server, sub: str, room: str = ROOM) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(server.url, auth={"token": token(sub)}, transports=["websocket"], wait_timeout=10)
    ack = await sio.call("join", {"room": room}, timeout=10)
    if not ack.get("ok"):
        raise harness.BenchError(f"join refused: {ack}")
    return sio


async def seed(server: harness.Server, messages: int) -> None:
    sio = await client(server, "seeder")
    try:
        ids: list[str] = []
        for n in range(messages):
            body: dict[str, Any] = {
                "room": ROOM,
                "text": f"message {n} " + "x" * 60,
                "client_msg_id": uuid.uuid4().hex,
            }
            if n % 20 == 19 and ids:
                body["reply_to"] = ids[-5]
            ack = await sio.call("message", body, timeout=10)
            if not ack.get("ok"):
                raise harness.BenchError(f"seeding: {ack}")
            ids.append(ack["message"]["id"])
            if n % 10 == 9:
                react = await sio.call("react", {"room": ROOM, "id": ids[-1], "emoji": "👍"}, timeout=10)
                if not react.get("ok"):
                    raise harness.BenchError(f"seeding a reaction: {react}")
    finally:
        await sio.disconnect()


async def fill(server: harness.Server, room: str, messages: int, senders: int) -> None:
    """``messages`` plain messages in ``room`` from ``senders`` clients, each sending its
    next one when the last is acked (closed loop): seeding is not what is measured, and an
    open-loop rate would be refused (``rate_limited``) whenever the store stalls for longer
    than a connection's 64 waiting events last (the CQL node's appends do, here)."""
    left = iter(range(messages))

    async def send(n: int) -> None:
        sio = await client(server, f"seeder-{n}", room)
        try:
            for i in left:
                body = {"room": room, "text": f"message {i} " + "x" * 60, "client_msg_id": uuid.uuid4().hex}
                ack = await sio.call("message", body, timeout=30)
                if not ack.get("ok"):
                    raise harness.BenchError(f"seeding: message {i} refused: {ack}")
        finally:
            await sio.disconnect()

    await asyncio.gather(*(send(n) for n in range(senders)))


async def window(server: harness.Server, readers: list[socketio.AsyncClient], seconds: float) -> list[float]:
    latencies: list[float] = []
    errors: list[Any] = []
    end = time.monotonic() + seconds

    async def read(sio: socketio.AsyncClient) -> None:
        while time.monotonic() < end:
            before = None
            for _ in range(PAGES):
                payload: dict[str, Any] = {"room": ROOM, "limit": LIMIT}
                if before:
                    payload["before"] = before
                t0 = time.perf_counter()
                ack = await sio.call("history", payload, timeout=10)
                latencies.append((time.perf_counter() - t0) * 1000)
                if not ack.get("ok") or len(ack["messages"]) != LIMIT:
                    errors.append(ack)
                    return
                before = ack["next_before"]

    await asyncio.gather(*(read(r) for r in readers))
    if errors:
        raise harness.BenchError(f"history on {server.name}: {errors[0]!r:.300}")
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def measure(servers: dict[str, harness.Server], args: argparse.Namespace) -> dict[str, Any]:
    await seed(servers["after"], args.messages)
    await asyncio.sleep(1.0)
    readers = {
        k: [await client(server, f"reader-{k}-{i}") for i in range(args.readers)]
        for k, server in servers.items()
    }
    found: dict[str, list[float]] = {k: [] for k in servers}
    cpu = dict.fromkeys(servers, 0.0)
    try:
        for k, server in servers.items():  # warm both (prepared statements, connections)
            await window(server, readers[k], 0.5)
        for w in range(args.windows):
            order = list(servers) if w % 2 == 0 else list(reversed(servers))
            for k in order:
                used = servers[k].cpu_seconds()
                found[k].extend(await window(servers[k], readers[k], args.seconds))
                cpu[k] += servers[k].cpu_seconds() - used
    finally:
        for rs in readers.values():
            for r in rs:
                await r.disconnect()
    return {
        k: {
            "n": len(v),
            "p50_ms": pct(v, 0.5),
            "p90_ms": pct(v, 0.9),
            "p99_ms": pct(v, 0.99),
            "max_ms": pct(v, 1.0),
            "server_cpu_ms_per_page": round(1000 * cpu[k] / max(1, len(v)), 2),
        }
        for k, v in found.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--readers", type=int, default=READERS, help="closed-loop readers per server")
    args = parser.parse_args()
    cql = harness.service_env("cassandra")
    contact = f"{cql['CASSANDRA_TEST_CONTACT_POINTS']}:{cql['CASSANDRA_TEST_PORT']}"
    keyspace = f"chatsvc_bench_hist_{secrets.token_hex(4)}"
    env = {
        "CHATSVC_STORE": "scylla",
        **harness.cql_env(contact, keyspace),
        **harness.FLOOD_LIMITS,
    }
    servers: dict[str, harness.Server] = {}
    with tempfile.TemporaryDirectory(prefix="chatsvc-history-read-") as tmp:
        work = Path(tmp)
        base = harness.export_revision(args.baseline, work / "baseline")
        try:
            servers["after"] = harness.start_chatsvc("after", work, env)  # migrates the keyspace
            servers["before"] = harness.start_chatsvc("before", work, env, source=work / "baseline")
            result = asyncio.run(measure(servers, args))
        finally:
            for server in servers.values():
                server.stop()
            harness.drop_cql_keyspace(contact, keyspace)
    print(
        json.dumps({"baseline": base, "messages": args.messages, **result, "load": list(harness.loadavg())})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
