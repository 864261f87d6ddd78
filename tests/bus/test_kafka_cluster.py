"""Two chatsvc replicas (separate OS processes and ports) fanning out over the real broker.

Both replicas share one SQLite history (same ``CHATSVC_DATA_DIR``; WAL serves two processes
on one machine), as replicas share ScyllaDB in production, so catch-up works across them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import socketio

from chatsvc.bus.kafka import AsyncKafkaManager
from chatsvc.settings import KafkaSettings
from tests.bus.helpers import ChatClient, kafka_script, log_lines, new_topic, replica_env
from tests.conftest import ServerFactory
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.integration

ROOM = "stocks.AAPL"


def two_replicas(
    server_factory: ServerFactory, tmp_path: Path, env: dict[str, str], **r2_env: str
) -> tuple[ServerProcess, ServerProcess]:
    shared = tmp_path / "shared-data"
    r1 = server_factory(name="r1", data_dir=shared, CHATSVC_REPLICA_ID="r1", **env)
    r2 = server_factory(name="r2", data_dir=shared, CHATSVC_REPLICA_ID="r2", **(env | r2_env))
    for replica in (r1, r2):
        replica.wait_http("/readyz", timeout=30)
    return r1, r2


BATCHED_FETCH = {"KAFKA_FETCH_MIN_BYTES": "65536", "KAFKA_FETCH_MAX_WAIT_MS": "5"}


@pytest.mark.parametrize(
    ("tls", "fetch"),
    [(False, {}), (True, {}), (False, BATCHED_FETCH)],
    ids=["plaintext", "mutual-tls", "plaintext-batched-fetch"],
)
async def test_messages_cross_replicas_exactly_once_in_send_order(
    tls: bool,
    fetch: dict[str, str],
    kafka: dict[str, str],
    server_factory: ServerFactory,
    tmp_path: Path,
    clients: Callable[[ServerProcess, str], Any],
) -> None:
    env = replica_env(kafka, tls=tls, topic=new_topic()) | fetch
    # r2 loads a password-protected key: KAFKA_SSL_KEY_PASSWORD is exercised too.
    r2_env = (
        {
            "KAFKA_SSL_CLIENT_KEY": kafka["KAFKA_TEST_CLIENT_ENCRYPTED_KEY"],
            "KAFKA_SSL_KEY_PASSWORD": kafka["KAFKA_TEST_CLIENT_KEY_PASSWORD"],
        }
        if tls
        else {}
    )
    r1, r2 = two_replicas(server_factory, tmp_path, env, **r2_env)
    alice: ChatClient = await clients(r1, "alice")
    bob: ChatClient = await clients(r2, "bob")
    for client in (alice, bob):
        await client.call("join", {"room": ROOM})

    sent: dict[str, list[str]] = {"alice": [], "bob": []}
    for i in range(8):
        for client in (alice, bob):
            text = f"{client.sub} #{i}"
            ack = await client.call("message", {"room": ROOM, "text": text})
            assert ack["message"]["text"] == text
            sent[client.sub].append(text)
    # A last message from each side: once it arrives, everything sent before it has too
    # (one room, one partition, in order), so duplicates would already be visible.
    for client in (alice, bob):
        await client.call("message", {"room": ROOM, "text": f"{client.sub} done"})
    await alice.wait_event("message", lambda m: m["text"] == "bob done")
    await bob.wait_event("message", lambda m: m["text"] == "alice done")

    assert alice.texts("bob") == [*sent["bob"], "bob done"]
    assert bob.texts("alice") == [*sent["alice"], "alice done"]
    assert alice.texts("alice") == []  # the sender is skipped, here and across the bus
    assert bob.texts("bob") == []
    assert all(m["room"] == ROOM for c in (alice, bob) for m in c.events["message"])

    protocol_line = (
        "Kafka: PLAINTEXT (no KAFKA_SSL_* set)" if not tls else "Kafka: SSL with client certificate"
    )
    fetch_line = "fetch min {} byte(s) / max wait {} ms".format(
        fetch.get("KAFKA_FETCH_MIN_BYTES", "1"), fetch.get("KAFKA_FETCH_MAX_WAIT_MS", "500")
    )
    for replica in (r1, r2):
        assert log_lines(replica.log_path, protocol_line), replica.log_tail()
        assert log_lines(replica.log_path, "Kafka connected to"), replica.log_tail()
        assert log_lines(replica.log_path, fetch_line), replica.log_tail()


async def test_typing_presence_receipts_and_server_disconnect_cross_replicas(
    kafka: dict[str, str],
    server_factory: ServerFactory,
    tmp_path: Path,
    clients: Callable[[ServerProcess, str], Any],
) -> None:
    topic = new_topic()
    r1, r2 = two_replicas(server_factory, tmp_path, replica_env(kafka, tls=False, topic=topic))
    alice: ChatClient = await clients(r1, "alice")
    bob: ChatClient = await clients(r2, "bob")
    await alice.call("join", {"room": ROOM})
    await bob.call("join", {"room": ROOM})

    joined = await alice.wait_event("presence", lambda e: e["user"]["id"] == "bob")
    assert joined["action"] == "join" and joined["room"] == ROOM

    await bob.call("typing", {"room": ROOM, "typing": True})
    typing = await alice.wait_event("typing", lambda e: e["user"]["id"] == "bob")
    assert typing == {"room": ROOM, "user": typing["user"], "typing": True}

    posted = (await alice.call("message", {"room": ROOM, "text": "read me"}))["message"]
    await bob.wait_event("message", lambda m: m["id"] == posted["id"])
    await bob.call("read", {"room": ROOM, "message_id": posted["id"]})
    receipt = await alice.wait_event("read", lambda e: e["user"]["id"] == "bob")
    assert receipt["message_id"] == posted["id"] and receipt["room"] == ROOM

    # A server-side disconnect of a socket that lives on r2, issued by another process on
    # the bus: a Socket.IO server whose manager is a write-only AsyncKafkaManager, i.e. what
    # a replica does in sio.emit(to=sid) / sio.disconnect(sid) for a sid it does not hold.
    # (The admin API's DisconnectUser takes the same path from inside a replica.)
    admin = AsyncKafkaManager(
        KafkaSettings(brokers=(kafka["KAFKA_TEST_PLAINTEXT"],), topic=topic, retry_backoff_ms=200),
        replica_id="test-admin",
        write_only=True,
    )
    outside = socketio.AsyncServer(client_manager=admin, async_mode="aiohttp")
    await admin.start()
    try:
        await outside.emit(
            "session_end", {"code": "forbidden", "message": "bye", "reconnect": False}, to=bob.sid
        )
        await outside.disconnect(bob.sid)
    finally:
        await admin.aclose()
    ended = await bob.wait_event("session_end", lambda e: True)
    assert ended["code"] == "forbidden"
    await bob.wait_until("the server-side disconnect", lambda: bob.disconnected)
    left = await alice.wait_event("presence", lambda e: e["user"]["id"] == "bob" and e["action"] == "leave")
    assert left["room"] == ROOM


@pytest.mark.disrupts_services
async def test_broker_restart_keeps_replicas_up_and_catch_up_fills_the_gap(
    kafka: dict[str, str],
    server_factory: ServerFactory,
    tmp_path: Path,
    clients: Callable[[ServerProcess, str], Any],
) -> None:
    r1, r2 = two_replicas(server_factory, tmp_path, replica_env(kafka, tls=False, topic=new_topic()))
    alice: ChatClient = await clients(r1, "alice")
    bob: ChatClient = await clients(r2, "bob")
    for client in (alice, bob):
        await client.call("join", {"room": ROOM})
    before = (await alice.call("message", {"room": ROOM, "text": "before the outage"}))["message"]
    await bob.wait_event("message", lambda m: m["id"] == before["id"])

    # In threads: the clients' event loop must keep answering pings meanwhile.
    await asyncio.to_thread(kafka_script, "stop")
    try:
        for replica in (r1, r2):
            await asyncio.to_thread(replica.wait_http, "/readyz", status=503, timeout=30)
            status, body = replica.http_json("/readyz")
            failing = body["failing"]
            assert status == 503 and isinstance(failing, dict), body
            assert "Kafka unavailable" in str(failing["bus"]), body
        # Refused while Kafka is down: the room stream cannot take it, nothing is delivered.
        payload = {"room": ROOM, "text": "during the outage", "client_msg_id": "during"}
        refused = await alice.call("message", payload, ok=False)
        assert refused["error"]["code"] == "bus_unavailable", refused
    finally:
        await asyncio.to_thread(kafka_script, "start")

    for replica in (r1, r2):
        await asyncio.to_thread(replica.wait_http, "/readyz", status=200, timeout=60)
        assert replica.proc is not None and replica.proc.poll() is None, replica.log_tail()
        assert len(log_lines(replica.log_path, "chatsvc.bus.kafka: Kafka unavailable:")) == 1, (
            replica.log_tail()
        )
        assert len(log_lines(replica.log_path, "chatsvc.bus.kafka: Kafka reachable again")) == 1, (
            replica.log_tail()
        )

    # The client's retry is taken once the stream is back, and reaches bob live, once.
    deadline = asyncio.get_running_loop().time() + 30
    while not (ack := await alice.call("message", payload, ok=False)).get("ok"):
        assert ack["error"]["code"] == "bus_unavailable", ack
        assert asyncio.get_running_loop().time() < deadline, ack
        await asyncio.sleep(0.5)
    during = ack["message"]
    await bob.wait_event("message", lambda m: m["id"] == during["id"])
    # join {since: pos} from before the outage answers exactly what followed.
    caught = await bob.call("join", {"room": ROOM, "since": before["pos"]})
    assert caught["reset"] is False and [m["id"] for m in caught["messages"]] == [during["id"]]
    assert caught["messages"][0]["text"] == "during the outage"
    # And live fan-out has resumed.
    after = (await alice.call("message", {"room": ROOM, "text": "after the outage"}))["message"]
    await bob.wait_event("message", lambda m: m["id"] == after["id"])
    assert bob.texts("alice")[-1] == "after the outage"
