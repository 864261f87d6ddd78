"""Connection state recovery with the official socket.io-client v4 (node) on one replica.

The client opts in (``auth: {token, recover: true}``), its websocket is dropped under it
(``socket.io.engine.close()``: a network drop as the client sees it), messages and edits
are posted meanwhile by a python-socketio client (which never opted in), and the client
reconnects by itself.
"""

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
    """Every ``event`` line of ``name`` (data and the extra arguments)."""
    return [e for e in node.events if e.get("name") == name and e.get("event") == event]


def connects(node: NodeClients, name: str) -> list[dict[str, Any]]:
    return [e for e in node.events if e.get("name") == name and e["type"] == "connect"]


async def test_dropped_websocket_recovers_rooms_and_every_missed_event_once(
    server_factory: ServerFactory, node: NodeClients
) -> None:
    server = server_factory(**FAST)
    room, other = f"rec-{uuid.uuid4().hex[:8]}", f"rec2-{uuid.uuid4().hex[:8]}"
    await node.open("a", server.url, token("js-rec"), recover=True, reconnect=True)
    first = await node.connected("a")
    assert first["recovered"] is False
    for r in (room, other):
        assert (await node.emit("a", "join", {"room": r}))["ok"] is True

    async with ClientPool() as pool:
        bob = await pool.connect(server.url, token("py-bob"))
        for r in (room, other):
            await bob.ok("join", {"room": r})
        texts: list[str] = []

        async def post(text: str, where: str = room) -> dict[str, Any]:
            ack = await bob.ok("message", {"room": where, "text": text})
            texts.append(text)
            return ack["message"]  # type: ignore[no-any-return]

        before = [await post(f"before {i}") for i in range(3)]
        await node.wait_for(lambda e: e.get("event") == "message" and e["data"]["text"] == "before 2")
        # A python client that did not opt in gets one argument per event, as always.
        carol = await pool.connect(server.url, token("py-carol"))
        await carol.ok("join", {"room": room})
        plain = await post("plain")
        assert await carol.next("message") == plain
        before.append(plain)

        await node.send(cmd="drop", name="a", pause_ms=1500)
        await node.wait_for(lambda e: e.get("name") == "a" and e["type"] == "disconnect")
        await asyncio.sleep(0.3)  # the server has seen the close and kept the session
        missed = [await post(f"missed {i}", room if i % 2 else other) for i in range(6)]
        edited = (await bob.ok("edit", {"room": room, "id": before[0]["id"], "text": "edited"}))["message"]
        await bob.ok("delete", {"room": room, "id": before[1]["id"]})

        again = await node.connected("a", 2, within=10)
        assert again["recovered"] is True
        assert again["sid"] == first["sid"]
        after = [await post(f"after {i}") for i in range(3)]
        await node.wait_for(lambda e: e.get("event") == "message" and e["data"]["text"] == "after 2")

    messages = received(node, "a", "message")
    assert [m["data"]["text"] for m in messages] == texts  # each once, in order
    assert [m["data"]["id"] for m in messages] == [m["id"] for m in before + missed + after]
    for m in messages:
        assert m["extra"] == [m["data"]["id"]]  # the offset: the last argument
    [edit] = received(node, "a", "message_edited")
    assert edit["data"]["text"] == "edited" and edit["data"]["id"] == edited["id"]
    assert edit["extra"] == [edit["data"]["event_id"]]
    [deleted] = received(node, "a", "message_deleted")
    assert deleted["data"]["id"] == before[1]["id"]
    assert deleted["extra"] == [deleted["data"]["event_id"]]
    # No rejoin was needed: the rooms were restored (messages of both arrived after it).
    assert not node.find(lambda e: e["type"] == "rejoin")
    # 8 missed, and whatever was posted while the replay was being sent.
    assert "recovered: 2 room(s)" in server.log_text()


async def test_reconnect_after_the_window_is_a_clean_fresh_connect(
    server_factory: ServerFactory, node: NodeClients
) -> None:
    server = server_factory(CHATSVC_RECOVERY_WINDOW="1", **FAST)
    room = f"rec-{uuid.uuid4().hex[:8]}"
    await node.open("a", server.url, token("js-late"), recover=True, reconnect=True)
    first = await node.connected("a")
    assert (await node.emit("a", "join", {"room": room}))["ok"] is True
    await node.send(cmd="drop", name="a", pause_ms=2500)
    again = await node.connected("a", 2, within=10)
    assert again["recovered"] is False
    assert again["sid"] != first["sid"]
    refused = await node.emit("a", "message", {"room": room, "text": "still here?"})
    assert refused["ok"] is False and refused["error"]["code"] == "not_in_room"
    # A fresh session: its own pid, and it recovers next time.
    assert (await node.emit("a", "join", {"room": room}))["ok"] is True
    await node.send(cmd="drop", name="a", pause_ms=200)
    third = await node.connected("a", 3, within=10)
    assert third["recovered"] is True and third["sid"] == again["sid"]
