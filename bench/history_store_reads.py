#!/usr/bin/env python3
"""Where a ``history`` page's time goes on the CQL node: each store read it makes, timed alone.

    .venv/bin/python bench/history_store_reads.py [--messages 2000] [--calls 200]

The Scylla store of this checkout, in process, on the CQL test node (``scripts/cassandra
start``; a keyspace of its own, dropped at the end). Seeds ``--messages`` in one room (every
tenth with a reaction), then times ``--calls`` sequential calls of each read a page makes
(chatsvc.chat.room_events.history: the page, then reply summaries, reaction counts and the
reader's own reactions at once; the reader's blocks beside the page), the whole page
with one reader, and four pages at once (the history scenario's four readers). No chatsvc
server and no websocket: what is left of a page's latency in the history scenario beyond
these is the server's CPU and the wait for it. Bounded: every call has the store's timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness

from chatsvc.app import build_store
from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message
from chatsvc.settings import Settings
from chatsvc.store.scylla.store import ScyllaStore

ROOM = "stock-hist"
LIMIT = 50


async def timed(name: str, call: Callable[[], Awaitable[object]], calls: int) -> None:
    took: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await call()
        took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    p50, p99 = took[len(took) // 2], took[min(len(took) - 1, int(len(took) * 0.99))]
    print(f"{name:40s} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")


async def measure(store: ScyllaStore, messages: int, calls: int) -> None:
    start = int(time.time() * 1000) - 10 * messages
    ids: list[str] = []
    for n in range(messages):
        stored, _ = await store.append(
            Message(id_at(start + n), ROOM, f"u{n % 8}", "U", f"m {n} " + "x" * 60, start + n)
        )
        ids.append(stored.id)
    for message_id in ids[9::10]:
        await store.put_reaction(ROOM, message_id, "👍", "u1")
    page = await store.history(ROOM, before=None, limit=LIMIT)
    shown = [m.id for m in page.messages]

    async def whole() -> None:
        found = await store.history(ROOM, before=None, limit=LIMIT)
        listed = [m.id for m in found.messages]
        await asyncio.gather(
            store.thread_summaries(ROOM, listed),
            store.reaction_counts(ROOM, listed),
            store.reactions_of(ROOM, listed, "u1"),
        )

    async def four() -> None:
        await asyncio.gather(*(whole() for _ in range(4)))

    await timed("history, first page", lambda: store.history(ROOM, before=None, limit=LIMIT), calls)
    await timed(
        "history, next page", lambda: store.history(ROOM, before=page.next_before, limit=LIMIT), calls
    )
    await timed("thread_summaries (50 ids)", lambda: store.thread_summaries(ROOM, shown), calls)
    await timed("reaction_counts (50 ids)", lambda: store.reaction_counts(ROOM, shown), calls)
    await timed("reactions_of (50 ids)", lambda: store.reactions_of(ROOM, shown, "u1"), calls)
    await timed("blocks_of (one partition, empty)", lambda: store.blocks_of("u1", limit=100), calls)
    await timed("a page: page, then annotate (2 steps)", whole, calls)
    await timed("four pages at once", four, max(1, calls // 2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    if not (1 <= args.messages <= 20_000 and 1 <= args.calls <= 2_000):
        parser.error("--messages in [1, 20000], --calls in [1, 2000]")
    cql = harness.service_env("cassandra")
    contact = f"{cql['CASSANDRA_TEST_CONTACT_POINTS']}:{cql['CASSANDRA_TEST_PORT']}"
    keyspace = f"chatsvc_bench_reads_{secrets.token_hex(4)}"
    settings = Settings.from_env(
        {
            "CHATSVC_JWT_SECRET": secrets.token_hex(16),
            "CHATSVC_STORE": "scylla",
            **harness.cql_env(contact, keyspace),
        }
    )
    store = build_store(settings)
    assert isinstance(store, ScyllaStore)

    async def run() -> None:
        await store.open()
        try:
            await store.migrate()
            await measure(store, args.messages, args.calls)
        finally:
            await store.aclose()

    try:
        asyncio.run(run())
    finally:
        harness.drop_cql_keyspace(contact, keyspace)
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
