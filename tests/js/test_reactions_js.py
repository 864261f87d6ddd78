"""Reactions and replies with the official socket.io-client v4 (node) (issue 25): a react
from node is seen by a python client and the other way round, and a node client that
drops while reactions and replies happen recovers every one of them exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.deploy.support import NodeClients
from tests.support.clients import ClientPool
from tests.support.tokens import token

FAST = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeClients]:
    clients = await NodeClients(None, tmp_path / "node.log").start()
    yield clients
    await clients.close()


def received(node: NodeClients, name: str, event: str) -> list[dict[str, Any]]:
    return [e for e in node.events if e.get("name") == name and e.get("event") == event]


async def test_reactions_and_replies_across_clients_and_recovered_exactly_once(
    server_factory: ServerFactory, node: NodeClients
) -> None:
    server = server_factory(**FAST)
    room = f"rxjs-{uuid.uuid4().hex[:8]}"
    bob = f"js-bob-{uuid.uuid4().hex[:6]}"
    await node.open("b", server.url, token(bob), recover=True, reconnect=True)
    first = await node.connected("b")
    assert (await node.emit("b", "join", {"room": room}))["ok"] is True
    async with ClientPool() as pool:
        alice = await pool.connect(server.url, token(f"py-alice-{uuid.uuid4().hex[:6]}"))
        await alice.ok("join", {"room": room})
        sent = (await alice.ok("message", {"room": room, "text": "$NVDA"}))["message"]
        await node.wait_for(lambda e: e.get("event") == "message" and e["data"]["id"] == sent["id"])
        mine = await node.emit("b", "react", {"room": room, "id": sent["id"], "emoji": "🚀"})
        assert mine["ok"] is True and mine["count"] == 1
        seen = await alice.next("reaction")
        assert seen["user"]["id"] == bob and seen["emoji"] == "🚀" and seen["count"] == 1
        await alice.ok("react", {"room": room, "id": sent["id"], "emoji": "🚀"})
        await node.wait_for(
            lambda e: e.get("event") == "reaction" and e["data"]["count"] == 2, what="alice's react at node"
        )

        await node.send(cmd="drop", name="b", pause_ms=1500)
        await node.wait_for(lambda e: e.get("name") == "b" and e["type"] == "disconnect")
        await asyncio.sleep(0.3)
        for emoji in (":bull:", "📈"):
            await alice.ok("react", {"room": room, "id": sent["id"], "emoji": emoji})
        await alice.ok("unreact", {"room": room, "id": sent["id"], "emoji": "🚀"})
        reply = (await alice.ok("message", {"room": room, "text": "re", "reply_to": sent["id"]}))["message"]
        again = await node.connected("b", 2, within=10)
        assert again["recovered"] is True and again["sid"] == first["sid"]
        await alice.ok("react", {"room": room, "id": reply["id"], "emoji": "👍"})
        await node.wait_for(
            lambda e: e.get("event") == "reaction" and e["data"]["id"] == reply["id"],
            what="the live react after",
        )
    await asyncio.sleep(0.3)
    reactions = [
        (e["data"]["emoji"], e["data"]["count"], e["data"]["action"]) for e in received(node, "b", "reaction")
    ]
    assert reactions == [
        ("🚀", 1, "add"),
        ("🚀", 2, "add"),
        (":bull:", 1, "add"),
        ("📈", 1, "add"),
        ("🚀", 1, "remove"),
        ("👍", 1, "add"),
    ], "each once, in order"
    for e in received(node, "b", "reaction"):
        # With its recovery offset: its stream position, then its room.
        assert e["extra"] == [f"{e['data']['pos']}:{e['data']['room']}"]
    updates = received(node, "b", "message_updated")
    assert [(u["data"]["id"], u["data"]["reply_count"]) for u in updates] == [(sent["id"], 1)]
    messages = [m["data"]["id"] for m in received(node, "b", "message")]
    assert messages == [sent["id"], reply["id"]]
    assert received(node, "b", "message")[1]["data"]["reply_to"]["id"] == sent["id"]
    assert not node.find(lambda e: e["type"] == "rejoin")
