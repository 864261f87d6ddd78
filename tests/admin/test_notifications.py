"""Offline notifications in embedded mode (issue 24): a DM or private-room message to a
member with no live socket is one record in the SQLite outbox, streamed by the admin API's
StreamNotifications with a resume position, also after a restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import Admin, admin_client, rpc_error, unique
from tests.conftest import ServerFactory
from tests.support.clients import ClientPool
from tests.support.servers import ServerProcess
from tests.support.tokens import token

FAST = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}


async def collect(admin: Admin, after: int, count: int, *, within: float = 5.0) -> list[Any]:
    """The first ``count`` notifications after ``after`` (then the stream is cancelled);
    fewer if no more arrive ``within`` seconds."""
    got: list[Any] = []
    call = admin.stub.StreamNotifications(
        admin_pb2.StreamNotificationsRequest(after_position=after), metadata=admin.metadata
    )
    try:
        async with asyncio.timeout(within):
            async for item in call:
                got.append(item)
                if len(got) >= count:
                    break
    except TimeoutError:
        pass
    finally:
        call.cancel()
    return got


@pytest.fixture
async def clients() -> AsyncIterator[ClientPool]:
    async with ClientPool() as pool:
        yield pool


async def test_offline_members_are_notified_once_and_the_stream_resumes(
    server_factory: ServerFactory, clients: ClientPool, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server: ServerProcess = server_factory(data_dir=data, **FAST)
    alice, bob, carol, dave, eve = (unique(n) for n in ("alice", "bob", "carol", "dave", "eve"))
    a = await clients.connect(server.url, token(alice))
    await clients.connect(server.url, token(carol))  # online: never notified
    d = await clients.connect(server.url, token(dave))  # offline later, and blocks alice
    dm = (await a.ok("open_dm", {"user": bob}))["room"]
    first = (await a.ok("message", {"room": dm, "text": "are you there?", "client_msg_id": "m1"}))["message"]
    again = await a.ok("message", {"room": dm, "text": "are you there?", "client_msg_id": "m1"})
    assert again["duplicate"] is True  # a retried send notifies nobody twice
    club = (await a.ok("create_room", {"title": "Club", "members": [bob, carol, dave, eve]}))["room"]
    await d.ok("block", {"user": alice})
    await d.disconnect()
    await asyncio.sleep(0.3)  # the server has seen it go
    second = (await a.ok("message", {"room": club, "text": "x" * 150}))["message"]
    await a.ok("join", {"room": f"lobby-{uuid.uuid4().hex[:6]}"})

    async with admin_client(server.grpc_port) as admin:
        got = await collect(admin, 0, 10, within=2.0)
        seen = [(n.user_id, n.message_id, n.room, n.sender, n.kind) for n in got]
        assert seen == [
            (bob, first["id"], dm, alice, "direct"),
            (bob, second["id"], club, alice, "private"),
            (eve, second["id"], club, alice, "private"),
        ]
        assert got[1].preview == "x" * 100 and got[0].preview == "are you there?"
        positions = [n.position for n in got]
        assert positions == sorted(positions)
        # Resume after the first: the rest, then a new one arrives live.
        resumed = asyncio.ensure_future(collect(admin, positions[0], 3, within=5.0))
        await asyncio.sleep(0.5)
        third = (await a.ok("message", {"room": dm, "text": "hello?"}))["message"]
        tail = await resumed
        assert [(n.user_id, n.message_id) for n in tail] == [
            (bob, second["id"]),
            (eve, second["id"]),
            (bob, third["id"]),
        ]
        # bob comes online: no more notifications for him.
        await clients.connect(server.url, token(bob))
        await a.ok("message", {"room": dm, "text": "there you are"})
        assert await collect(admin, tail[-1].position, 1, within=1.0) == []

    # A restart keeps the outbox and its positions: nothing repeated, nothing lost.
    await clients.__aexit__(None, None, None)
    server.stop()
    restarted = server_factory(name="again", data_dir=data, **FAST)
    async with admin_client(restarted.grpc_port) as admin:
        after = await collect(admin, 0, 10, within=2.0)
        assert [(n.position, n.message_id, n.user_id) for n in after] == [
            (n.position, n.message_id, n.user_id) for n in [*got, tail[-1]]
        ]
        await rpc_error(
            collect_error(admin, -1),
            grpc.StatusCode.INVALID_ARGUMENT,
        )


async def collect_error(admin: Admin, after: int) -> None:
    call = admin.stub.StreamNotifications(
        admin_pb2.StreamNotificationsRequest(after_position=after), metadata=admin.metadata
    )
    async for _ in call:
        pass


async def test_stream_needs_an_admin_token(server_factory: ServerFactory) -> None:
    server = server_factory(**FAST)
    async with admin_client(server.grpc_port, token=token(unique("user"))) as plain:
        await rpc_error(collect_error(plain, 0), grpc.StatusCode.PERMISSION_DENIED)
    async with admin_client(server.grpc_port, token="") as anonymous:
        await rpc_error(collect_error(anonymous, 0), grpc.StatusCode.UNAUTHENTICATED)
