"""Conversations across two replicas over the real Kafka broker and the real CQL node
(issue 24): a DM sent on one replica reaches a socket on the other that never joined; a
member removed on one replica stops receiving on the other at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bus.helpers import new_topic, replica_env
from tests.conftest import ServerFactory
from tests.store.conftest import cli_env, drop_keyspace, new_keyspace, scylla_env
from tests.support.clients import ChatClient, ClientPool
from tests.support.servers import ServerProcess, run_cli
from tests.support.services import kafka_env
from tests.support.tokens import token

FAST = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}


@pytest.fixture(scope="module")
def cql_keyspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh keyspace on the real CQL node, migrated by ``chatsvc migrate``; dropped after."""
    keyspace = new_keyspace()
    env = scylla_env(keyspace)
    done = run_cli(["migrate"], cli_env(tmp_path_factory.mktemp("migrate"), env), timeout=300)
    assert done.returncode == 0, done.stderr
    yield env
    drop_keyspace(env, keyspace)


@pytest.fixture
def replicas(
    server_factory: ServerFactory, cql_keyspace: dict[str, str]
) -> tuple[ServerProcess, ServerProcess]:
    env = replica_env(kafka_env(), tls=False, topic=new_topic()) | cql_keyspace | FAST
    a = server_factory(name="ra", CHATSVC_REPLICA_ID="ra", **env)
    b = server_factory(name="rb", CHATSVC_REPLICA_ID="rb", **env)
    for replica in (a, b):
        replica.wait_http("/readyz", timeout=60)
    return a, b


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def until_delivered(sender: ChatClient, receiver: ChatClient, room: str) -> None:
    """Both replicas hear each other (the consumers are assigned): probe until one arrives."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = (await sender.ok("message", {"room": room, "text": "probe"}))["message"]["id"]
        try:
            await receiver.next("message", where=lambda m, want=probe: m["id"] == want, within=1.0)
            return
        except TimeoutError:
            continue
    raise AssertionError("the replicas never delivered to each other")


async def test_dm_on_a_reaches_a_socket_on_b_that_never_joined_and_removal_holds_on_b(
    replicas: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    ra, rb = replicas
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    async with ClientPool() as pool:
        a = await pool.connect(ra.url, token(alice))
        b = await pool.connect(rb.url, token(bob))  # only connected, on the other replica
        dm = (await a.ok("open_dm", {"user": bob}))["room"]
        await until_delivered(a, b, dm)
        b.pending("message")
        sent = (await a.ok("message", {"room": dm, "text": "across replicas"}))["message"]
        assert await b.next("message", within=10) == sent
        await asyncio.sleep(0.5)
        assert b.pending("message") == []  # once

        # Removal on A: carol's sockets on B (one joined, one only connected) stop at once.
        room = (await a.ok("create_room", {"title": "Club", "members": [carol]}))["room"]
        c_joined = await pool.connect(rb.url, token(carol))
        c_plain = await pool.connect(rb.url, token(carol))
        await c_joined.ok("join", {"room": room})
        first = (await a.ok("message", {"room": room, "text": "one"}))["message"]
        for c in (c_joined, c_plain):
            assert await c.next("message", where=lambda m: m["room"] == room, within=10) == first
        await a.ok("remove_member", {"room": room, "user": carol})
        # Effective at once: the very next message, sent right after the ack, reaches
        # neither socket (the kick runs on every replica before remove_member answers).
        await a.ok("message", {"room": room, "text": "after removal"})
        kicked = await c_joined.next("kicked", within=5)
        assert kicked["room"] == room
        await asyncio.sleep(1.0)
        for c in (c_joined, c_plain):
            assert [m for m in c.pending("message") if m["room"] == room] == []
            assert await c.error("message", {"room": room, "text": "?"}) == "forbidden"
            assert await c.error("history", {"room": room}) == "forbidden"


async def test_a_block_on_a_holds_for_a_sender_on_b_on_both_replicas(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    ra, rb = replicas
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    lobby = f"lobby-{uuid.uuid4().hex[:8]}"
    async with ClientPool() as pool:
        b_on_a = await pool.connect(ra.url, token(bob))
        b_on_b = await pool.connect(rb.url, token(bob))
        c_on_a = await pool.connect(ra.url, token(carol))
        a_on_b = await pool.connect(rb.url, token(alice))
        for client in (b_on_a, b_on_b, c_on_a, a_on_b):
            await client.ok("join", {"room": lobby})
        await until_delivered(a_on_b, b_on_a, lobby)
        await until_delivered(a_on_b, c_on_a, lobby)
        await b_on_a.ok("block", {"user": alice})
        # The change reaches replica B by a control message; its refusal rules read the store.
        assert await a_on_b.error("open_dm", {"user": bob}) == "forbidden"
        await asyncio.sleep(1.0)
        for client in (b_on_a, b_on_b, c_on_a):
            client.pending("message")
        hidden = (await a_on_b.ok("message", {"room": lobby, "text": "from b, hidden"}))["message"]
        await a_on_b.ok("typing", {"room": lobby, "typing": True})
        assert await c_on_a.next("message", where=lambda m: m["id"] == hidden["id"], within=10) == hidden
        heard = (await c_on_a.ok("message", {"room": lobby, "text": "carol"}))["message"]
        for socket in (b_on_a, b_on_b):
            await socket.next("message", where=lambda m: m["id"] == heard["id"], within=10)
        await asyncio.sleep(0.5)
        for socket in (b_on_a, b_on_b):
            assert [m for m in socket.pending("message") if m["user"]["id"] == alice] == []
            assert [t for t in socket.pending("typing") if t["user"]["id"] == alice] == []
