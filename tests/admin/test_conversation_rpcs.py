"""The conversation RPCs of the admin API (issue 24) against a real server: an internal
service creates a members-only room and manages it; members see the changes live."""

from __future__ import annotations

import grpc
import pytest

from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import Admin, admin_client, error_code, rpc_error, unique
from tests.support.clients import ClientPool
from tests.support.servers import ServerProcess
from tests.support.tokens import token

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_an_internal_service_creates_and_manages_a_club_room(
    admin: Admin, clients: ClientPool, shared_server: ServerProcess
) -> None:
    owner, bob, carol = unique("owner"), unique("bob"), unique("carol")
    b = await clients.connect(shared_server.url, token(bob))
    c = await clients.connect(shared_server.url, token(carol))
    created = await admin.CreateRoom(
        admin_pb2.CreateRoomRequest(owner_id=owner, title="Club", member_ids=[bob])
    )
    room = created.room
    assert room.startswith("priv:") and created.kind == "private" and created.title == "Club"
    assert created.members == 2 and created.created_by == owner
    assert (await b.next("member_added"))["room"] == room

    added = await admin.AddMember(admin_pb2.AddMemberRequest(room=room, user_id=carol, role="moderator"))
    assert added.member.user_id == carol and added.member.role == "moderator"
    assert (await c.next("member_added")) == {"room": room, "user": carol, "by": "admin", "role": "member"}
    assert (await c.next("role_changed"))["role"] == "moderator"
    await c.ok("join", {"room": room})  # a member now

    changed = await admin.SetRole(admin_pb2.SetRoleRequest(room=room, user_id=bob, role="owner"))
    assert changed.member.role == "owner"
    listed = await admin.ListMembers(admin_pb2.ListMembersRequest(room=room, page_size=2))
    assert len(listed.members) == 2 and listed.next_page_token
    rest = await admin.ListMembers(admin_pb2.ListMembersRequest(room=room, page_token=listed.next_page_token))
    members = {m.user_id: m.role for m in [*listed.members, *rest.members]}
    assert members == {owner: "owner", bob: "owner", carol: "moderator"}
    assert not rest.next_page_token

    user_rooms = await admin.ListUserRooms(admin_pb2.ListUserRoomsRequest(user_id=carol))
    assert [(r.room, r.kind, r.role) for r in user_rooms.rooms] == [(room, "private", "moderator")]

    await admin.RemoveMember(admin_pb2.RemoveMemberRequest(room=room, user_id=carol))
    assert (await c.next("kicked"))["room"] == room
    assert await c.error("history", {"room": room}) == "forbidden"
    assert (await admin.ListUserRooms(admin_pb2.ListUserRoomsRequest(user_id=carol))).rooms == []

    # The last owner stays until it hands over.
    await admin.RemoveMember(admin_pb2.RemoveMemberRequest(room=room, user_id=owner))
    error = await rpc_error(
        admin.RemoveMember(admin_pb2.RemoveMemberRequest(room=room, user_id=bob)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error_code(error) == "last_owner"


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("CreateRoom", admin_pb2.CreateRoomRequest(owner_id="", title="x")),
        ("CreateRoom", admin_pb2.CreateRoomRequest(owner_id="o", title="")),
        ("CreateRoom", admin_pb2.CreateRoomRequest(owner_id="o", title="x" * 101)),
        ("CreateRoom", admin_pb2.CreateRoomRequest(owner_id="o", title="x", member_ids=[""])),
        ("AddMember", admin_pb2.AddMemberRequest(room="bad room", user_id="u")),
        ("AddMember", admin_pb2.AddMemberRequest(room="lobby", user_id="u")),
        ("AddMember", admin_pb2.AddMemberRequest(room="priv:x", user_id="u", role="king")),
        ("SetRole", admin_pb2.SetRoleRequest(room="priv:x", user_id="u", role="")),
        ("ListMembers", admin_pb2.ListMembersRequest(room="priv:x", page_size=501)),
        ("ListUserRooms", admin_pb2.ListUserRoomsRequest(user_id="")),
    ],
)
async def test_bad_arguments_are_invalid_argument(admin: Admin, method: str, request_: object) -> None:
    error = await rpc_error(getattr(admin, method)(request_), INVALID)
    assert error_code(error) == "invalid_payload"


async def test_unknown_rooms_are_not_found_and_bounds_are_resource_exhausted(
    admin: Admin, shared_server: ServerProcess
) -> None:
    ghost = "priv:" + "0" * 32
    for call in (
        admin.AddMember(admin_pb2.AddMemberRequest(room=ghost, user_id="u")),
        admin.ListMembers(admin_pb2.ListMembersRequest(room=ghost)),
        admin.ListMembers(admin_pb2.ListMembersRequest(room="lobby")),
    ):
        await rpc_error(call, grpc.StatusCode.NOT_FOUND)
    too_many = [unique("m") for _ in range(1000)]
    error = await rpc_error(
        admin.CreateRoom(admin_pb2.CreateRoomRequest(owner_id="o", title="big", member_ids=too_many)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert error_code(error) == "room_full"


async def test_a_room_scoped_admin_token_cannot_create_rooms(shared_server: ServerProcess) -> None:
    scoped = token(unique("ops"), roles=["admin"], rooms=["desk:*"])
    async with admin_client(shared_server.grpc_port, scoped) as admin:
        await rpc_error(
            admin.CreateRoom(admin_pb2.CreateRoomRequest(owner_id="o", title="x")),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        await rpc_error(
            admin.ListUserRooms(admin_pb2.ListUserRoomsRequest(user_id="o")),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        await rpc_error(
            admin.AddMember(admin_pb2.AddMemberRequest(room="priv:" + "1" * 32, user_id="u")),
            grpc.StatusCode.PERMISSION_DENIED,
        )
