"""Connection state recovery with the official socket.io-client v4 (node) on one replica.

The client opts in (``auth: {token, recover: true}``), its websocket is dropped under it
(``socket.io.engine.close()``: a network drop as the client sees it), messages and edits
are posted meanwhile by a python-socketio client (which never opted in), and the client
reconnects by itself.
"""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from typing import Any

from tests.conftest import ServerFactory
from tests.deploy.support import NodeClients
from tests.support.clients import ClientPool
from tests.support.replicas import FAST, start_replicas
from tests.support.servers import ServerProcess
from tests.support.tokens import token


def received(node: NodeClients, name: str, event: str) -> list[dict[str, Any]]:
    """Every ``event`` line of ``name`` (data and the extra arguments)."""
    return [e for e in node.events if e.get("name") == name and e.get("event") == event]


def server_metrics(server: ServerProcess) -> str:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def offset(data: dict[str, Any]) -> str:
    """The recovery offset of a stream record: its position, then its room (every mode
    delivers positions: chatsvc.chat.recovery_pos)."""
    return f"{data['pos']}:{data['room']}"


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
        assert m["extra"] == [offset(m["data"])]  # the offset: the last argument
    [edit] = received(node, "a", "message_edited")
    assert edit["data"]["text"] == "edited" and edit["data"]["id"] == edited["id"]
    assert edit["extra"] == [offset(edit["data"])]
    [deleted] = received(node, "a", "message_deleted")
    assert deleted["data"]["id"] == before[1]["id"]
    assert deleted["extra"] == [offset(deleted["data"])]
    # No rejoin was needed: the rooms were restored (messages of both arrived after it).
    assert not node.find(lambda e: e["type"] == "rejoin")
    # 8 missed, and whatever was posted while the replay was being sent.
    assert "recovered: 2 room(s)" in server.log_text()
    status, metrics = server.http_status("/metrics"), server_metrics(server)
    assert status == 200 and 'chatsvc_recoveries_total{outcome="recovered"} 1.0' in metrics


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
    # The client sees `recovered` with the CONNECT reply; the server counts the recovery
    # once the replay is done, a moment later.
    metrics = server_metrics(server)
    for _ in range(100):
        if 'chatsvc_recoveries_total{outcome="recovered"} 1.0' in metrics:
            break
        await asyncio.sleep(0.05)
        metrics = server_metrics(server)
    assert 'chatsvc_recoveries_total{outcome="fresh"} 1.0' in metrics
    assert 'chatsvc_recoveries_total{outcome="recovered"} 1.0' in metrics


async def test_recovery_on_the_other_replica_over_kafka_and_cql(
    server_factory: ServerFactory, node: NodeClients, cql_keyspace: dict[str, str]
) -> None:
    """Dropped on replica 1, back through replica 2: the session and every missed message
    (posted on both replicas, so ids from two clocks interleave) come from Kafka and CQL."""
    r1, r2 = start_replicas(server_factory, cql_keyspace)
    room = f"cross-{uuid.uuid4().hex[:8]}"
    await node.open("a", r1.url, token("js-cross"), recover=True, reconnect=True)
    first = await node.connected("a", within=20)
    assert (await node.emit("a", "join", {"room": room}))["ok"] is True

    async with ClientPool() as pool:
        senders = {
            "on-r1": await pool.connect(r1.url, token("on-r1")),
            "on-r2": await pool.connect(r2.url, token("on-r2")),
        }
        for sender in senders.values():
            await sender.ok("join", {"room": room})
        sent: dict[str, list[str]] = {name: [] for name in senders}

        async def burst(label: str, count: int) -> None:
            for i in range(count):
                for name, sender in senders.items():
                    ack = await sender.ok("message", {"room": room, "text": f"{name} {label} {i}"})
                    sent[name].append(ack["message"]["id"])

        await burst("before", 3)
        last = sent["on-r1"][-1]
        await node.wait_for(lambda e: e.get("event") == "message" and e["data"]["id"] == last, within=20)
        await node.send(cmd="drop", name="a", pause_ms=1500, url=r2.url)
        await node.wait_for(lambda e: e.get("name") == "a" and e["type"] == "disconnect")
        await asyncio.sleep(0.3)
        await burst("missed", 5)
        again = await node.connected("a", 2, within=20)
        assert again["recovered"] is True and again["sid"] == first["sid"]
        await burst("after", 3)
        want = {i for ids in sent.values() for i in ids}

        def all_in() -> bool:
            return want <= {m["data"]["id"] for m in received(node, "a", "message")}

        await node.wait_for(lambda _e: all_in(), within=20, what="every message")

    messages = received(node, "a", "message")
    ids = [m["data"]["id"] for m in messages]
    assert len(ids) == len(set(ids)) == len(want), "a message arrived twice"
    for name, order in sent.items():
        assert [i for i in ids if i in set(order)] == order, f"{name}'s messages out of order"
    # Cluster mode recovers by position too: the events topic's offsets, in stream order.
    assert all(m["extra"] == [offset(m["data"])] for m in messages)
    positions = [int(m["data"]["pos"].split(":")[1]) for m in messages]
    assert positions == sorted(positions), "not in stream order"
    assert "recovered: 1 room(s)" in r2.log_text()
    assert "recovered" not in r1.log_text()
