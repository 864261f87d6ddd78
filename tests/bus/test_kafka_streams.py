"""The Kafka events topic is the room stream (issue 21 phase 2): two replicas (OS processes)
on the real broker, sharing one SQLite history, real python-socketio clients.

Positions are the events topic's offsets: the sender's ack carries the position, every
receiver on either replica gets the record at that position and in the same order, a retry
with the same ``client_msg_id`` is acked the original, and ``join {since}`` answers from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatsvc.chat.wire import parse_position
from tests.bus.helpers import ChatClient, kafka_script, log_lines, new_topic, replica_env
from tests.bus.test_kafka_cluster import ROOM, two_replicas
from tests.conftest import ServerFactory
from tests.support.servers import ServerProcess

#: The senders here send faster than a person: no rate limit in the way.
FAST = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}

pytestmark = pytest.mark.integration


def offset(pos: str) -> int:
    parsed = parse_position(pos)
    assert parsed is not None, pos
    return parsed[1]


async def test_positions_are_event_offsets_and_every_receiver_sees_one_order(
    kafka: dict[str, str],
    server_factory: ServerFactory,
    tmp_path: Path,
    clients: Callable[[ServerProcess, str], Any],
) -> None:
    r1, r2 = two_replicas(server_factory, tmp_path, replica_env(kafka, tls=False, topic=new_topic()) | FAST)
    alice: ChatClient = await clients(r1, "alice")
    bob: ChatClient = await clients(r2, "bob")
    carol: ChatClient = await clients(r1, "carol")
    dave: ChatClient = await clients(r2, "dave")
    for client in (alice, bob, carol, dave):
        await client.call("join", {"room": ROOM})

    # Both senders at once, on different replicas: the log decides one order for everyone.
    async def send(client: ChatClient, n: int) -> list[dict[str, Any]]:
        acks = []
        for i in range(n):
            ack = await client.call(
                "message", {"room": ROOM, "text": f"{client.sub} {i}", "client_msg_id": f"{client.sub}-{i}"}
            )
            acks.append(ack["message"])
        return acks

    sent_a, sent_b = await asyncio.gather(send(alice, 10), send(bob, 10))
    acked = {m["id"]: m["pos"] for m in [*sent_a, *sent_b]}
    epochs = {parse_position(p)[0] for p in acked.values()}  # type: ignore[index]
    assert len(epochs) == 1, "one epoch on both replicas"
    for acks in (sent_a, sent_b):
        assert [offset(m["pos"]) for m in acks] == sorted(offset(m["pos"]) for m in acks)

    def stream(client: ChatClient) -> list[tuple[str, str]]:
        return [(m["id"], m["pos"]) for m in client.events["message"]]

    for receiver in (carol, dave):
        await receiver.wait_until("all 20 messages", lambda r=receiver: len(r.events["message"]) >= 20)
    # Every receiver: each message once, at the position its sender was acked, in position order.
    assert stream(carol) == stream(dave)
    assert dict(stream(carol)) == acked and len(stream(carol)) == 20
    assert [offset(p) for _, p in stream(carol)] == sorted(offset(p) for _, p in stream(carol))
    # A sender does not get its own messages back; it gets everybody else's, in the same order.
    await alice.wait_until("bob's 10", lambda: len(alice.events["message"]) >= 10)
    assert stream(alice) == [x for x in stream(carol) if x[0] in {m["id"] for m in sent_b}]

    # A retry of an acked message (its ack lost, say) is acked the original, delivered nowhere.
    retry = await alice.call("message", {"room": ROOM, "text": "alice 3", "client_msg_id": "alice-3"})
    assert retry["duplicate"] is True and retry["message"]["id"] == sent_a[3]["id"]
    assert retry["message"]["pos"] == sent_a[3]["pos"]

    # Edits and deletes are records of the stream too, at their own positions.
    target = sent_b[0]
    await bob.call("edit", {"room": ROOM, "id": target["id"], "text": "bob 0, edited"})
    await bob.call("delete", {"room": ROOM, "id": sent_b[1]["id"]})
    last = (await alice.call("message", {"room": ROOM, "text": "last"}))["message"]
    await dave.wait_event("message", lambda m: m["id"] == last["id"])
    edited = await dave.wait_event("message_edited", lambda e: e["id"] == target["id"])
    deleted = await carol.wait_event("message_deleted", lambda e: e["id"] == sent_b[1]["id"])
    assert offset(target["pos"]) < offset(edited["pos"]) < offset(deleted["pos"]) < offset(last["pos"])
    assert len(carol.events["message"]) == len(dave.events["message"]) == 21, "the retry was not delivered"

    # join {since}: everything after a position, from either replica, as the stream had it.
    middle = stream(carol)[9][1]
    for client in (bob, carol):
        caught = await client.call("join", {"room": ROOM, "since": middle})
        assert caught["reset"] is False, caught
        assert [m["id"] for m in caught["messages"]] == [i for i, _ in stream(carol)[10:]]
        assert {e["event"] for e in caught["events"]} == {"message_edited", "message_deleted"}
        assert caught["pos"] == last["pos"]
    for replica in (r1, r2):
        assert log_lines(replica.log_path, f"Kafka events topic {r1.env['KAFKA_TOPIC']}.events"), (
            replica.log_tail()
        )


@pytest.mark.disrupts_services
async def test_broker_outage_refuses_sends_and_retries_lose_and_repeat_nothing(
    kafka: dict[str, str],
    server_factory: ServerFactory,
    tmp_path: Path,
    clients: Callable[[ServerProcess, str], Any],
) -> None:
    """Restarts the shared broker: run it alone (``-k broker_outage``)."""
    r1, r2 = two_replicas(server_factory, tmp_path, replica_env(kafka, tls=False, topic=new_topic()) | FAST)
    alice: ChatClient = await clients(r1, "alice")
    bob: ChatClient = await clients(r2, "bob")
    carol: ChatClient = await clients(r1, "carol")
    for client in (alice, bob, carol):
        await client.call("join", {"room": ROOM})
    acked: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    outstanding: list[tuple[ChatClient, dict[str, Any]]] = []
    n = 0

    async def attempt(client: ChatClient, payload: dict[str, Any]) -> bool:
        try:
            ack = await client.call("message", payload, ok=False)
        except TimeoutError:
            return False
        if ack.get("ok"):
            acked.append(ack["message"])
            return True
        assert ack["error"]["code"] == "bus_unavailable", ack
        refused.append(ack)
        return False

    async def send_some(count: int) -> None:
        nonlocal n
        for _ in range(count):
            for client in (alice, bob):
                n += 1
                payload = {"room": ROOM, "text": f"{client.sub} {n}", "client_msg_id": f"m{n}"}
                if not await attempt(client, payload):
                    outstanding.append((client, payload))

    await send_some(3)
    # In threads: the clients' event loop must keep answering pings meanwhile.
    await asyncio.to_thread(kafka_script, "stop")
    try:
        await send_some(3)  # refused while the broker is down, bounded by the append timeout
    finally:
        await asyncio.to_thread(kafka_script, "start")
    assert refused, "sends during the outage are refused"
    deadline = asyncio.get_running_loop().time() + 90
    while outstanding:  # the clients retry with the same client_msg_id until acked
        assert asyncio.get_running_loop().time() < deadline, f"not acked after the outage: {outstanding}"
        client, payload = outstanding[0]
        if await attempt(client, payload):
            outstanding.pop(0)
        else:
            await asyncio.sleep(1)
    await send_some(2)
    ids = {m["id"] for m in acked}
    assert len(ids) == len(acked) == n, "every message acked exactly once"
    for receiver, others in ((carol, ids), (bob, {m["id"] for m in acked if m["user"]["id"] == "alice"})):
        await receiver.wait_until(
            "every acked message",
            lambda r=receiver, o=others: o <= {m["id"] for m in r.events["message"]},
            within=60,
        )
        got = [m["id"] for m in receiver.events["message"]]
        assert len(got) == len(set(got)), "nothing delivered twice"
        assert set(got) <= ids, "nothing delivered that was not acked"
    by_pos = [m["id"] for m in sorted(acked, key=lambda m: offset(m["pos"]))]
    assert [m["id"] for m in carol.events["message"]] == by_pos, "delivered in position order"
    for replica in (r1, r2):
        assert replica.proc is not None and replica.proc.poll() is None, replica.log_tail()
