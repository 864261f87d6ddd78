"""Issue 21's chaos run, bounded: two replicas on the real broker and CQL node, senders and
receivers over websocket, the broker killed (SIGKILL) mid-stream and restarted, then one
replica stopped (SIGTERM) and restarted.

Receivers are the official socket.io-client (node) with connection state recovery; senders
are python-socketio clients that retry a refused or unanswered send with the same
``client_msg_id`` until it is acked, on whichever replica is up. What must hold: every
acked message reaches every receiver exactly once (live or by recovery), nothing unacked is
delivered, every receiver gets the room in position order (the same order for all), and no
socket is dropped by ping timeout.

The CQL node is not killed here: the shared node takes minutes to restart on this machine
(the history writer's CQL outage is covered by tests/bus/test_kafka_history.py).

Restarts the shared broker: run it alone (``-k chaos``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatsvc.chat.wire import parse_position
from tests.bus.helpers import ChatClient, kafka_script, new_topic, replica_env
from tests.conftest import ServerFactory
from tests.deploy.support import NodeClients
from tests.store.conftest import cli_env, drop_keyspace, new_keyspace, scylla_env
from tests.support.servers import ServerProcess, run_cli
from tests.support.services import RUN_DIR
from tests.support.tokens import token

pytestmark = pytest.mark.integration

#: Short pings: a socket stuck behind a backlog would be dropped within the run.
ENV = {
    "CHATSVC_RATE_LIMIT_PER_SECOND": "1000",
    "CHATSVC_RATE_LIMIT_BURST": "1000",
    "CHATSVC_PING_INTERVAL": "3",
    "CHATSVC_PING_TIMEOUT": "3",
    "CHATSVC_SHUTDOWN_TIMEOUT": "5",
}
#: Messages per sender (two senders): bounded.
PER_SENDER = 60
RECEIVERS = {"ra1": 0, "ra2": 0, "rb1": 1, "rb2": 1}  # name -> replica index


@pytest.fixture
def cql_keyspace(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh keyspace on the real CQL node, migrated by ``chatsvc migrate``; dropped after."""
    keyspace = new_keyspace()
    env = scylla_env(keyspace)
    done = run_cli(["migrate"], cli_env(tmp_path / "migrate", env), timeout=300)
    assert done.returncode == 0, done.stderr
    yield env
    drop_keyspace(env, keyspace)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeClients]:
    clients = await NodeClients(None, tmp_path / "node.log").start()
    yield clients
    await clients.close()


def kill_broker() -> None:
    """SIGKILL the broker this run dir started (as a crash would); scripts/kafka starts it again."""
    pid = int((RUN_DIR / "kafka" / "kafka.pid").read_text().strip())
    os.kill(pid, signal.SIGKILL)


class Sender:
    """Sends ``PER_SENDER`` messages in order, each retried with its ``client_msg_id`` until
    acked, reconnecting to whichever replica answers."""

    def __init__(self, sub: str, room: str, replicas: list[ServerProcess], home: int) -> None:
        self.sub, self.room, self.replicas, self.home = sub, room, replicas, home
        self.client: ChatClient | None = None
        self.acked: list[dict[str, Any]] = []
        self.refused = 0

    async def _connect(self) -> ChatClient:
        for attempt in range(200):
            replica = self.replicas[(self.home + attempt) % len(self.replicas)]
            client = ChatClient(replica.url, self.sub)
            try:
                await client.connect()
                await client.call("join", {"room": self.room})
                return client
            except Exception:
                with contextlib.suppress(Exception):
                    await client.close()
                await asyncio.sleep(0.25)
        raise AssertionError(f"{self.sub} could not reconnect to any replica")

    async def run(self, pace: float) -> None:
        for i in range(PER_SENDER):
            payload = {"room": self.room, "text": f"{self.sub} {i}", "client_msg_id": f"{self.sub}-{i}"}
            while True:
                if self.client is None or not self.client.sio.connected:
                    self.client = await self._connect()
                try:
                    ack = await asyncio.wait_for(self.client.sio.call("message", payload, timeout=10), 12)
                except Exception:
                    self.refused += 1
                    continue
                if isinstance(ack, dict) and ack.get("ok"):
                    self.acked.append(ack["message"])
                    break
                self.refused += 1
                error = ack.get("error", {}) if isinstance(ack, dict) else {}
                assert error.get("code") in {"bus_unavailable", "shutting_down", "store_unavailable"}, ack
                await asyncio.sleep(0.3)
            await asyncio.sleep(pace)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


def offset(pos: str) -> int:
    parsed = parse_position(pos)
    assert parsed is not None, pos
    return parsed[1]


async def test_chaos_broker_kill_and_replica_restart_lose_and_repeat_nothing(
    server_factory: ServerFactory, node: NodeClients, cql_keyspace: dict[str, str], kafka: dict[str, str]
) -> None:
    env = replica_env(kafka, tls=False, topic=new_topic()) | cql_keyspace | ENV
    replicas = [
        server_factory(name=f"r{i + 1}", CHATSVC_REPLICA_ID=f"r{i + 1}", wait="/readyz", **env)
        for i in (0, 1)
    ]
    room = f"chaos-{uuid.uuid4().hex[:8]}"
    for name, index in RECEIVERS.items():
        await node.open(
            name, replicas[index].url, token(name), recover=True, reconnect=True, room=room,
            transports=["websocket"],
        )  # fmt: skip
        await node.connected(name, within=20)
        assert (await node.emit(name, "join", {"room": room}))["ok"] is True
    senders = [Sender("s1", room, replicas, 0), Sender("s2", room, replicas, 1)]
    running = [asyncio.create_task(s.run(pace=0.1)) for s in senders]
    try:

        async def acked(n: int, within: float) -> None:
            async with asyncio.timeout(within):
                while sum(len(s.acked) for s in senders) < n:
                    assert not any(t.done() and t.exception() for t in running), [
                        t for t in running if t.done()
                    ]
                    await asyncio.sleep(0.1)

        await acked(20, 60)
        await asyncio.to_thread(kill_broker)
        await asyncio.sleep(5)  # senders are refused meanwhile; receivers stay connected
        await asyncio.to_thread(kafka_script, "start")
        before = sum(len(s.acked) for s in senders)
        await acked(before + 20, 120)
        replicas[0].stop()  # SIGTERM: drains, its receivers' sessions are kept for recovery
        await asyncio.sleep(1)
        replicas[0].start(wait="/readyz", timeout=90)
        async with asyncio.timeout(240):
            await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
        for sender in senders:
            await sender.close()
        # Whatever happened, the shared broker is left running.
        await asyncio.to_thread(kafka_script, "start")

    acks = [m for s in senders for m in s.acked]
    ids = {m["id"] for m in acks}
    assert len(ids) == len(acks) == 2 * PER_SENDER, "every message acked exactly once"
    assert sum(s.refused for s in senders) > 0, "the outage refused or delayed some sends"
    in_order = [m["id"] for m in sorted(acks, key=lambda m: offset(m["pos"]))]

    def got(name: str) -> list[str]:
        return [m["id"] for m in node.received(name, "message")]

    for name in RECEIVERS:
        await node.wait_for(
            lambda _e, n=name: ids <= set(got(n)), within=60, what=f"{name}: every acked message"
        )
    await asyncio.sleep(1)  # anything late (a repeat) would arrive meanwhile
    for name, index in RECEIVERS.items():
        seen = got(name)
        assert len(seen) == len(set(seen)), f"{name}: a message arrived twice"
        assert set(seen) == ids, f"{name}: something unacked was delivered"
        assert seen == in_order, f"{name}: not in position order"
        disconnects = [e for e in node.events if e.get("name") == name and e["type"] == "disconnect"]
        assert not [e for e in disconnects if e["reason"] == "ping timeout"], disconnects
        connects = [e for e in node.events if e.get("name") == name and e["type"] == "connect"]
        if index == 1:
            assert not disconnects, f"{name} (on the replica that stayed up) was disconnected"
        else:  # drained with the replica, back on it when it restarted: recovered
            assert len(connects) >= 2 and connects[-1]["recovered"] is True, connects
    for replica in replicas:
        assert "ping timeout" not in replica.log_text()
