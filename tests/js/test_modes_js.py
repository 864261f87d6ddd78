"""Slow mode, surge mode, cashtags, sentiment and room_info with the official
socket.io-client v4 (node) (issue 25), beside python-socketio clients."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.conftest import ServerFactory
from tests.deploy.support import NodeClients
from tests.support.clients import ClientPool
from tests.support.tokens import token

ENV = {
    "CHATSVC_RATE_LIMIT_PER_SECOND": "1000",
    "CHATSVC_RATE_LIMIT_BURST": "1000",
    "CHATSVC_SENTIMENT_EVENT_MS": "500",
    # More than 6 messages in 3 s is a surge.
    "CHATSVC_SURGE_RATE": "2",
    "CHATSVC_SURGE_WINDOW": "3",
    "CHATSVC_SURGE_SLOW_MODE": "2",
}


def events(node: NodeClients, event: str) -> list[dict[str, Any]]:
    return [e["data"] for e in node.events if e.get("name") == "n" and e.get("event") == event]


async def test_modes_tickers_and_sentiment_with_the_official_client(
    server_factory: ServerFactory, node: NodeClients
) -> None:
    server = server_factory(**ENV)
    room = f"stock:js{uuid.uuid4().hex[:8]}"
    await node.open("n", server.url, token(f"js-{uuid.uuid4().hex[:6]}"))
    await node.connected("n")
    joined = await node.emit("n", "join", {"room": room})
    assert joined["ok"] is True and joined["slow_mode_seconds"] == 0
    assert joined["sentiment"]["hour"] == {"bullish": 0, "bearish": 0}
    async with ClientPool() as pool:
        admin = await pool.connect(server.url, token(f"admin-{uuid.uuid4().hex[:6]}", roles=["admin"]))
        await admin.ok("join", {"room": room})

        # Cashtags and sentiment, from node, seen by python.
        sent = await node.emit(
            "n", "message", {"room": room, "text": "$AAPL and $brk.b", "sentiment": "bullish"}
        )
        assert sent["ok"] is True
        assert sent["message"]["tickers"] == ["AAPL", "BRK.B"] and sent["message"]["sentiment"] == "bullish"
        seen = await admin.next("message")
        assert seen["tickers"] == ["AAPL", "BRK.B"] and seen["sentiment"] == "bullish"
        bad = await node.emit("n", "message", {"room": room, "text": "x", "sentiment": "meh"})
        assert bad == {"ok": False, "error": {"code": "invalid_payload", "message": bad["error"]["message"]}}
        await node.wait_for(
            lambda e: e.get("event") == "sentiment" and e["data"]["hour"]["bullish"] == 1, what="sentiment"
        )
        info = await node.emit("n", "room_info", {"room": room})
        assert info["online"] == 2 and info["sentiment"]["day"] == {"bullish": 1, "bearish": 0}

        # Slow mode set by the python admin refuses node's second post with retry_after_ms.
        await admin.ok("set_slow_mode", {"room": room, "seconds": 2})
        await node.wait_for(lambda e: e.get("event") == "room_mode", what="room_mode")
        assert events(node, "room_mode")[-1]["reason"] == "moderator"
        assert (await node.emit("n", "message", {"room": room, "text": "one"}))["ok"] is True
        refused = await node.emit("n", "message", {"room": room, "text": "two"})
        assert refused["ok"] is False and refused["error"]["code"] == "slow_mode"
        assert 0 < refused["error"]["retry_after_ms"] <= 2000
        await admin.ok("set_slow_mode", {"room": room, "seconds": 0})
        await node.wait_for(lambda e: e.get("event") == "room_mode" and e["data"]["slow_mode_seconds"] == 0)
        await asyncio.sleep(3.2)  # the window forgets the posts so far

        # Surge: a bounded burst from four python users; node sees it entered and left.
        posters = [await pool.connect(server.url, token(f"p{i}-{uuid.uuid4().hex[:6]}")) for i in range(4)]
        for poster in posters:
            await poster.ok("join", {"room": room})
        for i in range(12):
            await posters[i % 4].call("message", {"room": room, "text": f"burst {i}"})
        await node.wait_for(
            lambda e: e.get("event") == "room_mode" and e["data"]["reason"] == "surge",
            within=15,
            what="surge",
        )
        await node.wait_for(
            lambda e: e.get("event") == "room_mode" and e["data"]["reason"] == "surge_end",
            within=20,
            what="surge_end",
        )
    reasons = [e["reason"] for e in events(node, "room_mode")]
    assert reasons == ["moderator", "moderator", "surge", "surge_end"]


async def test_a_dropped_client_recovers_room_mode_changes_exactly_once(
    server_factory: ServerFactory, node: NodeClients
) -> None:
    server = server_factory(**ENV)
    room = f"stock:js{uuid.uuid4().hex[:8]}"
    await node.open("n", server.url, token(f"js-{uuid.uuid4().hex[:6]}"), recover=True, reconnect=True)
    first = await node.connected("n")
    assert (await node.emit("n", "join", {"room": room}))["ok"] is True
    async with ClientPool() as pool:
        admin = await pool.connect(server.url, token(f"admin-{uuid.uuid4().hex[:6]}", roles=["admin"]))
        await admin.ok("join", {"room": room})
        await admin.ok("set_slow_mode", {"room": room, "seconds": 5})
        await node.wait_for(lambda e: e.get("event") == "room_mode", what="the live room_mode")
        await node.send(cmd="drop", name="n", pause_ms=1500)
        await node.wait_for(lambda e: e.get("name") == "n" and e["type"] == "disconnect")
        await asyncio.sleep(0.3)
        await admin.ok("set_slow_mode", {"room": room, "seconds": 7})
        await admin.ok("set_slow_mode", {"room": room, "seconds": 0})
        again = await node.connected("n", 2, within=10)
        assert again["recovered"] is True and again["sid"] == first["sid"]
        await admin.ok("set_slow_mode", {"room": room, "seconds": 9})
        await node.wait_for(
            lambda e: e.get("event") == "room_mode" and e["data"]["slow_mode_seconds"] == 9,
            what="the live one after",
        )
    await asyncio.sleep(0.3)
    assert [e["slow_mode_seconds"] for e in events(node, "room_mode")] == [5, 7, 0, 9]
