"""Reactions, replies, pins and mentions with the official socket.io-client v4 (node) (issue
25): a react from node is seen by a python client and the other way round, a node client
that drops while reactions and replies happen recovers every one of them exactly once, a
thread is paged, pins are set and listed, and a mention reaches a socket that never joined."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.conftest import ServerFactory
from tests.deploy.support import NodeClients
from tests.support.clients import ClientPool
from tests.support.tokens import token

FAST = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}


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


async def test_thread_page_pins_and_a_mention_with_the_official_client(
    server_factory: ServerFactory, node: NodeClients
) -> None:
    """Issue 25 with node on both ends: a reply from python paged by node's ``thread``; node
    (an admin) pins and unpins, python sees ``pinned``/``unpinned`` and ``pins``; a mention
    from python reaches a node socket whose user never joined the room."""
    server = server_factory(**FAST)
    room = f"thjs-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    mentioned = f"js-m-{tag}"
    await node.open("a", server.url, token(f"js-admin-{tag}", roles=["admin"]))
    await node.open("m", server.url, token(mentioned))  # connected only, never joins
    for name in ("a", "m"):
        await node.connected(name)
    assert (await node.emit("a", "join", {"room": room}))["ok"] is True
    async with ClientPool() as pool:
        bob = await pool.connect(server.url, token(f"py-bob-{tag}"))
        await bob.ok("join", {"room": room})
        parent = await node.emit("a", "message", {"room": room, "text": "$AMD thread"})
        assert parent["ok"] is True
        pid = parent["message"]["id"]
        replies = [
            (await bob.ok("message", {"room": room, "text": f"re {i}", "reply_to": pid}))["message"]
            for i in range(3)
        ]
        page = await node.emit("a", "thread", {"room": room, "id": pid, "limit": 2})
        assert page["ok"] is True and page["message"]["reply_count"] == 3
        assert [m["id"] for m in page["replies"]] == [replies[2]["id"], replies[1]["id"]]
        older = {"room": room, "id": pid, "limit": 2, "before": page["next_before"]}
        rest = await node.emit("a", "thread", older)
        assert [m["id"] for m in rest["replies"]] == [replies[0]["id"]] and rest["next_before"] is None

        pinned = await node.emit("a", "pin", {"room": room, "id": pid})
        assert pinned["ok"] is True and pinned["changed"] is True
        assert (await bob.next("pinned"))["id"] == pid
        listed = await node.emit("a", "pins", {"room": room})
        assert [p["message"]["id"] for p in listed["pins"]] == [pid]
        refused = await bob.call("pin", {"room": room, "id": replies[0]["id"]})
        assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
        assert (await node.emit("a", "unpin", {"room": room, "id": pid}))["changed"] is True
        assert (await bob.next("unpinned"))["id"] == pid

        said = await bob.ok("message", {"room": room, "text": "look", "mentions": [mentioned]})
        got = await node.wait_for(
            lambda e: e.get("name") == "m" and e.get("event") == "mention", what="the mention at node"
        )
        assert got["data"]["room"] == room and got["data"]["message"]["id"] == said["message"]["id"]
    await asyncio.sleep(0.3)
    assert received(node, "m", "message") == [], "a mention is not a subscription to the room"
    assert len(received(node, "m", "mention")) == 1
