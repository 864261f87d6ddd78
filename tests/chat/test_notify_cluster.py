"""Offline notifications on the Kafka topic across two replicas (issue 24), over the real
broker and the real CQL node, read back by a real Kafka consumer: a DM, a private-room
message and a mention to an offline user are one record each per (user, message), also
when the send is retried on the other replica, across a restart of either replica and when
the relaying replica is killed; the same notifications are in StreamNotifications on both
replicas, with the same positions; a user online on the other replica gets none."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from tests.admin.helpers import admin_client
from tests.admin.test_notifications import collect
from tests.bus.helpers import new_topic, replica_env
from tests.conftest import ServerFactory
from tests.store.conftest import cli_env, drop_keyspace, new_keyspace, scylla_env
from tests.support.clients import ChatClient, ClientPool
from tests.support.servers import ServerProcess, run_cli
from tests.support.services import kafka_env
from tests.support.tokens import token

FAST = {
    "CHATSVC_RATE_LIMIT_PER_SECOND": "1000",
    "CHATSVC_RATE_LIMIT_BURST": "1000",
    "CHATSVC_CLUSTER_HEARTBEAT": "0.5",
    # A killed relay's lease lapses in 4 s; a produce gives up after 1 s (+2 s margin).
    "CHATSVC_NOTIFY_LEASE_SECONDS": "4",
    "CHATSVC_NOTIFY_RETRY_WINDOW_MS": "1000",
}
#: How long the online registries get to agree after a connect (four heartbeats).
SETTLE_SECONDS = 2.0
#: How long the topic must stay quiet before the test believes nothing more comes.
QUIET_SECONDS = 3.0


@pytest.fixture(scope="module")
def cql_keyspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh keyspace on the real CQL node, migrated by ``chatsvc migrate``; dropped after."""
    keyspace = new_keyspace()
    env = scylla_env(keyspace)
    done = run_cli(["migrate"], cli_env(tmp_path_factory.mktemp("migrate"), env), timeout=300)
    assert done.returncode == 0, done.stderr
    yield env
    drop_keyspace(env, keyspace)


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Cluster:
    """Two replicas sharing the fan-out topic, the notify topic and the keyspace."""

    def __init__(self, factory: ServerFactory, env: dict[str, str]) -> None:
        self._factory = factory
        self.env = env
        self.notify_topic = env.get("CHATSVC_NOTIFY_TOPIC", "")
        self.brokers = env["KAFKA_BROKERS"]
        self.starts = 0

    def replica(self, name: str) -> ServerProcess:
        self.starts += 1
        server = self._factory(name=f"{name}-{self.starts}", CHATSVC_REPLICA_ID=name, **self.env)
        server.wait_http("/readyz", timeout=60)
        return server


@pytest.fixture
def cluster(server_factory: ServerFactory, cql_keyspace: dict[str, str]) -> Cluster:
    env = (
        replica_env(kafka_env(), tls=False, topic=new_topic(), CHATSVC_NOTIFY_TOPIC=f"{new_topic()}.notify")
        | cql_keyspace
        | FAST
    )
    return Cluster(server_factory, env)


@pytest.fixture
def outbox_cluster(server_factory: ServerFactory, cql_keyspace: dict[str, str]) -> Cluster:
    """Two replicas on Kafka and ScyllaDB without CHATSVC_NOTIFY_TOPIC: the CQL outbox."""
    env = replica_env(kafka_env(), tls=False, topic=new_topic()) | cql_keyspace | FAST
    return Cluster(server_factory, env)


async def records(
    cluster: Cluster, *, expect: int, within: float = 30.0, users: set[str] | None = None
) -> list[dict[str, Any]]:
    """Every record of the notify topic (for ``users`` if given), read from the start by a
    real consumer: waits for ``expect`` of them, then for QUIET_SECONDS more (a duplicate
    would show up there)."""
    consumer = AIOKafkaConsumer(
        cluster.notify_topic,
        bootstrap_servers=cluster.brokers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + within
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for record in (r for rs in batch.values() for r in rs):
                value = json.loads(record.value)
                headers = dict(record.headers)
                assert record.key == value["user"].encode()  # keyed by user
                assert (
                    headers["dedup"]
                    == value["id"].encode()
                    == f"{value['user']}:{value['message_id']}".encode()
                )
                if users is None or value["user"] in users:
                    got.append(value)
            if len(got) >= expect and quiet_until is None:
                quiet_until = time.monotonic() + QUIET_SECONDS
            if quiet_until is not None and time.monotonic() >= quiet_until:
                break
    finally:
        await consumer.stop()
    return got


def pairs(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((r["user"], r["message_id"]) for r in found)


async def bus_ready(sender: ChatClient, receiver: ChatClient) -> None:
    """Both replicas hear each other: a public room (which notifies nobody) delivers."""
    room = f"lobby-{uuid.uuid4().hex[:6]}"
    await sender.ok("join", {"room": room})
    await receiver.ok("join", {"room": room})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = (await sender.ok("message", {"room": room, "text": "probe"}))["message"]["id"]
        try:
            await receiver.next("message", where=lambda m, want=probe: m["id"] == want, within=1.0)
            break
        except TimeoutError:
            continue
    else:
        raise AssertionError("the replicas never delivered to each other")
    await asyncio.sleep(SETTLE_SECONDS)  # the online registries have heard every connect


async def test_offline_users_get_one_record_per_message_online_ones_none(cluster: Cluster) -> None:
    ra, rb = cluster.replica("ra"), cluster.replica("rb")
    alice, bob, carol, dave = user("alice"), user("bob"), user("carol"), user("dave")
    async with ClientPool() as pool:
        a = await pool.connect(ra.url, token(alice))
        a_on_b = await pool.connect(rb.url, token(alice))  # where a retry lands
        b = await pool.connect(rb.url, token(bob))  # online, on the other replica only
        await bus_ready(a, b)

        to_carol = (await a.ok("open_dm", {"user": carol}))["room"]
        to_bob = (await a.ok("open_dm", {"user": bob}))["room"]
        club = (await a.ok("create_room", {"kind": "private", "title": "Club", "members": [bob, carol]}))[
            "room"
        ]
        lobby = f"stock-{uuid.uuid4().hex[:6]}"
        await a.ok("join", {"room": lobby})

        dm = {"room": to_carol, "text": "are you there?", "client_msg_id": "dm-1"}
        first = (await a.ok("message", dm))["message"]
        assert (await a.ok("message", dm))["duplicate"] is True  # retried on the same replica
        assert (await a_on_b.ok("message", dm))["duplicate"] is True  # and on the other one
        in_club = (await a.ok("message", {"room": club, "text": "club news"}))["message"]
        mention = (await a.ok("message", {"room": lobby, "text": "hey dave, bob", "mentions": [dave, bob]}))[
            "message"
        ]
        await a.ok("message", {"room": to_bob, "text": "bob is online on rb"})

        found = await records(cluster, expect=3, users={bob, carol, dave})
        assert pairs(found) == sorted(
            [(carol, first["id"]), (carol, in_club["id"]), (dave, mention["id"])]
        ), found
        by_message = {r["message_id"]: r for r in found}
        assert by_message[first["id"]] | {"id": None} == {
            "id": None,
            "user": carol,
            "room": to_carol,
            "message_id": first["id"],
            "sender": alice,
            "preview": "are you there?",
            "kind": "direct",
            "created_at_ms": by_message[first["id"]]["created_at_ms"],
        }
        assert by_message[in_club["id"]]["kind"] == "private"
        assert by_message[mention["id"]]["kind"] == "mention"
    # The same notifications in StreamNotifications, on either replica, at the same positions;
    # resuming after the first gives the rest.
    streamed = {}
    for replica in (ra, rb):
        async with admin_client(replica.grpc_port) as admin:
            got = [n for n in await collect(admin, 0, 1000, within=4.0) if n.user_id in {bob, carol, dave}]
            assert sorted((n.user_id, n.message_id) for n in got) == pairs(found)
            streamed[replica.env["CHATSVC_REPLICA_ID"]] = [(n.position, n.user_id, n.message_id) for n in got]
            rest = await collect(admin, got[0].position, 1000, within=3.0)
            assert [
                (n.position, n.user_id, n.message_id) for n in rest if n.user_id in {bob, carol, dave}
            ] == [(n.position, n.user_id, n.message_id) for n in got[1:]]
    assert streamed["ra"] == streamed["rb"]


async def test_restarting_either_replica_never_duplicates(cluster: Cluster) -> None:
    ra, rb = cluster.replica("ra"), cluster.replica("rb")
    alice, bob = user("alice"), user("bob")
    async with ClientPool() as pool:
        a = await pool.connect(ra.url, token(alice))
        probe = await pool.connect(rb.url, token(user("probe")))
        await bus_ready(a, probe)
        to_bob = (await a.ok("open_dm", {"user": bob}))["room"]
        dm = {"room": to_bob, "text": "while you were out", "client_msg_id": "r-1"}
        sent = (await a.ok("message", dm))["message"]
        assert pairs(await records(cluster, expect=1, users={bob})) == [(bob, sent["id"])]

    # rb restarts: the retry lands on the new process, which finds the message and the claim.
    rb.stop()
    rb = cluster.replica("rb")
    async with ClientPool() as pool:
        on_b = await pool.connect(rb.url, token(alice))
        assert (await on_b.ok("message", dm))["duplicate"] is True
    # ra, the replica that produced the record, restarts: it produces nothing again.
    ra.stop()
    ra = cluster.replica("ra")
    async with ClientPool() as pool:
        again = await pool.connect(ra.url, token(alice))
        assert (await again.ok("message", dm))["duplicate"] is True
        later = (await again.ok("message", {"room": to_bob, "text": "still out?"}))["message"]
        assert pairs(await records(cluster, expect=2, users={bob})) == sorted(
            [(bob, sent["id"]), (bob, later["id"])]
        )


async def test_a_user_whose_replica_stopped_is_offline_for_the_other(cluster: Cluster) -> None:
    """bob is online on rb (no record); rb stops (its goodbye drops bob's connection from
    ra's registry at once): the next DM to bob is one record."""
    ra, rb = cluster.replica("ra"), cluster.replica("rb")
    alice, bob = user("alice"), user("bob")
    async with ClientPool() as pool:
        a = await pool.connect(ra.url, token(alice))
        b = await pool.connect(rb.url, token(bob))
        await bus_ready(a, b)
        to_bob = (await a.ok("open_dm", {"user": bob}))["room"]
        await a.ok("message", {"room": to_bob, "text": "you are online"})
        assert await records(cluster, expect=0, within=QUIET_SECONDS + 1, users={bob}) == []
        rb.stop()
        await asyncio.sleep(SETTLE_SECONDS)
        gone = (await a.ok("message", {"room": to_bob, "text": "now you are not"}))["message"]
        assert pairs(await records(cluster, expect=1, users={bob})) == [(bob, gone["id"])]


async def test_killing_the_relaying_replica_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    """The replica holding the relay's lease is killed (SIGKILL: no goodbye, no release)
    while notifications wait to be relayed; the other takes over when the lease lapses,
    reads the topic back and relays the rest, once. The killed one restarts and relays again
    when the other stops. (Where exactly the kill lands in a round is not controlled here:
    the deterministic produced-then-died case is tests/chat/test_notify_relay_kafka.py.)"""
    ra, rb = cluster.replica("ra"), cluster.replica("rb")
    alice = user("alice")
    offline = [user(f"m{i}") for i in range(8)]
    holder = await relay_holder(ra, rb)
    other = rb if holder is ra else ra
    sent: list[str] = []
    async with ClientPool() as pool:
        a = await pool.connect(other.url, token(alice))
        club = (await a.ok("create_room", {"kind": "private", "title": "Club", "members": offline}))["room"]
        for i in range(4):
            sent.append((await a.ok("message", {"room": club, "text": f"news {i}"}))["message"]["id"])
        # The outbox shows them SETTLE_MS (2 s) later; the relay polls every second.
        await asyncio.sleep(2.3)
        holder.signal(signal.SIGKILL)
        holder.wait_exit()
        expected = sorted((u, m) for u in offline for m in sent)
        assert pairs(await records(cluster, expect=len(expected), users=set(offline))) == expected
        # The survivor takes the dead one's lease once it lapses (4 s, polled every 1.33 s).
        assert await relay_holder(other) is other

        holder = cluster.replica(holder.env["CHATSVC_REPLICA_ID"])  # back, a new owner
        other.stop()  # releases the lease: the restarted one relays from now on
        a = await pool.connect(holder.url, token(alice))
        last = (await a.ok("message", {"room": club, "text": "after the restart"}))["message"]["id"]
        expected = sorted(expected + [(u, last) for u in offline])
        assert pairs(await records(cluster, expect=len(expected), users=set(offline))) == expected
    async with admin_client(holder.grpc_port) as admin:
        got = [n for n in await collect(admin, 0, 1000, within=4.0) if n.user_id in set(offline)]
        assert sorted((n.user_id, n.message_id) for n in got) == expected


async def test_a_replica_killed_mid_burst_loses_and_duplicates_no_notification(cluster: Cluster) -> None:
    """The sender's replica is SIGKILLed while a burst of private-room messages to offline
    members is in flight. The client retries every send it has no ack for (same
    client_msg_id) on the other replica, so every message ends up acked, as new or as the
    duplicate of a record the dead replica logged. After the killed replica is back, each
    (member, message) is one record on the topic and once in StreamNotifications. (Before
    issue 24's fix the sender's replica wrote the notifications after logging the message:
    one it logged but had not notified when it died was a duplicate on retry and notified
    nobody. Now the history writer derives them from the log, resuming after a crash.)"""
    ra, rb = cluster.replica("ra"), cluster.replica("rb")
    alice = user("alice")
    # Twenty offline members: a message's notifications are twenty conditional writes, so
    # the kill very likely lands while some in-flight send is between its record and the
    # end of its notifications (where the old order lost them).
    offline = [user(f"off{i}") for i in range(20)]
    lanes, per_lane, kill_after = 4, 6, 8
    acked: dict[str, str] = {}  # client_msg_id -> message id
    async with ClientPool() as pool:
        a = await pool.connect(ra.url, token(alice))
        a_on_b = await pool.connect(rb.url, token(alice))
        await bus_ready(a, a_on_b)
        club = (await a.ok("create_room", {"kind": "private", "title": "Club", "members": offline}))["room"]

        def send(lane: int, i: int) -> dict[str, Any]:
            return {"room": club, "text": f"burst {lane}.{i}", "client_msg_id": f"b-{lane}-{i}"}

        async def lane(n: int) -> None:
            for i in range(per_lane):
                payload = send(n, i)
                try:
                    ack = await a.call("message", payload, within=5.0)
                except Exception:  # the replica is gone: retried below
                    continue
                if isinstance(ack, dict) and ack.get("ok"):
                    acked[payload["client_msg_id"]] = ack["message"]["id"]
                if len(acked) == kill_after:  # while the other lanes' sends are in flight
                    ra.signal(signal.SIGKILL)

        await asyncio.gather(*(lane(n) for n in range(lanes)))
        ra.wait_exit()
        unacked = [send(n, i) for n in range(lanes) for i in range(per_lane)]
        unacked = [p for p in unacked if p["client_msg_id"] not in acked]
        assert len(acked) >= kill_after and unacked, (len(acked), len(unacked))
        for payload in unacked:  # the client's retry, on the replica still up
            acked[payload["client_msg_id"]] = (await a_on_b.ok("message", payload))["message"]["id"]
    ra = cluster.replica("ra")  # back: its partitions' writer resumes from the last commit

    expected = sorted((u, m) for u in offline for m in acked.values())
    assert len(expected) == len(offline) * lanes * per_lane
    found = await records(cluster, expect=len(expected), within=90.0, users=set(offline))
    assert pairs(found) == expected  # every pair, none twice
    for replica in (ra, rb):
        async with admin_client(replica.grpc_port) as admin:
            got = [n for n in await collect(admin, 0, 1000, within=6.0) if n.user_id in set(offline)]
        assert sorted((n.user_id, n.message_id) for n in got) == expected


async def relay_holder(*replicas: ServerProcess) -> ServerProcess:
    """The first of ``replicas`` to take the relay's lease (it logs so); fails after 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for replica in replicas:
            if "this replica relays now" in replica.log_text():
                return replica
        await asyncio.sleep(0.2)
    tails = "\n".join(r.log_tail() for r in replicas)
    raise AssertionError(f"no replica took the relay's lease:\n{tails}")


async def test_without_the_topic_the_cql_outbox_streams_once_from_either_replica(
    outbox_cluster: Cluster,
) -> None:
    """The ScyllaDB outbox: each (user, message) once whichever replica wrote it or is asked,
    the same positions on both, and after a restart of one."""
    cluster = outbox_cluster
    ra, rb = cluster.replica("ra"), cluster.replica("rb")
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    async with ClientPool() as pool:
        a = await pool.connect(ra.url, token(alice))
        a_on_b = await pool.connect(rb.url, token(alice))
        b = await pool.connect(rb.url, token(bob))
        await bus_ready(a, b)
        to_carol = (await a.ok("open_dm", {"user": carol}))["room"]
        to_bob = (await a.ok("open_dm", {"user": bob}))["room"]
        club = (await a.ok("create_room", {"kind": "private", "title": "Club", "members": [bob, carol]}))[
            "room"
        ]
        dm = {"room": to_carol, "text": "hello carol", "client_msg_id": "o-1"}
        first = (await a.ok("message", dm))["message"]
        assert (await a_on_b.ok("message", dm))["duplicate"] is True
        in_club = (await a_on_b.ok("message", {"room": club, "text": "from rb"}))["message"]
        await a.ok("message", {"room": to_bob, "text": "bob is online on rb"})

        # Read while bob is still connected: the history writer judges "offline" when it
        # reaches the record, which may be after the send's ack.
        expected = sorted([(carol, first["id"]), (carol, in_club["id"])])
        seen = {}
        for replica in (ra, rb):
            async with admin_client(replica.grpc_port) as admin:
                got = await collect(admin, 0, 1000, within=8.0)  # the module's earlier tests' too
            mine = [n for n in got if n.user_id in {bob, carol}]
            assert sorted((n.user_id, n.message_id) for n in mine) == expected, mine
            seen[replica.env["CHATSVC_REPLICA_ID"]] = [(n.position, n.message_id) for n in mine]
        assert seen["ra"] == seen["rb"]
    rb.stop()
    rb = cluster.replica("rb")
    async with admin_client(rb.grpc_port) as admin:
        again = [n for n in await collect(admin, 0, 1000, within=5.0) if n.user_id in {bob, carol}]
        assert [(n.position, n.message_id) for n in again] == seen["ra"]
        # Live: a stream open on rb gets what ra writes next, resuming after the last seen.
        live = asyncio.ensure_future(collect(admin, again[-1].position, 1, within=15.0))
        async with ClientPool() as pool:
            a = await pool.connect(ra.url, token(alice))
            later = (await a.ok("message", {"room": to_carol, "text": "still there?"}))["message"]
        assert [(n.user_id, n.message_id) for n in await live] == [(carol, later["id"])]
