"""Recovery by position with a real python-socketio client against a real server (SQLite,
the embedded default), over both transports.

python-socketio's client does not implement socket.io's connection state recovery, so
:class:`Recovering` does what socket.io-client does (tests/js/test_recovery_pos.py runs
the official one): it keeps the CONNECT reply's ``pid`` and the last string argument of
the events it receives, and reconnects with ``{token, pid, offset}``. The network drop is
real (:mod:`tests.support.cutter` resets the TCP connections between them): the client
closes nothing, and over polling the server learns of it only at its ping timeout.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.store.conftest import cli_env, drop_keyspace, new_keyspace, scylla_env
from tests.support.clients import ClientPool, until
from tests.support.cutter import cutter
from tests.support.servers import ServerProcess, run_cli
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


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_drop_mid_stream_recovers_every_record_once_in_order(
    server_factory: ServerFactory, transport: str
) -> None:
    """Cut while messages flow (some queued to the dead connection), then messages, a
    reply, an edit, a reaction, a pin, an unpin and a delete in two rooms: after recovery
    the client's stream of each room is exactly a never-dropped client's, minus its own."""
    await drop_mid_stream(server_factory(**ENV), transport)


@pytest.fixture
def cql_keyspace(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh keyspace on the real CQL node, migrated by ``chatsvc migrate``; dropped after."""
    keyspace = new_keyspace()
    env = scylla_env(keyspace)
    done = run_cli(["migrate"], cli_env(tmp_path / "migrate", env), timeout=300)
    assert done.returncode == 0, done.stderr
    yield env
    drop_keyspace(env, keyspace)


async def test_a_drop_mid_stream_recovers_on_scylla_without_kafka(
    server_factory: ServerFactory, cql_keyspace: dict[str, str]
) -> None:
    """The same on ScyllaDB as the one store (no Kafka): it numbers the stream, so
    recovery is by position there too."""
    server = server_factory(**ENV, **cql_keyspace, wait="/readyz")
    await drop_mid_stream(server, "websocket")


async def drop_mid_stream(server: ServerProcess, transport: str) -> None:
    rooms = [f"pos-{uuid.uuid4().hex[:8]}", f"pos2-{uuid.uuid4().hex[:8]}"]
    got: list[tuple[str, list[Any]]] = []
    seen: list[tuple[str, list[Any]]] = []
    async with cutter(server.port) as proxy, ClientPool() as pool:
        alice = await connect(proxy.url, {"token": token("pos-alice"), "recover": True}, transport, got)
        carol = await connect(server.url, {"token": token("pos-carol")}, transport, seen)  # never dropped
        bob = await pool.connect(server.url, token("pos-bob", roles=["admin"]))
        for room in rooms:
            for client in (alice, carol):
                await client.ok("join", {"room": room})
            await bob.ok("join", {"room": room})
        parents = [(await bob.ok("message", {"room": r, "text": "parent"}))["message"] for r in rooms]
        mine = (await alice.ok("message", {"room": rooms[0], "text": "alice's own"}))["message"]
        await every_kind(bob, rooms[0], "before", parents[0]["id"])
        await until(lambda: len(stream_of(events(got), rooms[0])) >= 9, "alice has the first records")
        assert alice.hello.get("pid") and alice.offset is not None

        proxy.cut()
        # Queued to a connection that is gone: the server has not noticed yet.
        in_flight = [(await bob.ok("message", {"room": r, "text": "in flight"}))["message"] for r in rooms]
        await until(lambda: connections(server) == 2, "the server saw the drop", within=15)
        await alice.drop()
        for room, parent in zip(rooms, parents, strict=True):
            await every_kind(bob, room, "missed", parent["id"])

        proxy.mend()
        auth = {"token": token("pos-alice"), "pid": alice.hello["pid"], "offset": alice.offset}
        back = await connect(proxy.url, auth, transport, got)
        assert back.hello == alice.hello  # same sid and pid: socket.recovered
        last = [(await bob.ok("message", {"room": r, "text": "after"}))["message"] for r in rooms]

        def has(received: list[Any], message: dict[str, Any]) -> bool:
            return any(e == "message" and d.get("id") == message["id"] for e, d in events(received))

        await until(lambda: all(has(got, m) and has(seen, m) for m in last), "both have the last messages")
        await back.disconnect()
        await carol.disconnect()

    assert not [e for e in events(got) if e[0] == "message" and e[1]["id"] == mine["id"]]
    for room in rooms:
        own = mine["pos"] if room == mine["room"] else None
        expected = [(e, p) for e, p in stream_of(events(seen), room) if p != own]
        assert stream_of(events(got), room) == expected, f"{room}: not exactly once, in order"
        assert len(expected) >= 12 and {e for e, _ in expected} == STREAM_EVENTS
    for m in in_flight:
        assert has_pos(got, m["pos"], m["room"])
    # Every stream record came with its offset: its position, then its room.
    for event, args in got:
        if event in STREAM_EVENTS:
            assert args[1:] == [f"{args[0]['pos']}:{args[0]['room']}"]
    assert "recovered: 2 room(s)" in server.log_text()


def has_pos(received: list[tuple[str, list[Any]]], pos: str, room: str) -> bool:
    return any(d.get("pos") == pos and d.get("room") == room for _, d in events(received))


@pytest.mark.parametrize("change", ["new epoch", "floor raised"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_position_the_store_cannot_answer_is_a_clean_resync(
    server_factory: ServerFactory, tmp_path: Path, transport: str, change: str
) -> None:
    """The session is still stored, but the store's epoch changed (a restored database),
    or retention raised the room's floor past the client's position: no recovery (a new
    sid, no rooms), and the client's rejoin from its position answers ``reset``."""
    server = server_factory(**ENV)
    room = f"reset-{uuid.uuid4().hex[:8]}"
    got: list[tuple[str, list[Any]]] = []
    async with cutter(server.port) as proxy, ClientPool() as pool:
        alice = await connect(proxy.url, {"token": token("rs-alice"), "recover": True}, transport, got)
        await alice.ok("join", {"room": room})
        bob = await pool.connect(server.url, token("rs-bob"))
        await bob.ok("join", {"room": room})
        await bob.ok("message", {"room": room, "text": "seen"})
        await until(lambda: bool(stream_of(events(got), room)), "alice has a message")
        pos = stream_of(events(got), room)[-1][1]
        proxy.cut()
        await until(lambda: connections(server) == 1, "the server saw the drop", within=15)
        await alice.drop()
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
        auth = {"token": token("rs-alice"), "pid": alice.hello["pid"], "offset": alice.offset}
        back = await connect(proxy.url, auth, transport, got)
        assert back.hello["sid"] != alice.hello["sid"]  # not recovered
        assert back.hello["pid"] != alice.hello["pid"]
        refused = await back.call("message", {"room": room, "text": "still in?"}, timeout=5)
        assert refused["error"]["code"] == "not_in_room"
        rejoined = await back.ok("join", {"room": room, "since": pos})
        assert rejoined["reset"] is True
        assert "missed" in [m["text"] for m in rejoined["messages"]]
        await back.disconnect()
    assert "recovered" not in server.log_text()


async def test_the_replay_leaves_out_blocked_authors_like_live_delivery(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(**ENV)
    room = f"blk-{uuid.uuid4().hex[:8]}"
    got: list[tuple[str, list[Any]]] = []
    async with cutter(server.port) as proxy, ClientPool() as pool:
        alice = await connect(proxy.url, {"token": token("blk-alice"), "recover": True}, "websocket", got)
        await alice.ok("join", {"room": room})
        await alice.ok("block", {"user": "blk-mallory"})
        bob = await pool.connect(server.url, token("blk-bob"))
        mallory = await pool.connect(server.url, token("blk-mallory"))
        for client in (bob, mallory):
            await client.ok("join", {"room": room})
        await mallory.ok("message", {"room": room, "text": "hidden live"})
        await bob.ok("message", {"room": room, "text": "seen live"})
        await until(lambda: bool(stream_of(events(got), room)), "alice has bob's message")
        proxy.cut()
        await until(lambda: connections(server) == 2, "the server saw the drop", within=15)
        await alice.drop()
        await mallory.ok("message", {"room": room, "text": "hidden missed"})
        last = (await bob.ok("message", {"room": room, "text": "seen missed"}))["message"]
        proxy.mend()
        auth = {"token": token("blk-alice"), "pid": alice.hello["pid"], "offset": alice.offset}
        back = await connect(proxy.url, auth, "websocket", got)
        assert back.hello == alice.hello
        await until(lambda: ("message", last["pos"]) in stream_of(events(got), room), "the replay")
        await back.disconnect()
    texts = [d["text"] for e, d in events(got) if e == "message"]
    assert texts == ["seen live", "seen missed"]
