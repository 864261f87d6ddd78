"""Interest-based routing on the real broker (``KAFKA_EVENTS_ROUTING``, docs/scaling.md).

A replica reads only the events topic's partitions of rooms it has a local member in (or
sends to): it receives everything of its rooms in position order, including a room whose
partition it starts reading at a join (catch-up up to the join's position, live after it,
nothing missing); it reads no record of a partition of rooms it has nobody in; the fan-out
topic (typing, presence, control) is still read whole; an admin send from a replica with no
member is acked. The adapter itself: a followed partition replays, then goes live; one no
longer wanted is released and no longer read.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from chatsvc.admin.v1 import admin_pb2
from chatsvc.bus.kafka_client import stop_clients
from chatsvc.bus.kafka_log import KafkaRoomLog, room_partitioner
from chatsvc.bus.log import LogRecord
from chatsvc.chat.wire import parse_position
from chatsvc.metrics import Metrics
from tests.admin.helpers import admin_client
from tests.bus.helpers import ChatClient, new_topic, replica_env
from tests.bus.test_kafka_cluster import two_replicas
from tests.conftest import ServerFactory
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.integration

FAST = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}
WITHIN = 20.0


def _metric(server: ServerProcess, name: str) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found is not None, f"{name} not exported"
    return float(found.group(1))


async def metric(server: ServerProcess, name: str) -> float:
    return await asyncio.to_thread(_metric, server, name)


def offset(pos: str) -> int:
    parsed = parse_position(pos)
    assert parsed is not None, pos
    return parsed[1]


async def partition_ends(brokers: str, topic: str) -> dict[int, int]:
    """The end offset (= records held, on a fresh topic) of every partition of ``topic``."""
    producer = AIOKafkaProducer(bootstrap_servers=brokers)
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, group_id=None)
    try:
        await producer.start()
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: ends[tp] for tp in tps}
    finally:
        await stop_clients(producer, consumer)  # aiokafka's stop() can leak its own cancellation


def rooms_on_two_partitions(partitions: list[int]) -> tuple[str, str]:
    """Two room names the producer puts on different partitions."""
    partition_of = room_partitioner(partitions)
    near = "stocks.NEAR"
    far = next(f"stocks.FAR{i}" for i in range(100) if partition_of(f"stocks.FAR{i}") != partition_of(near))
    return near, far


async def test_a_replica_reads_only_its_rooms_partitions_and_a_join_there_misses_nothing(
    kafka: dict[str, str],
    server_factory: ServerFactory,
    tmp_path: Path,
    clients: Callable[[ServerProcess, str], Any],
) -> None:
    brokers = kafka["KAFKA_TEST_PLAINTEXT"]
    topic = new_topic()
    env = replica_env(kafka, tls=False, topic=topic, KAFKA_EVENTS_ROUTING="true", **FAST)
    r1, r2 = two_replicas(server_factory, tmp_path, env)
    events = f"{topic}.events"
    near, far = rooms_on_two_partitions(sorted(await partition_ends(brokers, events)))
    alice: ChatClient = await clients(r1, "alice")
    bob: ChatClient = await clients(r2, "bob")
    for room in (near, far):
        await alice.call("join", {"room": room})
    assert await metric(r2, "chatsvc_events_partitions_read") == 0

    async def send(room: str, texts: range) -> list[dict[str, Any]]:
        return [
            (await alice.call("message", {"room": room, "text": f"{room} {i}"}))["message"] for i in texts
        ]

    await send(far, range(5))
    before = await send(near, range(5))

    # bob joins near from a position while alice keeps sending: his partition starts being
    # read at the join. The catch-up covers up to the position the join answers with, live
    # delivery everything after it: together every message after `since`, each once, in order.
    async def join() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return await bob.call("join", {"room": near, "since": before[1]["pos"]})

    during, caught = await asyncio.gather(send(near, range(5, 25)), join())
    sent = [*before, *during]
    assert caught["reset"] is False, caught
    upto = offset(caught["pos"])
    last = sent[-1]
    await bob.wait_until(
        "the last message live", lambda: any(m["id"] == last["id"] for m in bob.events["message"])
    )
    live = [m for m in bob.events["message"] if offset(m["pos"]) > upto]
    got = [m["id"] for m in caught["messages"]] + [m["id"] for m in live]
    assert got == [m["id"] for m in sent[2:]], (caught["pos"], got)
    live_ids = [m["id"] for m in bob.events["message"]]
    assert len(live_ids) == len(set(live_ids)), "a message delivered live twice"
    assert [offset(m["pos"]) for m in bob.events["message"]] == sorted(
        offset(m["pos"]) for m in bob.events["message"]
    )

    # The fan-out topic is still read whole: typing in near reaches bob.
    await alice.call("typing", {"room": near, "typing": True})
    await bob.wait_event("typing", lambda t: t.get("room") == near)

    # r2 read exactly the records of near's partition (all of them: fewer than the replay
    # bound), none of far's.
    ends = await partition_ends(brokers, events)
    partition_of = room_partitioner(sorted(ends))
    assert ends[partition_of(far)] >= 5
    assert await metric(r2, "chatsvc_events_partitions_read") == 1
    assert await metric(r2, "chatsvc_events_records_read_total") == ends[partition_of(near)]

    # An admin send from r2, which has no member in far: acked (r2 follows far's partition to
    # see its own record applied), delivered to alice on r1.
    async with admin_client(r2.grpc_port) as admin:
        reply = await admin.Publish(admin_pb2.PublishRequest(room=far, text="from r2"))
    await alice.wait_event("message", lambda m: m.get("id") == reply.message.id)
    assert await metric(r2, "chatsvc_events_partitions_read") == 2


async def test_the_log_replays_a_followed_partition_then_goes_live_and_releases_it(
    kafka: dict[str, str],
) -> None:
    brokers = kafka["KAFKA_TEST_PLAINTEXT"]
    topic = f"{new_topic()}.events"
    options = {"bootstrap_servers": brokers, "client_id": "routing-test", "request_timeout_ms": 5000}
    rooms: set[str] = set()
    metrics = Metrics()
    reader = KafkaRoomLog(
        topic,
        lambda: dict(options),
        metrics=metrics,
        routing=True,
        interest=lambda: set(rooms),
        release_after=0.3,
    )
    writer = KafkaRoomLog(topic, lambda: dict(options), routing=True, interest=lambda: ())
    got: list[LogRecord] = []
    released: list[Callable[[str], bool]] = []
    changed = asyncio.Event()

    async def handle(record: LogRecord) -> None:
        got.append(record)
        changed.set()

    reader.on_record(handle)
    reader.on_release(released.append)
    await writer.start()
    await reader.start()
    try:
        room = "stocks.X"
        first = await writer.append(room, {"t": "message", "n": 1})
        await asyncio.sleep(0.5)  # a reader of every partition would have it by now
        assert got == [], "a partition nobody follows is read"

        await reader.follow(room)  # returns once the replay was handed over
        assert [(r.room, r.offset, r.replay) for r in got] == [(room, first, True)]
        rooms.add(room)
        second = await writer.append(room, {"t": "message", "n": 2})
        async with asyncio.timeout(WITHIN):
            while len(got) < 2:
                changed.clear()
                await changed.wait()
        assert (got[1].offset, got[1].replay) == (second, False)

        rooms.clear()  # the last member left: released after the grace period
        async with asyncio.timeout(WITHIN):
            while not released:
                await writer.append("stocks.other", {"t": "noise"})  # wakes the reader's loop
                await asyncio.sleep(0.2)
        assert released[0](room) and metrics.registry.get_sample_value("chatsvc_events_partitions_read") == 0
        count = len(got)
        await writer.append(room, {"t": "message", "n": 3})
        await asyncio.sleep(0.5)
        assert len(got) == count, "a released partition is still read"
        # Followed again: its window is rebuilt from the replay, nothing delivered twice live.
        await reader.follow(room)
        again = [r for r in got[count:] if r.room == room]
        assert [r.replay for r in again] == [True, True, True]
    finally:
        await reader.aclose()
        await writer.aclose()


async def knows_peer(server: ServerProcess, replicas: int = 2) -> None:
    """Wait (bounded) until ``server`` hears every replica's heartbeat: a cluster action it
    runs then waits for each of them."""
    async with admin_client(server.grpc_port) as admin:
        async with asyncio.timeout(WITHIN):
            while len((await admin.Info(admin_pb2.InfoRequest())).replicas) < replicas:  # noqa: ASYNC110 - polls another process
                await asyncio.sleep(0.2)


async def test_private_and_direct_rooms_of_a_member_who_never_joined_are_read_at_connect_and_at_add(
    kafka: dict[str, str],
    server_factory: ServerFactory,
    tmp_path: Path,
    clients: Callable[[ServerProcess, str], Any],
) -> None:
    """With routing, a member of a DM or private room on the other replica, who never joins
    it, receives every event of it live, exactly once: the rooms she is a member of are read
    from her connect on, and a room she is added to while connected is read by her replica
    before the add is answered, so even the first message sent right after it arrives."""
    brokers = kafka["KAFKA_TEST_PLAINTEXT"]
    topic = new_topic()
    env = replica_env(kafka, tls=False, topic=topic, KAFKA_EVENTS_ROUTING="true", **FAST)
    r1, r2 = two_replicas(server_factory, tmp_path, env)
    events = f"{topic}.events"
    partition_of = room_partitioner(sorted(await partition_ends(brokers, events)))
    alice: ChatClient = await clients(r1, "alice")

    # At connect: a DM that exists before bob connects to r2, where nobody is yet.
    dm = (await alice.call("open_dm", {"user": "bob"}))["room"]
    early = (await alice.call("message", {"room": dm, "text": "before bob"}))["message"]
    assert await metric(r2, "chatsvc_events_partitions_read") == 0
    bob: ChatClient = await clients(r2, "bob")  # connects; never joins the DM
    assert await metric(r2, "chatsvc_events_partitions_read") == 1  # read before connect answered
    sent = [(await alice.call("message", {"room": dm, "text": f"dm {i}"}))["message"] for i in range(5)]
    await bob.wait_until(
        "every DM message", lambda: {m["id"] for m in sent} <= {m["id"] for m in bob.events["message"]}
    )
    await asyncio.sleep(0.5)
    assert [m["id"] for m in bob.events["message"]] == [m["id"] for m in sent]  # once, in order, no early
    assert early["id"] not in {m["id"] for m in bob.events["message"]}

    # At add: carol is connected to r2 and in no room. Rooms are created with her until one
    # lands on a partition r2 does not read yet (what only the add's follow can start).
    await knows_peer(r1)
    carol: ChatClient = await clients(r2, "carol")
    read = {partition_of(dm)}
    for kind in ("private", "direct"):
        for attempt in range(30):
            if kind == "private":
                made = await alice.call("create_room", {"title": f"c{attempt}", "members": ["carol"]})
                room = made["room"]
                sender = alice
            else:
                sender = await clients(r1, f"dave{attempt}")
                room = (await sender.call("open_dm", {"user": "carol"}))["room"]
            if partition_of(room) not in read:
                break
        else:
            raise AssertionError(f"no {kind} room on an unread partition in 30 tries")
        # The first message, sent the moment the add was answered, reaches carol live.
        first = (await sender.call("message", {"room": room, "text": f"first in {kind}"}))["message"]
        await carol.wait_event("message", lambda m, want=first["id"]: m["id"] == want)
        read.add(partition_of(room))
        assert await metric(r2, "chatsvc_events_partitions_read") == len(read)
    await asyncio.sleep(0.5)
    ids = [m["id"] for m in carol.events["message"]]
    assert len(ids) == len(set(ids)) == 2, ids


async def test_the_log_starts_a_wanted_partition_no_follow_started(kafka: dict[str, str]) -> None:
    """Interest registered without a successful follow (a connect while the broker did not
    answer in time) is not lost: the reader starts the partition itself within seconds."""
    brokers = kafka["KAFKA_TEST_PLAINTEXT"]
    topic = f"{new_topic()}.events"
    options = {"bootstrap_servers": brokers, "client_id": "routing-test", "request_timeout_ms": 5000}
    room = "priv:wanted"
    metrics = Metrics()
    reader = KafkaRoomLog(
        topic, lambda: dict(options), metrics=metrics, routing=True, interest=lambda: {room}
    )
    writer = KafkaRoomLog(topic, lambda: dict(options), routing=True, interest=lambda: ())
    got: list[LogRecord] = []

    async def handle(record: LogRecord) -> None:
        got.append(record)

    reader.on_record(handle)
    await writer.start()
    first = await writer.append(room, {"t": "message", "n": 1})
    await reader.start()
    try:
        async with asyncio.timeout(WITHIN):
            while not got:  # noqa: ASYNC110 - the reader's own loop, no event to wait on
                await asyncio.sleep(0.1)
        assert [(r.offset, r.replay) for r in got] == [(first, True)]
        second = await writer.append(room, {"t": "message", "n": 2})
        async with asyncio.timeout(WITHIN):
            while len(got) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert [(r.offset, r.replay) for r in got[1:]] == [(second, False)]
        assert metrics.registry.get_sample_value("chatsvc_events_partitions_read") == 1
    finally:
        await reader.aclose()
        await writer.aclose()
