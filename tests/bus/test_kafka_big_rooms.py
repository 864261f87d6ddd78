"""Big rooms across two replicas over the real broker: the bus carries per-user presence
and typing; each replica aggregates for its own sockets, and both end on the same count."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bus.helpers import ChatClient, new_topic, replica_env
from tests.bus.test_kafka_cluster import two_replicas
from tests.conftest import ServerFactory
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.integration

BIG = 5
WINDOW = 0.5
PER_REPLICA = 15


async def test_members_on_both_replicas_get_the_same_counts_not_per_user_events(
    kafka: dict[str, str],
    server_factory: ServerFactory,
    tmp_path: Path,
    clients: Callable[[ServerProcess, str], Any],
) -> None:
    env = replica_env(kafka, tls=False, topic=new_topic()) | {
        "CHATSVC_BIG_ROOM_MEMBERS": str(BIG),
        "CHATSVC_PRESENCE_COALESCE_MS": str(int(WINDOW * 1000)),
        "CHATSVC_RATE_LIMIT_PER_SECOND": "1000",
        "CHATSVC_RATE_LIMIT_BURST": "1000",
    }
    r1, r2 = two_replicas(server_factory, tmp_path, env)
    room = f"hot-{uuid.uuid4().hex[:8]}"
    watch1: ChatClient = await clients(r1, "watch1")
    watch2: ChatClient = await clients(r2, "watch2")
    for watcher in (watch1, watch2):
        await watcher.call("join", {"room": room})

    async def join(replica: ServerProcess, sub: str) -> ChatClient:
        client: ChatClient = await clients(replica, sub)
        await client.call("join", {"room": room})
        return client

    started = time.monotonic()
    crowd = await asyncio.gather(
        *(
            join(replica, f"{name}-{i}")
            for i in range(PER_REPLICA)
            for replica, name in ((r1, "a"), (r2, "b"))
        )
    )
    took = time.monotonic() - started
    total = 2 + 2 * PER_REPLICA

    def final(watcher: ChatClient) -> Callable[[], bool]:
        return lambda: any(e.get("online") == total and "user" not in e for e in watcher.events["presence"])

    for watcher in (watch1, watch2):
        await watcher.wait_until(f"presence {{online: {total}}}", final(watcher), within=15)
    await asyncio.sleep(WINDOW * 2)
    elapsed = time.monotonic() - started
    for watcher in (watch1, watch2):
        events = watcher.events["presence"]
        per_user = [e for e in events if "user" in e]
        aggregated = [e for e in events if "user" not in e]
        # Only joins that found the room still small went out one by one.
        assert len(per_user) <= BIG, per_user
        assert all(set(e) == {"room", "online"} for e in aggregated), aggregated
        # At most one count per window, however long a busy machine made the burst (took).
        assert len(aggregated) <= elapsed / WINDOW + 2, (aggregated, took, elapsed)
        assert aggregated[-1]["online"] == total, aggregated

    # Typing on r2, seen coalesced on r1: users capped, count exact.
    typists = [c for c in crowd if c.sub.startswith("b-")][:6]
    for typist in typists:
        await typist.call("typing", {"room": room, "typing": True})
    await watch1.wait_until(
        "typing {count: 6}", lambda: any(e.get("count") == 6 for e in watch1.events["typing"]), within=10
    )
    assert all("user" not in e and len(e["users"]) <= 3 for e in watch1.events["typing"])

    # Leaves on r2: r1's members see the count fall too.
    await asyncio.gather(*(c.close() for c in typists))
    for watcher in (watch1, watch2):
        await watcher.wait_until(
            f"presence {{online: {total - 6}}}",
            lambda w=watcher: w.events["presence"][-1].get("online") == total - 6,  # type: ignore[misc]
            within=10,
        )
    await watch1.wait_until(
        "typing {count: 0}", lambda: watch1.events["typing"][-1].get("count") == 0, within=10
    )
