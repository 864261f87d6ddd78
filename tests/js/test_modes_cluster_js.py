"""Issue 25's slow mode and sentiment across two replicas with the official socket.io-client
v4 (node), over the real Kafka broker and the real CQL node: one user with a socket on each
replica posts through one and is refused on the other with ``slow_mode`` and
``retry_after_ms``; sentiment posted through both replicas reads the same on each. The
python-socketio side: tests/chat/test_modes_replicas.py and test_modes_cluster.py.
The second post waits until its replica delivered the first one (the rules are stale by
that one bus hop, README "Slow mode, surge mode, cashtags and sentiment")."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.conftest import ServerFactory
from tests.deploy.support import NodeClients
from tests.support.clients import ClientPool
from tests.support.replicas import start_replicas, until_delivered
from tests.support.tokens import token

SLOW_SECONDS = 30


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def room_info_until(node: NodeClients, name: str, room: str, want: dict[str, int]) -> dict[str, Any]:
    """``room_info`` through socket ``name`` until its hour's sentiment is ``want`` (bounded:
    a replica reuses counts it read for a join for a second)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        info = await node.emit(name, "room_info", {"room": room})
        assert info["ok"] is True, info
        if info["sentiment"]["hour"] == want or asyncio.get_running_loop().time() > deadline:
            return info
        await asyncio.sleep(0.2)


async def test_slow_mode_and_sentiment_hold_across_replicas_with_the_official_client(
    server_factory: ServerFactory, cql_keyspace: dict[str, str], node: NodeClients
) -> None:
    ra, rb = start_replicas(server_factory, cql_keyspace, CHATSVC_SENTIMENT_EVENT_MS="500")
    room = f"stock:js{uuid.uuid4().hex[:8]}"
    alice = user("js-alice")
    # One user with a socket on each replica (a, b); two others, one on each (c, d).
    await node.open("a", ra.url, token(alice))
    await node.open("b", rb.url, token(alice))
    await node.open("c", ra.url, token(user("js-carol")))
    await node.open("d", rb.url, token(user("js-dave")))
    for name in ("a", "b", "c", "d"):
        await node.connected(name, within=20)
        assert (await node.emit(name, "join", {"room": room}))["ok"] is True
    async with ClientPool() as pool:
        probe_a = await pool.connect(ra.url, token(user("probe")))
        watcher_b = await pool.connect(rb.url, token(user("watch")))
        for client in (probe_a, watcher_b):
            await client.ok("join", {"room": room})
        await until_delivered(probe_a, watcher_b, room)
        await until_delivered(watcher_b, probe_a, room)

        # Sentiment: one post through each replica, the cluster's counts read on each.
        up = await node.emit("c", "message", {"room": room, "text": "$AAPL up", "sentiment": "bullish"})
        down = await node.emit("d", "message", {"room": room, "text": "$AAPL down", "sentiment": "bearish"})
        assert up["ok"] is True and down["ok"] is True, (up, down)
        want = {"bullish": 1, "bearish": 1}
        for name in ("c", "d"):
            info = await room_info_until(node, name, room, want)
            assert info["sentiment"]["hour"] == want and info["sentiment"]["day"] == want, info
        await node.wait_for(
            lambda e: e.get("event") == "sentiment" and e["data"]["hour"] == want,
            within=10,
            what="a sentiment event with both replicas' counts",
        )

        # Slow mode set through replica a; alice (no post yet) posts through a, then b.
        admin = await pool.connect(ra.url, token(user("admin"), roles=["admin"]))
        await admin.ok("set_slow_mode", {"room": room, "seconds": SLOW_SECONDS})
        for name in ("a", "b"):
            await node.wait_for(
                lambda e, n=name: (
                    e.get("name") == n
                    and e.get("event") == "room_mode"
                    and e["data"]["slow_mode_seconds"] == SLOW_SECONDS
                ),
                within=10,
                what=f"room_mode at {name}",
            )
        await asyncio.sleep(1.1)  # each replica re-reads the mode within a second
        first = await node.emit("a", "message", {"room": room, "text": "one"})
        assert first["ok"] is True, first
        sent = first["message"]["id"]
        await node.wait_for(
            lambda e: e.get("name") == "b" and e.get("event") == "message" and e["data"]["id"] == sent,
            within=15,
            what="replica b delivering the first post",
        )
        refused = await node.emit("b", "message", {"room": room, "text": "two"})
        assert refused["ok"] is False and refused["error"]["code"] == "slow_mode", refused
        retry = refused["error"]["retry_after_ms"]
        assert isinstance(retry, int) and (SLOW_SECONDS - 5) * 1000 < retry <= SLOW_SECONDS * 1000, retry
        again = await node.emit("a", "message", {"room": room, "text": "two"})
        assert again["ok"] is False and again["error"]["code"] == "slow_mode", again
        texts = [m["text"] for m in (await watcher_b.ok("history", {"room": room}))["messages"]]
    assert "two" not in texts and texts.count("one") == 1, texts
