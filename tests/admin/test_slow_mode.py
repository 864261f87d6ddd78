"""SetSlowMode (issue 25): an admin slows a room through the admin API; members get
``room_mode {reason: "admin"}`` and a second post in the interval is ``slow_mode``."""

from __future__ import annotations

import grpc

from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import Admin, admin_client, rpc_error, unique
from tests.support.clients import ClientPool
from tests.support.servers import ServerProcess
from tests.support.tokens import token


async def test_set_slow_mode_announces_and_holds(
    admin: Admin, clients: ClientPool, shared_server: ServerProcess
) -> None:
    room = unique("stock:")
    member = await clients.connect(shared_server.url, token(unique("u")))
    await member.ok("join", {"room": room})
    reply = await admin.SetSlowMode(admin_pb2.SetSlowModeRequest(room=room, seconds=60))
    assert (reply.room, reply.slow_mode_seconds, reply.surge) == (room, 60, False)
    event = await member.next("room_mode")
    assert (event["room"], event["slow_mode_seconds"], event["reason"]) == (room, 60, "admin")
    await member.ok("message", {"room": room, "text": "one"})
    refused = await member.call("message", {"room": room, "text": "two"})
    assert refused["error"]["code"] == "slow_mode" and 0 < refused["error"]["retry_after_ms"] <= 60_000
    off = await admin.SetSlowMode(admin_pb2.SetSlowModeRequest(room=room, seconds=0))
    assert off.slow_mode_seconds == 0
    assert (await member.next("room_mode"))["slow_mode_seconds"] == 0
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await rpc_error(
        admin.SetSlowMode(admin_pb2.SetSlowModeRequest(room=room, seconds=-1)), invalid, mentions="'seconds'"
    )
    await rpc_error(admin.SetSlowMode(admin_pb2.SetSlowModeRequest(room=room, seconds=10**6)), invalid)
    await rpc_error(
        admin.SetSlowMode(admin_pb2.SetSlowModeRequest(room="bad room", seconds=1)),
        invalid,
        mentions="'room'",
    )


async def test_set_slow_mode_needs_an_admin_allowed_in_the_room(shared_server: ServerProcess) -> None:
    request = admin_pb2.SetSlowModeRequest(room=unique("stock:"), seconds=5)
    async with admin_client(shared_server.grpc_port, token(unique("u"), ttl=600)) as user:
        await rpc_error(user.SetSlowMode(request), grpc.StatusCode.PERMISSION_DENIED)
    scoped = token("ops", roles=["admin"], rooms=["stock:other"], ttl=600)
    async with admin_client(shared_server.grpc_port, scoped) as limited:
        await rpc_error(limited.SetSlowMode(request), grpc.StatusCode.PERMISSION_DENIED)
