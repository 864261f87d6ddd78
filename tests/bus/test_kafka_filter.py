"""The record filter on the real broker: a replica skips, undecoded, the room emits of rooms it
has no member in, and still gets everything else (docs/scaling.md, chatsvc.bus.records)."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiokafka import AIOKafkaProducer

from chatsvc.bus.kafka import AsyncKafkaManager
from chatsvc.bus.records import BATCHED, EAGER, AdaptiveFetch
from chatsvc.settings import KafkaSettings
from tests.bus.helpers import ChatClient, new_topic, replica_env
from tests.conftest import ServerFactory
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.integration

FAR = "stocks.FAR"  # members on r1 only
NEAR = "stocks.NEAR"  # members on both
N = 12


def _skipped(server: ServerProcess, reason: str) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf'^chatsvc_bus_records_skipped_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _unheard(server: ServerProcess) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^chatsvc_events_records_unheard_total (\S+)$", text, re.M)
    assert found, "the events-topic counter is exposed"
    return float(found.group(1))


async def unheard(server: ServerProcess, at_least: float = 0.0, within: float = 20.0) -> float:
    """Events-topic records the replica applied with nobody there to deliver them to, once
    at least ``at_least`` (polled, bounded)."""
    deadline = asyncio.get_running_loop().time() + within
    while (value := await asyncio.to_thread(_unheard, server)) < at_least:
        assert asyncio.get_running_loop().time() < deadline, f"{server.url} counted {value} unheard"
        await asyncio.sleep(0.1)  # a metric has no event to wait on
    return value


async def skipped(server: ServerProcess, reason: str = "no_member") -> float:
    return await asyncio.to_thread(_skipped, server, reason)


async def wait_skipped(
    server: ServerProcess, at_least: float, within: float = 20.0, reason: str = "no_member"
) -> float:
    """Poll (bounded) until the replica counted ``at_least`` skipped records."""
    deadline = asyncio.get_running_loop().time() + within
    while (value := await skipped(server, reason)) < at_least:
        assert asyncio.get_running_loop().time() < deadline, (
            f"{server.url} skipped {value} record(s) within {within}s, expected at least {at_least}"
        )
        await asyncio.sleep(0.1)  # a metric has no event to wait on
    return value


async def test_a_replica_skips_rooms_it_has_nobody_in_and_hears_everything_else(
    kafka: dict[str, str],
    server_factory: ServerFactory,
    tmp_path: Path,
    clients: Callable[[ServerProcess, str], Any],
) -> None:
    topic = new_topic()
    env = replica_env(
        kafka, tls=False, topic=topic, CHATSVC_RATE_LIMIT_PER_SECOND="1000", CHATSVC_RATE_LIMIT_BURST="1000"
    )
    shared = tmp_path / "shared-data"
    r1 = server_factory(name="r1", data_dir=shared, CHATSVC_REPLICA_ID="r1", **env)
    r2 = server_factory(name="r2", data_dir=shared, CHATSVC_REPLICA_ID="r2", **env)
    for replica in (r1, r2):
        replica.wait_http("/readyz", timeout=30)
    alice: ChatClient = await clients(r1, "alice")
    bob: ChatClient = await clients(r2, "bob")
    carol: ChatClient = await clients(r2, "carol")
    await alice.call("join", {"room": FAR})
    for client in (alice, carol):
        await client.call("join", {"room": NEAR})

    # Messages travel on the events topic (the room stream, tests/bus/test_kafka_streams.py);
    # the fan-out topic carries typing, read receipts, presence and control.
    far = (await alice.call("message", {"room": FAR, "text": "far"}))["message"]
    near = (await alice.call("message", {"room": NEAR, "text": "near"}))["message"]
    await carol.wait_event("message", lambda m: m["id"] == near["id"])
    # The events topic: r2 applies FAR's message (dedup window, tail) but delivers it to no
    # socket, nor builds its wire form; NEAR's it delivers. r1 has alice in both.
    assert await unheard(r2, at_least=1) == 1 and await unheard(r1) == 0
    own_before = await skipped(r1, "own")
    # FAR has nobody on r2: each of its receipts is skipped there, none decoded.
    before = await skipped(r2)
    for _ in range(N):
        await alice.call("read", {"room": FAR, "message_id": far["id"]})
    # NEAR has carol on r2: delivered. Same sender, so FAR's records went out before these.
    await alice.call("read", {"room": NEAR, "message_id": near["id"]})
    await carol.wait_event("read", lambda e: e["message_id"] == near["id"])
    after = await wait_skipped(r2, before + N)
    await asyncio.sleep(0.5)  # anything more would have arrived by now
    assert await skipped(r2) == after == before + N, "exactly FAR's receipts are skipped on r2"
    assert carol.events["read"] and all(e["room"] == NEAR for e in carol.events["read"])
    assert bob.events["read"] == []
    # r1 has alice in both rooms: nothing of FAR or NEAR is skipped there as "no member";
    # its own records come back to it and are skipped as its own.
    assert await skipped(r1) == 0
    await wait_skipped(r1, own_before + N + 1, reason="own")

    # Control records still reach r2: its cluster presence counts alice in FAR, so bob's
    # join sees two online (alice on r1, bob here).
    joined = await bob.call("join", {"room": FAR})
    assert joined["online"] == 2, joined

    # Now bob is in FAR on r2: what follows is decoded and delivered, in order.
    base = await skipped(r2)
    for i in range(3):
        await alice.call("message", {"room": FAR, "text": f"later #{i}"})
    await bob.wait_event("message", lambda m: m["text"] == "later #2")
    assert bob.texts("alice") == ["later #0", "later #1", "later #2"]
    assert await skipped(r2) == base
    assert await unheard(r2) == 1, "FAR's messages are delivered on r2 now"
    # What bob missed before he joined (FAR's first message, never delivered on r2) he gets
    # with join {since}, as always.
    epoch, at = far["pos"].rsplit(":", 1)
    since = await bob.call("join", {"room": FAR, "since": f"{epoch}:{int(at) - 1}"})
    assert [m["text"] for m in since["messages"]] == ["far", "later #0", "later #1", "later #2"], since

    # A to-sid emit from another process (no room header) reaches carol, who is in no room
    # that has traffic: sid emits are always decoded.
    admin = AsyncKafkaManager(
        KafkaSettings(brokers=(kafka["KAFKA_TEST_PLAINTEXT"],), topic=topic, retry_backoff_ms=200),
        replica_id="test-admin",
        write_only=True,
    )
    outside = socketio.AsyncServer(client_manager=admin, async_mode="aiohttp")
    await admin.start()
    try:
        await outside.emit("message", {"room": NEAR, "text": "to carol", "user": {"id": "ops"}}, to=carol.sid)
    finally:
        await admin.aclose()
    await carol.wait_event("message", lambda m: m["text"] == "to carol")

    # A record of an older replica (no headers, as before issue 26) is decoded and delivered.
    producer = AIOKafkaProducer(bootstrap_servers=kafka["KAFKA_TEST_PLAINTEXT"])
    await producer.start()
    try:
        old = {
            "method": "emit",
            "event": "message",
            "data": [{"room": NEAR, "text": "from an older replica", "user": {"id": "old"}}],
            "binary": False,
            "namespace": "/",
            "room": NEAR,
            "skip_sid": None,
            "callback": None,
            "host_id": "older-replica",
        }
        await producer.send_and_wait(topic, json.dumps(old).encode(), key=NEAR.encode())
    finally:
        await producer.stop()
    await carol.wait_event("message", lambda m: m["text"] == "from an older replica")

    # When bob leaves, FAR's records are skipped on r2 again.
    await bob.call("leave", {"room": FAR})
    base = await skipped(r2)
    await alice.call("read", {"room": FAR, "message_id": far["id"]})
    await wait_skipped(r2, base + 1)
    assert bob.events["read"] == []


async def test_the_adaptive_fetch_switches_consumers_without_losing_or_repeating_a_record(
    kafka: dict[str, str],
) -> None:
    settings = KafkaSettings(
        brokers=(kafka["KAFKA_TEST_PLAINTEXT"],), topic=new_topic(), retry_backoff_ms=200, fetch_adaptive=True
    )
    reader = AsyncKafkaManager(settings, replica_id="reader")
    writer = AsyncKafkaManager(settings, replica_id="writer", write_only=True)
    # Thresholds a test can reach in a second (the defaults need 200 records/s for 5 s).
    reader._fetch = AdaptiveFetch(busy=100, quiet=20, window=0.5)
    got: dict[str, list[int]] = {}
    arrived = asyncio.Event()

    async def on_control(data: dict[str, Any]) -> None:
        got.setdefault(data["room"], []).append(data["n"])
        arrived.set()

    reader.on_control(on_control)

    async def drain() -> None:
        async for _ in reader._listen():
            pass

    async def publish(numbers: range) -> None:
        for n in numbers:
            await writer.publish_control({"type": "test", "room": f"r{n % 5}", "n": n})

    async def received(total: int, within: float = 20.0) -> None:
        async with asyncio.timeout(within):
            while sum(map(len, got.values())) < total:
                arrived.clear()
                await arrived.wait()

    await reader.start()
    await writer.start()
    listening = asyncio.create_task(drain())
    try:
        await publish(range(600))  # hundreds per second: busy
        await received(600)
        assert reader._fetch.mode == BATCHED
        deadline = asyncio.get_running_loop().time() + 10
        while reader._fetch.mode != EAGER:  # quiet: back to eager fetches
            assert asyncio.get_running_loop().time() < deadline, "still batched after 10 s of quiet"
            await asyncio.sleep(0.1)  # the mode has no event to wait on
        await publish(range(600, 650))
        await received(650)
        await asyncio.sleep(0.5)  # a repeat would have arrived by now
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await writer.aclose()
        await reader.aclose()
    # Every record once, each room's in order, across two consumer switches.
    assert got == {f"r{k}": list(range(k, 650, 5)) for k in range(5)}
