"""Every AdminService RPC against a running server (one replica), with real socket clients."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
from google.protobuf import duration_pb2

from chatsvc import __version__
from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import Admin, error_code, rpc_error, unique, until
from tests.support.clients import ClientPool, assert_error_ack
from tests.support.servers import ServerProcess
from tests.support.tokens import token

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


async def _member(clients: ClientPool, server: ServerProcess, user: str, room: str):  # type: ignore[no-untyped-def]
    client = await clients.connect(server.url, token(user))
    await client.ok("join", {"room": room})
    return client


# -- Publish / Broadcast ---------------------------------------------------------------------


async def test_publish_stores_and_delivers_a_system_message(
    admin: Admin, clients: ClientPool, shared_server: ServerProcess
) -> None:
    room = unique()
    alice = await _member(clients, shared_server, "alice", room)
    reply = await admin.Publish(admin_pb2.PublishRequest(room=room, text="AAPL +5%"))
    m = reply.message
    assert not reply.duplicate
    assert (m.room, m.text, m.kind, m.user.id, m.user.name) == (
        room,
        "AAPL +5%",
        "system",
        "system",
        "System",
    )
    assert m.created_at.seconds > 0 and not m.HasField("edited_at")
    live = await alice.next("message")
    assert (
        live["id"] == m.id and live["kind"] == "system" and live["user"] == {"id": "system", "name": "System"}
    )
    history = await admin.GetHistory(admin_pb2.GetHistoryRequest(room=room))
    assert [h.id for h in history.messages] == [m.id]


async def test_publish_with_a_sender_and_an_idempotency_key(admin: Admin) -> None:
    room = unique()
    request = admin_pb2.PublishRequest(
        room=room, text="halted", sender=admin_pb2.User(id="stock-alerts", name="Alerts"), client_msg_id="k1"
    )
    first = await admin.Publish(request)
    again = await admin.Publish(request)
    assert (first.message.user.id, first.message.user.name, first.message.client_msg_id) == (
        "stock-alerts",
        "Alerts",
        "k1",
    )
    assert again.duplicate and again.message.id == first.message.id
    history = await admin.GetHistory(admin_pb2.GetHistoryRequest(room=room))
    assert len(history.messages) == 1


async def test_publish_rejects_bad_arguments_naming_the_field(admin: Admin) -> None:
    room = unique()
    cases = [
        (admin_pb2.PublishRequest(room="", text="x"), "'room'"),
        (admin_pb2.PublishRequest(room="has space", text="x"), "'room'"),
        (admin_pb2.PublishRequest(room=room, text="  "), "'text'"),
        (admin_pb2.PublishRequest(room=room, text="x" * 5000), "'text'"),
        (admin_pb2.PublishRequest(room=room, text="x", client_msg_id="k" * 65), "'client_msg_id'"),
        (
            admin_pb2.PublishRequest(room=room, text="x", sender=admin_pb2.User(name="n" * 65)),
            "'sender.name'",
        ),
    ]
    for request, field in cases:
        error = await rpc_error(admin.Publish(request), INVALID, mentions=field)
        assert error_code(error) in {"invalid_payload", "too_large"}


async def test_broadcast_posts_into_every_room(
    admin: Admin, clients: ClientPool, shared_server: ServerProcess
) -> None:
    rooms = [unique(), unique()]
    members = [await _member(clients, shared_server, "bob", r) for r in rooms]
    reply = await admin.Broadcast(admin_pb2.BroadcastRequest(rooms=rooms, text="market closes in 5 min"))
    assert [m.room for m in reply.messages] == rooms
    for member, message in zip(members, reply.messages, strict=True):
        assert (await member.next("message"))["id"] == message.id
    for bad, field in (([], "'rooms'"), ([rooms[0], rooms[0]], "'rooms'"), (["ok", "b a d"], "'rooms'")):
        await rpc_error(
            admin.Broadcast(admin_pb2.BroadcastRequest(rooms=bad, text="x")), INVALID, mentions=field
        )
    too_many = [f"r{i}" for i in range(101)]
    await rpc_error(admin.Broadcast(admin_pb2.BroadcastRequest(rooms=too_many, text="x")), INVALID)


# -- rooms, presence, history ----------------------------------------------------------------


async def _all_rooms(admin: Admin, *, online_only: bool = False) -> list[admin_pb2.Room]:
    rooms: list[admin_pb2.Room] = []
    page_token = ""
    for _ in range(1000):
        page = await admin.ListRooms(
            admin_pb2.ListRoomsRequest(page_size=2, page_token=page_token, online_only=online_only)
        )
        assert len(page.rooms) <= 2
        rooms.extend(page.rooms)
        page_token = page.next_page_token
        if not page_token:
            return rooms
    raise AssertionError("paging did not end")


async def test_list_rooms_pages_through_stored_and_online_rooms(
    admin: Admin, clients: ClientPool, shared_server: ServerProcess
) -> None:
    prefix = unique("L")
    for name in (f"{prefix}a", f"{prefix}b"):
        await admin.Publish(admin_pb2.PublishRequest(room=name, text="hi"))
    await _member(clients, shared_server, "carol", f"{prefix}c")  # online, no history
    await _member(clients, shared_server, "dave", f"{prefix}a")

    listed = await _all_rooms(admin)
    names = [r.name for r in listed]
    assert names == sorted(set(names)), "in name order, no repeats across pages"
    mine = {r.name: r for r in listed if r.name.startswith(prefix)}
    assert sorted(mine) == [f"{prefix}a", f"{prefix}b", f"{prefix}c"]
    assert mine[f"{prefix}a"].online == 1 and mine[f"{prefix}a"].last_message_id
    assert mine[f"{prefix}b"].online == 0 and mine[f"{prefix}b"].HasField("created_at")
    assert mine[f"{prefix}c"].online == 1 and not mine[f"{prefix}c"].HasField("created_at")

    online = [r.name for r in await _all_rooms(admin, online_only=True) if r.name.startswith(prefix)]
    assert online == [f"{prefix}a", f"{prefix}c"]

    await rpc_error(
        admin.ListRooms(admin_pb2.ListRoomsRequest(page_size=-1)), INVALID, mentions="'page_size'"
    )
    await rpc_error(
        admin.ListRooms(admin_pb2.ListRoomsRequest(page_size=501)), INVALID, mentions="'page_size'"
    )
    await rpc_error(
        admin.ListRooms(admin_pb2.ListRoomsRequest(page_token="b a d")), INVALID, mentions="'page_token'"
    )


async def test_get_room(admin: Admin, clients: ClientPool, shared_server: ServerProcess) -> None:
    room = unique()
    published = await admin.Publish(admin_pb2.PublishRequest(room=room, text="hi"))
    await _member(clients, shared_server, "erin", room)
    got = await admin.GetRoom(admin_pb2.GetRoomRequest(room=room))
    assert (got.name, got.online, got.last_message_id) == (room, 1, published.message.id)
    error = await rpc_error(admin.GetRoom(admin_pb2.GetRoomRequest(room=unique())), NOT_FOUND)
    assert error_code(error) == "not_found"
    await rpc_error(admin.GetRoom(admin_pb2.GetRoomRequest(room="")), INVALID, mentions="'room'")


async def test_presence_lists_who_is_online(
    admin: Admin, clients: ClientPool, shared_server: ServerProcess
) -> None:
    room = unique()
    await _member(clients, shared_server, "frank", room)
    bob = await _member(clients, shared_server, "bob", room)
    await _member(clients, shared_server, "bob", room)  # a second socket: still one user
    reply = await admin.Presence(admin_pb2.PresenceRequest(room=room))
    assert reply.online == 2
    assert [(u.id, u.name) for u in reply.users] == [("bob", "Bob"), ("frank", "Frank")]
    await bob.disconnect()
    await admin.Publish(admin_pb2.PublishRequest(room=room, text="history keeps the room known"))

    async def one_bob_left() -> bool:
        users = (await admin.Presence(admin_pb2.PresenceRequest(room=room))).users
        return [u.id for u in users] == ["bob", "frank"]

    await until(one_bob_left, what="bob still online through his other socket")
    await rpc_error(admin.Presence(admin_pb2.PresenceRequest(room=unique())), NOT_FOUND)
    await rpc_error(admin.Presence(admin_pb2.PresenceRequest(room="#")), INVALID, mentions="'room'")


async def test_get_history_pages_newest_first(admin: Admin) -> None:
    room = unique()
    ids = [
        (await admin.Publish(admin_pb2.PublishRequest(room=room, text=f"m{i}"))).message.id for i in range(3)
    ]
    first = await admin.GetHistory(admin_pb2.GetHistoryRequest(room=room, page_size=2))
    assert [m.id for m in first.messages] == [ids[2], ids[1]] and first.next_page_token
    second = await admin.GetHistory(
        admin_pb2.GetHistoryRequest(room=room, page_size=2, page_token=first.next_page_token)
    )
    assert [m.id for m in second.messages] == [ids[0]] and not second.next_page_token
    await rpc_error(
        admin.GetHistory(admin_pb2.GetHistoryRequest(room=room, page_size=101)),
        INVALID,
        mentions="'page_size'",
    )
    await rpc_error(
        admin.GetHistory(admin_pb2.GetHistoryRequest(room=room, page_token="nope")),
        INVALID,
        mentions="'page_token'",
    )
    await rpc_error(admin.GetHistory(admin_pb2.GetHistoryRequest(room=unique())), NOT_FOUND)


async def test_delete_message(admin: Admin, clients: ClientPool, shared_server: ServerProcess) -> None:
    room = unique()
    alice = await _member(clients, shared_server, "alice", room)
    message = (await admin.Publish(admin_pb2.PublishRequest(room=room, text="oops"))).message
    reply = await admin.DeleteMessage(admin_pb2.DeleteMessageRequest(room=room, message_id=message.id))
    assert reply.message.deleted and reply.message.text == ""
    deleted = await alice.next("message_deleted")
    assert deleted.pop("event_id") > message.id  # the room event log's id, additive
    assert deleted.pop("pos").endswith(":2")  # the delete's own stream position (the message's is 1)
    assert deleted == {"id": message.id, "room": room, "deleted_by": "admin"}
    history = await admin.GetHistory(admin_pb2.GetHistoryRequest(room=room))
    assert history.messages[0].deleted

    missing = "0" * 26
    await rpc_error(
        admin.DeleteMessage(admin_pb2.DeleteMessageRequest(room=room, message_id=missing)), NOT_FOUND
    )
    await rpc_error(
        admin.DeleteMessage(admin_pb2.DeleteMessageRequest(room=unique(), message_id=message.id)), NOT_FOUND
    )
    await rpc_error(
        admin.DeleteMessage(admin_pb2.DeleteMessageRequest(room=room, message_id="x")),
        INVALID,
        mentions="'message_id'",
    )


# -- moderation ------------------------------------------------------------------------------


async def test_disconnect_user_ends_every_socket_with_the_reason(
    admin: Admin, clients: ClientPool, shared_server: ServerProcess
) -> None:
    user, room = unique("u"), unique()
    sockets = [await _member(clients, shared_server, user, room) for _ in range(2)]
    bystander = await _member(clients, shared_server, "grace", room)
    reply = await admin.DisconnectUser(admin_pb2.DisconnectUserRequest(user_id=user, reason="account review"))
    assert (reply.reach.sockets, reply.reach.replicas, list(reply.reach.unanswered_replicas)) == (2, 1, [])
    for socket in sockets:
        end = await socket.next("session_end")
        assert end == {"code": "disconnected", "message": "account review", "reconnect": False}
        await until(lambda s=socket: _set(s.disconnected), what="socket closed")
    assert bystander.sio.connected
    default = await admin.DisconnectUser(admin_pb2.DisconnectUserRequest(user_id=unique("u")))
    assert default.reach.sockets == 0
    await rpc_error(
        admin.DisconnectUser(admin_pb2.DisconnectUserRequest(user_id="")), INVALID, mentions="'user_id'"
    )
    await rpc_error(
        admin.DisconnectUser(admin_pb2.DisconnectUserRequest(user_id="u", reason="r" * 300)),
        INVALID,
        mentions="'reason'",
    )


async def _set(event: object) -> bool:
    return bool(event.is_set())  # type: ignore[attr-defined]


async def test_kick_from_room(admin: Admin, clients: ClientPool, shared_server: ServerProcess) -> None:
    user, room = unique("u"), unique()
    kicked = await _member(clients, shared_server, user, room)
    other = await _member(clients, shared_server, "heidi", room)
    reply = await admin.KickFromRoom(
        admin_pb2.KickFromRoomRequest(room=room, user_id=user, reason="off topic")
    )
    assert reply.reach.sockets == 1
    assert await kicked.next("kicked") == {"room": room, "reason": "off topic"}
    leave = await other.next("presence", where=lambda p: p["action"] == "leave")
    assert leave["user"]["id"] == user and leave["online"] == 1
    presence = await admin.Presence(admin_pb2.PresenceRequest(room=room))
    assert [u.id for u in presence.users] == ["heidi"]
    assert await kicked.error("message", {"room": room, "text": "still here?"}) == "not_in_room"
    await kicked.ok("join", {"room": room})  # a kick is not a ban
    await rpc_error(
        admin.KickFromRoom(admin_pb2.KickFromRoomRequest(room="", user_id=user)), INVALID, mentions="'room'"
    )


async def test_mute_refuses_messages_in_that_room_until_unmuted(
    admin: Admin, clients: ClientPool, shared_server: ServerProcess
) -> None:
    user, room, elsewhere = unique("u"), unique(), unique()
    client = await _member(clients, shared_server, user, room)
    await client.ok("join", {"room": elsewhere})
    await client.ok("message", {"room": room, "text": "before"})
    reply = await admin.MuteUser(admin_pb2.MuteUserRequest(room=room, user_id=user, reason="spam"))
    assert (reply.mute.kind, reply.mute.room, reply.mute.user_id, reply.mute.reason) == (
        "mute",
        room,
        user,
        "spam",
    )
    assert not reply.mute.HasField("until")
    ack = await client.call("message", {"room": room, "text": "muted?"})
    assert_error_ack(ack, "forbidden")
    await client.ok("message", {"room": elsewhere, "text": "a mute is per room"})
    await admin.UnmuteUser(admin_pb2.UnmuteUserRequest(room=room, user_id=user))
    await client.ok("message", {"room": room, "text": "after"})


async def test_a_mute_with_a_duration_expires(
    admin: Admin, clients: ClientPool, shared_server: ServerProcess
) -> None:
    user, room = unique("u"), unique()
    client = await _member(clients, shared_server, user, room)
    reply = await admin.MuteUser(
        admin_pb2.MuteUserRequest(room=room, user_id=user, duration=duration_pb2.Duration(seconds=1))
    )
    assert reply.mute.HasField("until")
    assert await client.error("message", {"room": room, "text": "muted"}) == "forbidden"

    async def allowed() -> bool:
        ack = await client.call("message", {"room": room, "text": "free again"})
        return bool(ack.get("ok"))

    await until(allowed, what="the mute expires after its duration")
    bad = admin_pb2.MuteUserRequest(room=room, user_id=user, duration=duration_pb2.Duration(seconds=-5))
    await rpc_error(admin.MuteUser(bad), INVALID, mentions="'duration'")
    await rpc_error(admin.UnmuteUser(admin_pb2.UnmuteUserRequest(room=room)), INVALID, mentions="'user_id'")


async def test_ban_closes_sockets_and_refuses_connections_until_lifted(
    admin: Admin, clients: ClientPool, shared_server: ServerProcess
) -> None:
    user, room = unique("u"), unique()
    client = await _member(clients, shared_server, user, room)
    reply = await admin.BanUser(admin_pb2.BanUserRequest(user_id=user, reason="fraud"))
    assert (reply.ban.kind, reply.ban.room, reply.ban.user_id, reply.reach.sockets) == ("ban", "", user, 1)
    end = await client.next("session_end")
    assert end == {"code": "forbidden", "message": "you are banned: fraud", "reconnect": False}
    refused = await clients.refused(shared_server.url, token(user))
    assert refused["code"] == "forbidden"
    await admin.UnbanUser(admin_pb2.UnbanUserRequest(user_id=user))
    await clients.connect(shared_server.url, token(user))
    await rpc_error(admin.BanUser(admin_pb2.BanUserRequest(user_id="x" * 200)), INVALID, mentions="'user_id'")
    await rpc_error(admin.UnbanUser(admin_pb2.UnbanUserRequest()), INVALID, mentions="'user_id'")


# -- cluster info and backend failures -------------------------------------------------------


async def test_info(admin: Admin, clients: ClientPool, shared_server: ServerProcess) -> None:
    room = unique()
    await _member(clients, shared_server, "ivan", room)
    await _member(clients, shared_server, "judy", room)
    info = await admin.Info(admin_pb2.InfoRequest())
    assert info.version == __version__
    assert [r.id for r in info.replicas] == [info.replica_id]
    replica = info.replicas[0]
    assert replica.version == __version__ and replica.last_seen.seconds > 0
    assert info.connections == replica.connections >= 2
    assert info.rooms >= 1 and info.users >= 2 and replica.rooms >= 1


async def test_store_down_is_unavailable(admin: Admin, shared_server: ServerProcess) -> None:
    room = unique()
    await admin.Publish(admin_pb2.PublishRequest(room=room, text="before"))
    db = sqlite3.connect(
        Path(shared_server.env["CHATSVC_DATA_DIR"]) / "chatsvc.sqlite3", isolation_level=None
    )
    try:
        db.execute("BEGIN EXCLUSIVE")  # every write waits out the busy timeout, then fails
        error = await rpc_error(
            admin.Publish(admin_pb2.PublishRequest(room=room, text="during"), timeout=30),
            grpc.StatusCode.UNAVAILABLE,
        )
        assert error_code(error) == "store_unavailable"
    finally:
        db.rollback()
        db.close()
    await admin.Publish(admin_pb2.PublishRequest(room=room, text="after"))
