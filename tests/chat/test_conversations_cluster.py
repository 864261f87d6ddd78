"""Conversations across two replicas over the real Kafka broker and the real CQL node
(issue 24): a DM sent on one replica reaches a socket on the other that never joined; a
member removed on one replica stops receiving on the other at once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.conftest import ServerFactory
from tests.support.clients import ClientPool
from tests.support.replicas import start_replicas, until_delivered
from tests.support.servers import ServerProcess
from tests.support.tokens import token


@pytest.fixture
def replicas(
    server_factory: ServerFactory, cql_keyspace: dict[str, str]
) -> tuple[ServerProcess, ServerProcess]:
    return start_replicas(server_factory, cql_keyspace)


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


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
