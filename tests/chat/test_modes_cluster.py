"""Issue 25's room modes across two replicas over the real Kafka broker and the real CQL
node: sentiment aggregated cluster-wide, slow mode set on one replica holding on the other,
and a surge neither replica's own traffic would cause, announced once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.conftest import ServerFactory
from tests.support.clients import ClientPool
from tests.support.replicas import start_replicas, until_delivered
from tests.support.servers import ServerProcess
from tests.support.tokens import token

MODES = {
    "CHATSVC_SENTIMENT_EVENT_MS": "500",
    # More than 6 messages in 3 s: 4 from each replica together, not either alone.
    "CHATSVC_SURGE_RATE": "2",
    "CHATSVC_SURGE_WINDOW": "3",
    "CHATSVC_SURGE_SLOW_MODE": "3",
}


@pytest.fixture
def replicas(
    server_factory: ServerFactory, cql_keyspace: dict[str, str]
) -> tuple[ServerProcess, ServerProcess]:
    return start_replicas(server_factory, cql_keyspace, **MODES)


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_sentiment_slow_mode_and_surge_are_the_clusters(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    ra, rb = replicas
    async with ClientPool() as pool:
        # Sentiment: posts on both replicas, the same counts read on each.
        room = f"stock:{uuid.uuid4().hex[:8]}"
        alice = await pool.connect(ra.url, token(user("alice")))
        bob = await pool.connect(rb.url, token(user("bob")))
        for client in (alice, bob):
            await client.ok("join", {"room": room})
        await until_delivered(alice, bob, room)
        await until_delivered(bob, alice, room)
        await alice.ok("message", {"room": room, "text": "$AAPL up", "sentiment": "bullish"})
        await alice.ok("message", {"room": room, "text": "$AAPL more", "sentiment": "bullish"})
        await bob.ok("message", {"room": room, "text": "$AAPL down", "sentiment": "bearish"})
        want = {"bullish": 2, "bearish": 1}
        for client in (alice, bob):
            info = await client.ok("room_info", {"room": room})
            assert info["sentiment"]["hour"] == want and info["sentiment"]["day"] == want, info
            assert info["online"] == 2
        carol = await pool.connect(rb.url, token(user("carol")))
        assert (await carol.ok("join", {"room": room}))["sentiment"]["hour"] == want
        # Each replica broadcasts what it counted; the last event anyone sees has the total.
        seen = await bob.next("sentiment", where=lambda e: e["hour"] == want, within=10)
        assert seen["room"] == room

        # Slow mode set through replica a holds for a user on replica b.
        admin = await pool.connect(ra.url, token(user("admin"), roles=["admin"]))
        await admin.ok("set_slow_mode", {"room": room, "seconds": 30})
        assert (await bob.next("room_mode", within=10))["slow_mode_seconds"] == 30
        await asyncio.sleep(1.1)  # each replica re-reads the mode within a second
        await bob.ok("message", {"room": room, "text": "one"})
        assert await bob.error("message", {"room": room, "text": "two"}) == "slow_mode"
        await admin.ok("set_slow_mode", {"room": room, "seconds": 0})

        # Surge: 4 messages stored by each replica in the window, 8 in all.
        hot = f"stock:{uuid.uuid4().hex[:8]}"
        posters_a = [await pool.connect(ra.url, token(user("pa"))) for _ in range(4)]
        posters_b = [await pool.connect(rb.url, token(user("pb"))) for _ in range(4)]
        watcher = await pool.connect(rb.url, token(user("watch")))
        for client in (*posters_a, *posters_b, watcher):
            await client.ok("join", {"room": hot})
        await until_delivered(posters_a[0], watcher, hot)
        await asyncio.sleep(3.5)  # the probes leave the window
        watcher.pending("room_mode")
        for pa, pb in zip(posters_a, posters_b, strict=True):
            await asyncio.gather(
                pa.ok("message", {"room": hot, "text": "a"}), pb.ok("message", {"room": hot, "text": "b"})
            )
        entered = await watcher.next("room_mode", within=15)
        assert (entered["reason"], entered["slow_mode_seconds"]) == ("surge", 3)
        left = await watcher.next("room_mode", within=20)
        assert left["reason"] == "surge_end"
        await asyncio.sleep(1.5)
        assert watcher.pending("room_mode") == [], "each change announced once, by one replica"
