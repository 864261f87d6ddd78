"""The admin API across replicas: two (and a third, crashing) chatsvc on the real Kafka broker.

The replicas share one CHATSVC_DATA_DIR, so one SQLite history and one set of bans and
mutes; presence, disconnects, kicks and moderation changes travel on the bus's control
channel. Every call goes to one replica about users connected to the other.
"""

from __future__ import annotations

import asyncio
import re
import signal
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import socketio

from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import Admin, admin_client, unique, until
from tests.conftest import ServerFactory
from tests.support.clients import ClientPool
from tests.support.servers import ServerProcess, base_env, free_port
from tests.support.services import kafka_env
from tests.support.tokens import token

HEARTBEAT = "0.5"


def _cluster_env(topic: str) -> dict[str, str]:
    kafka = kafka_env()  # fails with `scripts/kafka start` when the broker is not running
    return {
        "KAFKA_BROKERS": kafka["KAFKA_TEST_PLAINTEXT"],
        "KAFKA_TOPIC": topic,
        "KAFKA_RETRY_BACKOFF_MS": "200",
        "KAFKA_CONNECT_RETRIES": "5",
        "CHATSVC_CLUSTER_HEARTBEAT": HEARTBEAT,
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess, Path]]:
    """Replicas r1 and r2 on one topic and one data dir; yields them and the data dir."""
    directory = tmp_path_factory.mktemp("cluster")
    data = directory / "shared-data"
    env = _cluster_env(f"chatsvc.test.admin.{uuid.uuid4().hex[:10]}")
    started: list[ServerProcess] = []
    try:
        for name in ("r1", "r2"):
            full = base_env(data, free_port()) | env | {"CHATSVC_REPLICA_ID": name}
            started.append(ServerProcess(full, directory / f"{name}.log").start())
        yield started[0], started[1], data
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def r1(cluster: tuple[ServerProcess, ServerProcess, Path]) -> ServerProcess:
    return cluster[0]


@pytest.fixture
def r2(cluster: tuple[ServerProcess, ServerProcess, Path]) -> ServerProcess:
    return cluster[1]


async def _replicas(admin: Admin) -> list[str]:
    return [r.id for r in (await admin.Info(admin_pb2.InfoRequest())).replicas]


async def _formed(r1: ServerProcess, r2: ServerProcess) -> None:
    async with admin_client(r1.grpc_port) as a1, admin_client(r2.grpc_port) as a2:

        async def both() -> bool:
            return await _replicas(a1) == ["r1", "r2"] and await _replicas(a2) == ["r2", "r1"]

        await until(both, what="each replica sees the other", within=30)


async def _presence(admin: Admin, room: str) -> list[str]:
    try:
        reply = await admin.Presence(admin_pb2.PresenceRequest(room=room))
    except grpc.aio.AioRpcError as exc:  # NOT_FOUND until anyone is there
        assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
        return []
    return [u.id for u in reply.users]


async def test_presence_counts_and_info_span_replicas(
    r1: ServerProcess, r2: ServerProcess, clients: ClientPool
) -> None:
    await _formed(r1, r2)
    room = unique()
    alice = await clients.connect(r2.url, token("alice"))
    await alice.ok("join", {"room": room})
    bob = await clients.connect(r1.url, token("bob"))
    await bob.ok("join", {"room": room})
    async with admin_client(r1.grpc_port) as a1, admin_client(r2.grpc_port) as a2:

        async def everyone() -> bool:
            return await _presence(a1, room) == ["alice", "bob"] and await _presence(a2, room) == [
                "alice",
                "bob",
            ]

        await until(everyone, what="both replicas list alice (on r2) and bob (on r1)")
        assert (await a1.GetRoom(admin_pb2.GetRoomRequest(room=room))).online == 2
        listed = await a2.ListRooms(admin_pb2.ListRoomsRequest(page_size=500, online_only=True))
        assert {(r.name, r.online) for r in listed.rooms} >= {(room, 2)}

        async def counted() -> bool:  # connection counts travel with deltas and heartbeats
            return all(r.connections >= 1 for r in (await a1.Info(admin_pb2.InfoRequest())).replicas)

        await until(counted, what="r1 knows r2's connections")
        info = await a1.Info(admin_pb2.InfoRequest())
        assert [r.id for r in info.replicas] == ["r1", "r2"]
        assert info.connections == sum(r.connections for r in info.replicas)
        assert info.users >= 2 and info.rooms >= 1

        await alice.disconnect()
        await until(lambda: _is(a1, room, ["bob"]), what="r1 sees alice leave r2")


def _rooms_gauge(server: ServerProcess) -> dict[str, float]:
    """``chatsvc_rooms`` by scope, from the replica's /metrics."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.findall(r'^chatsvc_rooms\{scope="(local|cluster)"\} ([0-9.e+-]+)$', text, re.MULTILINE)
    return {scope: float(value) for scope, value in found}


async def test_the_rooms_gauge_says_whether_it_counts_this_replica_or_the_cluster(
    r1: ServerProcess, r2: ServerProcess, clients: ClientPool
) -> None:
    """A room whose only member is on r2: r1 counts it under scope=cluster, not under
    scope=local, and both scopes agree with what the admin API's full merge reports."""
    await _formed(r1, r2)
    room = unique()
    alice = await clients.connect(r2.url, token("alice"))
    await alice.ok("join", {"room": room})
    async with admin_client(r1.grpc_port) as a1:

        async def agrees(members: list[str]) -> bool:
            if await _presence(a1, room) != members:
                return False
            info = await a1.Info(admin_pb2.InfoRequest())
            gauge = await asyncio.to_thread(_rooms_gauge, r1)
            return gauge == {"local": info.replicas[0].rooms, "cluster": info.rooms}

        await until(lambda: agrees(["alice"]), what="r1's gauge matches the merged presence")
        gauge = await asyncio.to_thread(_rooms_gauge, r1)
        assert gauge["cluster"] >= gauge["local"] + 1, gauge  # alice's room is not on r1
        await alice.ok("leave", {"room": room})
        await until(lambda: agrees([]), what="r1's gauge follows alice's leave on r2")


async def _is(admin: Admin, room: str, users: list[str]) -> bool:
    return await _presence(admin, room) == users


async def test_publish_reaches_members_on_the_other_replica(
    r1: ServerProcess, r2: ServerProcess, clients: ClientPool
) -> None:
    await _formed(r1, r2)
    room = unique()
    alice = await clients.connect(r2.url, token("alice"))
    await alice.ok("join", {"room": room})
    async with admin_client(r1.grpc_port) as a1, admin_client(r2.grpc_port) as a2:
        published = await a1.Publish(admin_pb2.PublishRequest(room=room, text="TSLA halted"))
        live = await alice.next("message")
        assert (live["id"], live["kind"], live["text"]) == (published.message.id, "system", "TSLA halted")
        history = await a2.GetHistory(admin_pb2.GetHistoryRequest(room=room))
        assert [m.id for m in history.messages] == [published.message.id]
        sent = await a2.Broadcast(admin_pb2.BroadcastRequest(rooms=[room, unique()], text="closing bell"))
        assert (await alice.next("message"))["id"] == sent.messages[0].id


async def test_disconnect_user_reaches_every_replica(
    r1: ServerProcess, r2: ServerProcess, clients: ClientPool
) -> None:
    await _formed(r1, r2)
    user = unique("u")
    sockets = [await clients.connect(r.url, token(user)) for r in (r1, r2)]
    async with admin_client(r1.grpc_port) as a1:
        reply = await a1.DisconnectUser(
            admin_pb2.DisconnectUserRequest(user_id=user, reason="security review")
        )
    reach = reply.reach
    assert (reach.sockets, reach.replicas, list(reach.unanswered_replicas)) == (2, 2, [])
    for socket in sockets:
        end = await socket.next("session_end")
        assert end == {"code": "disconnected", "message": "security review", "reconnect": False}


async def test_kick_and_mute_reach_the_other_replica(
    r1: ServerProcess, r2: ServerProcess, clients: ClientPool
) -> None:
    await _formed(r1, r2)
    user, room = unique("u"), unique()
    client = await clients.connect(r2.url, token(user))
    await client.ok("join", {"room": room})
    await client.ok("message", {"room": room, "text": "r2 now remembers: not muted"})
    async with admin_client(r1.grpc_port) as a1:
        await a1.MuteUser(admin_pb2.MuteUserRequest(room=room, user_id=user, reason="spam"))

        async def refused() -> bool:
            ack = await client.call("message", {"room": room, "text": "muted?"})
            return ack.get("ok") is False and ack["error"]["code"] == "forbidden"

        await until(refused, what="r2 applies a mute set through r1")
        await a1.UnmuteUser(admin_pb2.UnmuteUserRequest(room=room, user_id=user))

        async def allowed() -> bool:
            return bool((await client.call("message", {"room": room, "text": "free"})).get("ok"))

        await until(allowed, what="r2 applies the unmute")

        reply = await a1.KickFromRoom(
            admin_pb2.KickFromRoomRequest(room=room, user_id=user, reason="cool down")
        )
        assert (reply.reach.sockets, reply.reach.replicas) == (1, 2)
        assert await client.next("kicked") == {"room": room, "reason": "cool down"}


async def test_ban_through_one_replica_holds_on_the_other(
    r1: ServerProcess, r2: ServerProcess, clients: ClientPool
) -> None:
    await _formed(r1, r2)
    user = unique("u")
    client = await clients.connect(r2.url, token(user))
    async with admin_client(r1.grpc_port) as a1, admin_client(r2.grpc_port) as a2:
        reply = await a1.BanUser(admin_pb2.BanUserRequest(user_id=user, reason="fraud"))
        assert (reply.reach.sockets, reply.reach.replicas) == (1, 2)
        assert (await client.next("session_end"))["code"] == "forbidden"
        assert (await clients.refused(r2.url, token(user)))["code"] == "forbidden"
        await a2.UnbanUser(admin_pb2.UnbanUserRequest(user_id=user))

    async def admitted() -> bool:
        pool = ClientPool()
        async with pool:
            try:
                await pool.connect(r1.url, token(user))
            except socketio.exceptions.ConnectionError:
                return False
            return True

    await until(admitted, what="r1 admits the user again after an unban through r2")


async def test_a_crashed_replica_drops_out_of_presence(
    r1: ServerProcess, cluster: tuple[ServerProcess, ServerProcess, Path], server_factory: ServerFactory
) -> None:
    _, r2, data = cluster
    await _formed(r1, r2)
    r3 = server_factory(
        name="r3", data_dir=data, CHATSVC_REPLICA_ID="r3", **_cluster_env(r1.env["KAFKA_TOPIC"])
    )
    room = unique()
    async with ClientPool() as pool, admin_client(r1.grpc_port) as a1:
        carol = await pool.connect(r3.url, token("carol"))
        await carol.ok("join", {"room": room})
        await until(lambda: _is(a1, room, ["carol"]), what="r1 sees carol on r3")
        assert await _replicas(a1) == ["r1", "r2", "r3"]
        r3.signal(signal.SIGKILL)  # no goodbye: r1 must notice the silence
        await asyncio.to_thread(r3.wait_exit, 10)
        await until(lambda: _is(a1, room, []), what="carol expires with r3 (3 heartbeats)")
        assert await _replicas(a1) == ["r1", "r2"]
