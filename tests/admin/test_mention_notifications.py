"""Offline notifications of mentions (issue 25): a mentioned user with no live socket gets
one ``mention`` notification, in public rooms too; online users get the live event only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.admin.helpers import admin_client, unique
from tests.admin.test_notifications import FAST, collect
from tests.conftest import ServerFactory
from tests.support.clients import ClientPool
from tests.support.tokens import token


@pytest.fixture
async def clients() -> AsyncIterator[ClientPool]:
    async with ClientPool() as pool:
        yield pool


async def test_offline_mentioned_users_are_notified_once(
    server_factory: ServerFactory, clients: ClientPool, tmp_path: Path
) -> None:
    server = server_factory(data_dir=tmp_path / "data", **FAST)
    alice, bob, carol, dave = (unique(n) for n in ("alice", "bob", "carol", "dave"))
    a = await clients.connect(server.url, token(alice))
    await clients.connect(server.url, token(carol))  # online: the live event, no record
    lobby = f"lobby-{uuid.uuid4().hex[:6]}"
    await a.ok("join", {"room": lobby})
    body = {"room": lobby, "text": "hey", "mentions": [bob, carol], "client_msg_id": "k"}
    public = (await a.ok("message", body))["message"]
    assert (await a.ok("message", body))["duplicate"] is True
    await a.ok("message", {"room": lobby, "text": "nobody named"})
    club = (await a.ok("create_room", {"title": "Club", "members": [dave]}))["room"]
    private = (await a.ok("message", {"room": club, "text": "you", "mentions": [dave, bob]}))["message"]
    await asyncio.sleep(0.3)
    async with admin_client(server.grpc_port) as admin:
        got = await collect(admin, 0, 10, within=2.0)
    seen = [(n.user_id, n.message_id, n.room, n.sender, n.kind) for n in got]
    assert seen == [
        (bob, public["id"], lobby, alice, "mention"),
        (dave, private["id"], club, alice, "mention"),
    ], "bob is not a member of the club: his mention there was dropped"
