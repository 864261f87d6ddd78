"""Issue 21's chaos run, bounded: two replicas on the real broker and CQL node, senders and
receivers over websocket; the broker killed (SIGKILL) mid-stream and restarted, then the CQL
node killed (SIGKILL) while the senders go on and restarted, then one replica stopped
(SIGTERM) and restarted.

Receivers are the official socket.io-client (node) with connection state recovery; senders
are python-socketio clients that retry a refused or unanswered send with the same
``client_msg_id`` until it is acked, on whichever replica is up, until told to stop. What
must hold: every acked message reaches every receiver exactly once (live or by recovery),
nothing unacked is delivered, every receiver gets the room in position order (the same order
for all), and no socket is dropped by ping timeout; live chat goes on while the CQL node is
down (the send path does not touch CQL: acks keep coming, the history writer pauses), and
once it is back a fresh client's ``history`` holds every acked message exactly once, at the
position it was acked with.

Kills and restarts the broker and the CQL node of ``$CHATSVC_RUN_DIR``: run it alone
(``-k chaos``), against services of its own when others share the machine; it restarts them
whatever happens. Takes about three minutes on a quiet machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatsvc.chat.wire import parse_position
from chatsvc.model.ids import lowest_id_at
from tests.bus.chaos_evidence import ChaosRecord, keep, now_utc
from tests.bus.helpers import ChatClient, cassandra_script, kafka_script, new_topic, replica_env
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
    # A store request to the dead node fails in 2 s instead of 5: the writer's retries and
    # anything else touching CQL show the outage sooner.
    "SCYLLA_REQUEST_TIMEOUT": "2",
    # The history writer's batches and failed writes (evidence of a failed run).
    "CHATSVC_LOG_LEVEL": "DEBUG",
}
#: At most this many messages per sender (two senders): the run is bounded even if a phase
#: never ends (each phase also has its own time bound). Sized for a loaded machine, where
#: the CQL node takes up to two minutes to restart while the senders go on at 10 msg/s:
#: 400 ran out before the phase after it ended.
MAX_PER_SENDER = 1500
#: Acks each phase waits for after its fault.
PER_PHASE = 20
RECEIVERS = {"ra1": 0, "ra2": 0, "rb1": 1, "rb2": 1}  # name -> replica index


@pytest.fixture
def cql_keyspace(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh keyspace on the real CQL node, migrated by ``chatsvc migrate``; dropped after."""
    keyspace = new_keyspace()
    env = scylla_env(keyspace)
    done = run_cli(["migrate"], cli_env(tmp_path / "migrate", env), timeout=300)
    assert done.returncode == 0, done.stderr
    yield env
    cassandra_script("start", timeout=300)  # the keyspace is dropped on a running node
    drop_keyspace(env, keyspace)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeClients]:
    clients = await NodeClients(None, tmp_path / "node.log").start()
    yield clients
    await clients.close()


def kill(service: str) -> None:
    """SIGKILL the broker or CQL node this run dir started (as a crash would); its script
    starts it again."""
    pid = int((RUN_DIR / service / f"{service}.pid").read_text().strip())
    os.kill(pid, signal.SIGKILL)


def cql_answers() -> bool:
    """``scripts/cassandra status``: the CQL node answers."""
    try:
        cassandra_script("status", timeout=30)
    except AssertionError:
        return False
    return True


class Sender:
    """Sends messages in order until stopped, each retried with its ``client_msg_id`` until
    acked, reconnecting to whichever replica answers."""

    def __init__(self, sub: str, room: str, replicas: list[ServerProcess], home: int) -> None:
        self.sub, self.room, self.replicas, self.home = sub, room, replicas, home
        self.client: ChatClient | None = None
        self.acked: list[dict[str, Any]] = []
        #: Every try of every message, with its time and outcome (evidence of a failed run).
        self.attempts: list[dict[str, Any]] = []
        self.refused = 0
        self.stop = asyncio.Event()

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
        for i in range(MAX_PER_SENDER):
            if self.stop.is_set():
                return
            payload = {"room": self.room, "text": f"{self.sub} {i}", "client_msg_id": f"{self.sub}-{i}"}
            while True:  # a message once started is sent until acked, stop or not
                if self.client is None or not self.client.sio.connected:
                    self.client = await self._connect()
                attempt = {"cmid": payload["client_msg_id"], "to": self.client.url, "at": now_utc()}
                self.attempts.append(attempt)
                try:
                    ack = await asyncio.wait_for(self.client.sio.call("message", payload, timeout=10), 12)
                except Exception as exc:
                    attempt |= {"outcome": repr(exc), "done": now_utc()}
                    self.refused += 1
                    continue
                attempt |= {"outcome": ack, "done": now_utc()}
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


async def stored_history(url: str, room: str) -> list[dict[str, Any]]:
    """Every message of ``room`` in the store, oldest first, read by a fresh client through
    ``history``. Paged from a ``before`` cursor past every message: the newest page would
    otherwise be completed from the replica's in-memory tail, which is not what was written."""
    client = await ChatClient(url, "history-reader").connect()
    try:
        messages: list[dict[str, Any]] = []
        before: str | None = lowest_id_at(int(time.time() * 1000) + 3_600_000)
        while before is not None:
            page = await client.call("history", {"room": room, "before": before, "limit": 100})
            messages += page["messages"]
            before = page["next_before"]
        return list(reversed(messages))
    finally:
        await client.close()


@pytest.mark.disrupts_services
async def test_chaos_broker_and_cql_kills_and_replica_restart_lose_and_repeat_nothing(
    server_factory: ServerFactory,
    node: NodeClients,
    cql_keyspace: dict[str, str],
    kafka: dict[str, str],
    tmp_path: Path,
) -> None:
    env = replica_env(kafka, tls=False, topic=new_topic()) | cql_keyspace | ENV
    record = ChaosRecord(
        f"chaos-{uuid.uuid4().hex[:8]}", env["KAFKA_TOPIC"], env["KAFKA_BROKERS"], cql_keyspace
    )
    senders: list[Sender] = []
    try:
        await run_chaos(server_factory, node, env, record, senders)
    except BaseException:
        # A failure here is rare and load-dependent: keep what names its cause.
        received = {name: [m["id"] for m in node.received(name, "message")] for name in RECEIVERS}
        try:
            async with asyncio.timeout(120):
                where = await keep(record, tmp_path, senders, received, node.events)
            print(f"chaos run failed: evidence kept in {where}")
        except Exception as exc:
            print(f"chaos run failed; keeping its evidence failed too: {exc!r}")
        raise


async def run_chaos(
    server_factory: ServerFactory,
    node: NodeClients,
    env: dict[str, str],
    record: ChaosRecord,
    senders: list[Sender],
) -> None:
    """The run itself (see the module docstring); ``record`` and ``senders`` are filled in
    as it goes, for the evidence of a failed run."""
    started = time.monotonic()
    replicas = [
        server_factory(name=f"r{i + 1}", CHATSVC_REPLICA_ID=f"r{i + 1}", wait="/readyz", **env)
        for i in (0, 1)
    ]
    room = record.room
    for name, index in RECEIVERS.items():
        await node.open(
            name, replicas[index].url, token(name), recover=True, reconnect=True, room=room,
            transports=["websocket"],
        )  # fmt: skip
        await node.connected(name, within=20)
        assert (await node.emit(name, "join", {"room": room}))["ok"] is True
    senders += [Sender("s1", room, replicas, 0), Sender("s2", room, replicas, 1)]
    record.phase("senders start")
    running = [asyncio.create_task(s.run(pace=0.2)) for s in senders]

    def count() -> int:
        return sum(len(s.acked) for s in senders)

    async def acked(n: int, within: float, what: str) -> None:
        try:
            async with asyncio.timeout(within):
                while count() < n:
                    assert not any(t.done() for t in running), [t for t in running if t.done()]
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"{what}: {count()} of {n} acks within {within}s") from None

    during_cql = 0
    try:
        await acked(PER_PHASE, 60, "before any fault")
        record.phase("kill -9 the broker")
        await asyncio.to_thread(kill, "kafka")
        await asyncio.sleep(5)  # senders are refused meanwhile; receivers stay connected
        await asyncio.to_thread(kafka_script, "start")
        record.phase("broker started")
        await acked(count() + PER_PHASE, 120, "after the broker came back")

        record.phase("kill -9 the CQL node")
        await asyncio.to_thread(kill, "cassandra")
        record.phase("CQL node killed")
        down_from = count()
        # The send path needs the log, not CQL: acks go on while the node is dead (a build
        # whose sends wait on the store fails here).
        await acked(down_from + 2 * PER_PHASE, 45, "live chat during the CQL outage")
        assert not await asyncio.to_thread(cql_answers), "the killed CQL node came back by itself?"
        during_cql = count() - down_from
        record.phase("start the CQL node")
        await asyncio.to_thread(cassandra_script, "start", 300)
        record.phase("CQL node started")
        await acked(count() + PER_PHASE, 120, "after the CQL node came back")
        # Both replicas' stores reconnected (/readyz checks the store): the SIGTERM below
        # saves its sessions there, or its receivers could not recover.
        for replica in replicas:
            await asyncio.to_thread(replica.wait_http, "/readyz", timeout=90)

        record.phase("SIGTERM r1")
        replicas[0].stop()  # SIGTERM: drains, its receivers' sessions are kept for recovery
        await asyncio.sleep(1)
        replicas[0].start(wait="/readyz", timeout=90)
        record.phase("r1 ready again")
        await acked(count() + PER_PHASE, 120, "after the replica restarted")
        for sender in senders:
            sender.stop.set()
        record.phase("senders told to stop")
        async with asyncio.timeout(60):
            await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
        for sender in senders:
            await sender.close()
        # Whatever happened, the broker and the CQL node are left running (CI shares them).
        await asyncio.to_thread(kafka_script, "start")
        await asyncio.to_thread(cassandra_script, "start", 300)

    acks = [m for s in senders for m in s.acked]
    ids = {m["id"] for m in acks}
    assert len(ids) == len(acks), "every message acked exactly once"
    assert sum(s.refused for s in senders) > 0, "the broker outage refused or delayed some sends"
    assert during_cql >= 2 * PER_PHASE, during_cql
    in_order = [m["id"] for m in sorted(acks, key=lambda m: offset(m["pos"]))]
    paused = [r for r in replicas if "history writer paused" in r.log_text()]
    assert paused, "no history writer noticed the CQL outage"

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

    # History was written from the log through the CQL outage: a fresh client reads every
    # acked message once, at its acked position (the writer may still be catching up).
    by_id = {m["id"]: m for m in acks}
    deadline = time.monotonic() + 60
    while True:
        stored = record.stored = await stored_history(replicas[1].url, room)
        if {m["id"] for m in stored} >= ids or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    stored_ids = [m["id"] for m in stored]
    assert len(stored_ids) == len(set(stored_ids)), "a message is in history twice"
    assert set(stored_ids) == ids, f"history lacks {len(ids - set(stored_ids))} acked message(s)"
    assert [m["id"] for m in sorted(stored, key=lambda m: offset(m["pos"]))] == in_order
    assert all(m["pos"] == by_id[m["id"]]["pos"] for m in stored), "history holds other positions"
    took = time.monotonic() - started
    print(f"chaos run: {len(acks)} acked, {during_cql} during the CQL outage, {took:.0f}s")
