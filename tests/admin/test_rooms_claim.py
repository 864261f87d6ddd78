"""Issue 22: an admin token's ``rooms`` claim binds the gRPC admin API as it binds sockets
(PERMISSION_DENIED on any other room; user-wide actions need an unrestricted token)."""

from __future__ import annotations

import uuid

import grpc

from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import admin_client, rpc_error
from tests.support.servers import ServerProcess
from tests.support.tokens import token

DENIED = grpc.StatusCode.PERMISSION_DENIED


async def test_room_scoped_admin_token(shared_server: ServerProcess) -> None:
    tag = uuid.uuid4().hex[:8]
    mine, other = f"desk{tag}:AAPL", f"lobby{tag}"
    scoped = token(f"ops{tag}", roles=["admin"], rooms=[f"desk{tag}:*"])
    async with (
        admin_client(shared_server.grpc_port, scoped) as admin,
        admin_client(shared_server.grpc_port) as root,
    ):
        posted = await admin.Publish(admin_pb2.PublishRequest(room=mine, text="halted"))
        assert posted.message.room == mine
        theirs = await root.Publish(admin_pb2.PublishRequest(room=other, text="hello"))
        mid = theirs.message.id

        refused = [
            admin.Publish(admin_pb2.PublishRequest(room=other, text="nope")),
            admin.Broadcast(admin_pb2.BroadcastRequest(rooms=[mine, other], text="nope")),
            admin.GetHistory(admin_pb2.GetHistoryRequest(room=other)),
            admin.DeleteMessage(admin_pb2.DeleteMessageRequest(room=other, message_id=mid)),
            admin.GetRoom(admin_pb2.GetRoomRequest(room=other)),
            admin.Presence(admin_pb2.PresenceRequest(room=other)),
            admin.KickFromRoom(admin_pb2.KickFromRoomRequest(room=other, user_id="bob")),
            admin.MuteUser(admin_pb2.MuteUserRequest(room=other, user_id="bob")),
            admin.UnmuteUser(admin_pb2.UnmuteUserRequest(room=other, user_id="bob")),
            # User-wide actions reach every room: not for a token limited to some.
            admin.DisconnectUser(admin_pb2.DisconnectUserRequest(user_id="bob")),
            admin.BanUser(admin_pb2.BanUserRequest(user_id="bob")),
            admin.UnbanUser(admin_pb2.UnbanUserRequest(user_id="bob")),
        ]
        for call in refused:
            await rpc_error(call, DENIED)

        # Nothing of the refused broadcast was posted, and the message was not deleted.
        history = await root.GetHistory(admin_pb2.GetHistoryRequest(room=mine))
        assert [m.text for m in history.messages] == ["halted"]
        kept = await root.GetHistory(admin_pb2.GetHistoryRequest(room=other))
        assert [(m.id, m.deleted) for m in kept.messages] == [(mid, False)]

        # Inside its rooms the scoped token works, and ListRooms shows only those.
        await admin.MuteUser(admin_pb2.MuteUserRequest(room=mine, user_id="bob"))
        await admin.UnmuteUser(admin_pb2.UnmuteUserRequest(room=mine, user_id="bob"))
        await admin.GetHistory(admin_pb2.GetHistoryRequest(room=mine))
        listed = await admin.ListRooms(admin_pb2.ListRoomsRequest(page_size=500))
        names = {r.name for r in listed.rooms}
        assert mine in names and other not in names
        assert all(n.startswith(f"desk{tag}:") for n in names), names
        everything = await root.ListRooms(admin_pb2.ListRoomsRequest(page_size=500))
        assert {mine, other} <= {r.name for r in everything.rooms}
