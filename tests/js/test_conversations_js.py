"""Direct messages with the official socket.io-client v4 (node) (issue 24): a DM reaches a
client that only connected, and connection state recovery replays the DMs it missed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.deploy.support import NodeClients
from tests.support.clients import TRANSPORTS, ClientPool
from tests.support.tokens import token

FAST = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}


def received(node: NodeClients, name: str, event: str) -> list[dict[str, Any]]:
    return [e for e in node.events if e.get("name") == name and e.get("event") == event]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_open_a_dm_and_receive_it_on_a_client_that_only_connected(
    server_factory: ServerFactory, node: NodeClients, transport: str
) -> None:
    server = server_factory(**FAST)
    alice, bob = f"js-alice-{uuid.uuid4().hex[:6]}", f"js-bob-{uuid.uuid4().hex[:6]}"
    await node.open("a", server.url, token(alice), transports=[transport], upgrade=False)
    await node.open("b", server.url, token(bob), transports=[transport], upgrade=False)
    await node.connected("a")
    await node.connected("b")
    opened = await node.emit("a", "open_dm", {"user": bob})
    assert opened["ok"] is True and opened["kind"] == "direct" and opened["title"] == bob
    room = opened["room"]
    sent = await node.emit("a", "message", {"room": room, "text": "hello from js"})
    assert sent["ok"] is True
    got = await node.wait_for(
        lambda e: e.get("name") == "b" and e.get("event") == "message", what="the DM at b"
    )
    assert got["data"] == sent["message"]
    # bob's side opens the same room and answers without joining.
    theirs = await node.emit("b", "open_dm", {"user": alice})
    assert theirs["room"] == room and theirs["title"] == alice
    reply = await node.emit("b", "message", {"room": room, "text": "hi"})
    await node.wait_for(
        lambda e: e.get("name") == "a" and e.get("event") == "message" and e["data"]["text"] == "hi",
        what="the reply at a",
    )
    await asyncio.sleep(0.3)
    assert [e["data"]["id"] for e in received(node, "b", "message")] == [sent["message"]["id"]]
    assert [e["data"]["id"] for e in received(node, "a", "message")] == [reply["message"]["id"]]


async def test_recovery_replays_the_dms_a_client_that_never_joined_missed(
    server_factory: ServerFactory, node: NodeClients
) -> None:
    server = server_factory(**FAST)
    bob = f"js-rec-{uuid.uuid4().hex[:6]}"
    await node.open("b", server.url, token(bob), recover=True, reconnect=True)
    first = await node.connected("b")
    async with ClientPool() as pool:
        alice = await pool.connect(server.url, token(f"py-alice-{uuid.uuid4().hex[:6]}"))
        room = (await alice.ok("open_dm", {"user": bob}))["room"]
        ids: list[str] = []

        async def post(text: str) -> None:
            ack = await alice.ok("message", {"room": room, "text": text})
            ids.append(ack["message"]["id"])

        for i in range(2):
            await post(f"before {i}")
        last = ids[-1]
        await node.wait_for(lambda e: e.get("event") == "message" and e["data"]["id"] == last)
        await node.send(cmd="drop", name="b", pause_ms=1500)
        await node.wait_for(lambda e: e.get("name") == "b" and e["type"] == "disconnect")
        await asyncio.sleep(0.3)
        for i in range(3):
            await post(f"missed {i}")
        again = await node.connected("b", 2, within=10)
        assert again["recovered"] is True and again["sid"] == first["sid"]
        for i in range(2):
            await post(f"after {i}")
        last = ids[-1]
        await node.wait_for(lambda e: e.get("event") == "message" and e["data"]["id"] == last, within=10)
    await asyncio.sleep(0.3)
    messages = received(node, "b", "message")
    assert sorted(m["data"]["id"] for m in messages) == sorted(ids)  # every one, once
    assert len(messages) == len(ids)
    for m in messages:
        # With its recovery offset: its stream position, then its room.
        assert m["extra"] == [f"{m['data']['pos']}:{m['data']['room']}"]
    assert not node.find(lambda e: e["type"] == "rejoin")


async def test_a_member_removed_while_disconnected_does_not_recover_the_room(
    server_factory: ServerFactory, node: NodeClients
) -> None:
    server = server_factory(**FAST)
    bob = f"js-gone-{uuid.uuid4().hex[:6]}"
    await node.open("b", server.url, token(bob), recover=True, reconnect=True)
    first = await node.connected("b")
    async with ClientPool() as pool:
        owner = await pool.connect(server.url, token(f"py-owner-{uuid.uuid4().hex[:6]}"))
        room = (await owner.ok("create_room", {"title": "Club", "members": [bob]}))["room"]
        assert (await node.emit("b", "join", {"room": room}))["ok"] is True
        before = (await owner.ok("message", {"room": room, "text": "before"}))["message"]
        await node.wait_for(lambda e: e.get("event") == "message" and e["data"]["id"] == before["id"])
        await node.send(cmd="drop", name="b", pause_ms=1500)
        await node.wait_for(lambda e: e.get("name") == "b" and e["type"] == "disconnect")
        await asyncio.sleep(0.3)
        await owner.ok("remove_member", {"room": room, "user": bob})
        await owner.ok("message", {"room": room, "text": "while away"})
        again = await node.connected("b", 2, within=10)
        assert again["recovered"] is True and again["sid"] == first["sid"]
        await owner.ok("message", {"room": room, "text": "after"})
        refused = await node.emit("b", "message", {"room": room, "text": "still here?"})
        assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
    await asyncio.sleep(0.3)
    assert [m["data"]["text"] for m in received(node, "b", "message")] == ["before"]
