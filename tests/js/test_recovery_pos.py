"""Recovery by position with the official socket.io-client v4 (node), over websocket and
polling, against one real server (SQLite, the embedded default).

The client opts in and reconnects by itself; the drop is a real network cut
(:mod:`tests.support.cutter`), so the client closes nothing: over polling the server
learns of it at its ping timeout. A python-socketio client that never drops records the
room streams as they happened; the recovered client's must be the same, minus its own.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.deploy.support import NodeClients
from tests.support.clients import ClientPool, until
from tests.support.cutter import cutter
from tests.support.stream_scenario import (
    ENV,
    STREAM_EVENTS,
    TRANSPORTS,
    connect,
    connections,
    data_dir,
    events,
    every_kind,
    new_epoch,
    raise_floor,
    stream_of,
)
from tests.support.tokens import token


def opts(transport: str) -> dict[str, Any]:
    """socket.io-client opted in to recovery, reconnecting by itself, on ``transport`` only."""
    return {"recover": True, "reconnect": True, "transports": [transport]}


def node_events(node: NodeClients, name: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e["event"], e["data"])
        for e in node.events
        if e.get("name") == name and e.get("type") == "event" and isinstance(e.get("data"), dict)
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_socket_io_client_recovers_every_record_once_in_order(
    server_factory: ServerFactory, node: NodeClients, transport: str
) -> None:
    server = server_factory(**ENV)
    rooms = [f"jspos-{uuid.uuid4().hex[:8]}", f"jspos2-{uuid.uuid4().hex[:8]}"]
    seen: list[tuple[str, list[Any]]] = []
    async with cutter(server.port) as proxy, ClientPool() as pool:
        await node.open("a", proxy.url, token("jspos-a"), **opts(transport))
        first = await node.connected("a")
        assert first["recovered"] is False and first["transport"] == transport
        carol = await connect(server.url, {"token": token("jspos-carol")}, "websocket", seen)
        bob = await pool.connect(server.url, token("jspos-bob", roles=["admin"]))
        for room in rooms:
            assert (await node.emit("a", "join", {"room": room}))["ok"] is True
            await carol.ok("join", {"room": room})
            await bob.ok("join", {"room": room})
        parents = [(await bob.ok("message", {"room": r, "text": "parent"}))["message"] for r in rooms]
        mine = (await node.emit("a", "message", {"room": rooms[0], "text": "a's own"}))["message"]
        await every_kind(bob, rooms[0], "before", parents[0]["id"])
        await node.wait_for(lambda e: e.get("name") == "a" and e.get("event") == "message_deleted")

        proxy.cut()
        in_flight = [(await bob.ok("message", {"room": r, "text": "in flight"}))["message"] for r in rooms]
        await until(lambda: connections(server) == 2, "the server saw the drop", within=15)
        for room, parent in zip(rooms, parents, strict=True):
            await every_kind(bob, room, "missed", parent["id"])
        proxy.mend()

        again = await node.connected("a", 2, within=30)
        assert again["recovered"] is True and again["sid"] == first["sid"]
        last = [(await bob.ok("message", {"room": r, "text": "after"}))["message"] for r in rooms]

        def has(got: list[tuple[str, dict[str, Any]]], message: dict[str, Any]) -> bool:
            return any(e == "message" and d.get("id") == message["id"] for e, d in got)

        await until(
            lambda: all(has(node_events(node, "a"), m) and has(events(seen), m) for m in last),
            "both have the last messages",
        )
        await carol.disconnect()

    got = node_events(node, "a")
    assert not [d for e, d in got if e == "message" and d["id"] == mine["id"]]
    for room in rooms:
        own = mine["pos"] if room == mine["room"] else None
        expected = [(e, p) for e, p in stream_of(events(seen), room) if p != own]
        assert stream_of(got, room) == expected, f"{room}: not exactly once, in order"
        assert {e for e, _ in expected} == STREAM_EVENTS
    for m in in_flight:
        assert ("message", m["pos"]) in stream_of(got, m["room"])
    for e in node.events:
        if e.get("name") == "a" and e.get("event") in STREAM_EVENTS:
            assert e["extra"] == [f"{e['data']['pos']}:{e['data']['room']}"]  # the offset
    assert not node.find(lambda e: e["type"] == "rejoin")
    assert "recovered: 2 room(s)" in server.log_text()


@pytest.mark.parametrize("change", ["new epoch", "floor raised"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_socket_io_client_resyncs_when_its_position_cannot_be_answered(
    server_factory: ServerFactory, node: NodeClients, transport: str, change: str
) -> None:
    server = server_factory(**ENV)
    room = f"jsreset-{uuid.uuid4().hex[:8]}"
    async with cutter(server.port) as proxy, ClientPool() as pool:
        await node.open("a", proxy.url, token("jsreset-a"), **opts(transport))
        first = await node.connected("a")
        assert (await node.emit("a", "join", {"room": room}))["ok"] is True
        bob = await pool.connect(server.url, token("jsreset-bob"))
        await bob.ok("join", {"room": room})
        seen = (await bob.ok("message", {"room": room, "text": "seen"}))["message"]
        await node.wait_for(lambda e: e.get("event") == "message" and e["data"]["id"] == seen["id"])
        proxy.cut()
        await until(lambda: connections(server) == 1, "the server saw the drop", within=15)
        await bob.ok("message", {"room": room, "text": "missed"})
        if change == "floor raised":
            raise_floor(data_dir(server), room)
        else:
            await bob.disconnect()
            server.stop()
            new_epoch(data_dir(server))
            server = server_factory(name="again", data_dir=data_dir(server), **ENV)
            proxy.target = server.port
        proxy.mend()
        again = await node.connected("a", 2, within=30)
        assert again["recovered"] is False and again["sid"] != first["sid"]
        refused = await node.emit("a", "message", {"room": room, "text": "still in?"})
        assert refused["error"]["code"] == "not_in_room"
        rejoined = await node.emit("a", "join", {"room": room, "since": seen["pos"]})
        assert rejoined["ok"] is True and rejoined["reset"] is True
        assert "missed" in [m["text"] for m in rejoined["messages"]]
    assert "recovered" not in server.log_text()
