"""Private and direct rooms end to end (issue 24): real ``chatsvc serve`` processes,
python-socketio clients over both transports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.clients import TRANSPORTS, ChatClient, ClientPool, assert_error_ack, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("conversations"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """3 members per room, 3 private/direct rooms per user, 2 new DMs a minute."""
    with running_server(
        tmp_path_factory.mktemp("bounded"),
        name="bounded",
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
        CHATSVC_MAX_MEMBERS_PER_ROOM="3",
        CHATSVC_MAX_ROOMS_PER_USER="3",
        CHATSVC_MAX_DMS_PER_MINUTE="2",
    ) as running:
        yield running


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def connect(
    clients: ClientPool, server: ServerProcess, sub: str, transport: str = "websocket"
) -> ChatClient:
    return await clients.connect(server.url, token(sub), transport=transport)


async def test_create_room_makes_an_unguessable_private_room_owned_by_its_creator(
    clients: ClientPool, server: ServerProcess
) -> None:
    alice, bob = user("alice"), user("bob")
    a = await connect(clients, server, alice)
    b = await connect(clients, server, bob)
    ack = await a.ok("create_room", {"kind": "private", "title": "Club", "members": [bob]})
    room = ack["room"]
    assert room.startswith("priv:") and len(room) >= 5 + 32
    assert ack == {
        "ok": True,
        "room": room,
        "kind": "private",
        "title": "Club",
        "role": "owner",
        "members": 2,
    }
    # bob never joined: the announcement reaches every socket of his anyway.
    added = await b.next("member_added", where=lambda e: e["room"] == room)
    assert added == {"room": room, "user": bob, "by": alice, "role": "member"}
    other = await a.ok("create_room", {"title": "Club"})
    assert other["room"] != room
    members = await b.ok("members", {"room": room})
    assert members["members"] == sorted(
        [{"user": alice, "role": "owner"}, {"user": bob, "role": "member"}], key=lambda m: m["user"]
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"kind": "public", "title": "x"},
        {"kind": "direct", "title": "x"},
        {"title": ""},
        {"title": "x" * 101},
        {"title": 5},
        {"title": "x", "members": "bob"},
        {"title": "x", "members": [5]},
        {"title": "x", "members": ["x" * 129]},
        {"title": "\ud800"},
    ],
)
async def test_create_room_refuses_bad_payloads(
    clients: ClientPool, server: ServerProcess, payload: dict[str, Any]
) -> None:
    a = await connect(clients, server, user("alice"))
    assert await a.error("create_room", payload) == "invalid_payload"


async def test_open_dm_is_one_room_per_pair_whoever_opens_it(
    clients: ClientPool, server: ServerProcess
) -> None:
    alice, bob = user("alice"), user("bob")
    a = await connect(clients, server, alice)
    b = await connect(clients, server, bob)
    first = await a.ok("open_dm", {"user": bob})
    room = first["room"]
    assert room.startswith("dm:")
    assert first == {"ok": True, "room": room, "kind": "direct", "title": bob, "role": "member", "members": 2}
    await b.next("member_added", where=lambda e: e["room"] == room)
    again = await a.ok("open_dm", {"user": bob})
    theirs = await b.ok("open_dm", {"user": alice})
    assert again["room"] == room and theirs["room"] == room
    assert theirs["title"] == alice
    # Concurrent opens by both sides of a new pair agree too.
    carol, dave = user("carol"), user("dave")
    c = await connect(clients, server, carol)
    d = await connect(clients, server, dave)
    acks = await asyncio.gather(c.ok("open_dm", {"user": dave}), d.ok("open_dm", {"user": carol}))
    assert acks[0]["room"] == acks[1]["room"]
    assert await a.error("open_dm", {"user": alice}) == "invalid_payload"
    assert await a.error("open_dm", {"user": ""}) == "invalid_payload"
    assert await a.error("open_dm", {}) == "invalid_payload"
    # A DM has exactly its two users.
    assert await a.error("add_member", {"room": room, "user": carol}) == "forbidden"
    assert await a.error("remove_member", {"room": room, "user": bob}) == "forbidden"


async def _private_room(owner: ChatClient, *members: str) -> str:
    ack = await owner.ok("create_room", {"title": "Room", "members": list(members)})
    return str(ack["room"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_non_member_is_forbidden_every_event_and_learns_nothing(
    clients: ClientPool, server: ServerProcess, transport: str
) -> None:
    alice, bob, mallory = user("alice"), user("bob"), user("mallory")
    a = await connect(clients, server, alice)
    m = await connect(clients, server, mallory, transport)
    room = await _private_room(a, bob)
    dm = (await a.ok("open_dm", {"user": bob}))["room"]
    await a.ok("join", {"room": room})
    sent = await a.ok("message", {"room": room, "text": "secret"})
    message_id = sent["message"]["id"]
    never = "priv:" + uuid.uuid4().hex  # a room that does not exist looks the same
    refusals: dict[str, str] = {}
    for target in (room, dm, never):
        for event, extra in (
            ("join", {}),
            ("leave", {}),
            ("message", {"text": "hi"}),
            ("typing", {"typing": True}),
            ("history", {}),
            ("read", {"message_id": message_id}),
            ("edit", {"id": message_id, "text": "pwned"}),
            ("delete", {"id": message_id}),
            ("members", {}),
            ("add_member", {"user": mallory}),
            ("remove_member", {"user": bob}),
            ("set_role", {"user": mallory, "role": "owner"}),
        ):
            ack = await m.call(event, {"room": target, **extra})
            assert_error_ack(ack, "forbidden")
            refusals.setdefault(event, ack["error"]["message"])
            assert ack["error"]["message"] == refusals[event], (event, target, ack)
            assert "secret" not in str(ack)
    # Nothing reached mallory's socket, and the room is unchanged.
    history = await a.ok("history", {"room": room})
    assert [msg["text"] for msg in history["messages"]] == ["secret"]
    assert m.pending("message") == [] and m.pending("typing") == []
    members = await a.ok("members", {"room": room})
    assert mallory not in {x["user"] for x in members["members"]}


async def test_token_rooms_claim_does_not_hide_a_room_the_user_is_a_member_of(
    clients: ClientPool, server: ServerProcess
) -> None:
    alice, bob = user("alice"), user("bob")
    a = await connect(clients, server, alice)
    b = await clients.connect(server.url, token(bob, rooms=["stock:*"]))
    room = await _private_room(a, bob)
    await b.ok("join", {"room": room})
    assert await b.error("join", {"room": "lobby"}) == "forbidden"
    # A refreshed token with the same claim keeps the private room (it is not the claim's).
    await b.ok("refresh", {"token": token(bob, rooms=["stock:*"])})
    await a.ok("message", {"room": room, "text": "still in"})
    assert (await b.next("message"))["text"] == "still in"
    assert b.pending("kicked") == []


async def test_roles_owners_and_moderators_manage_members(clients: ClientPool, server: ServerProcess) -> None:
    owner, mod, member, newcomer = user("owner"), user("mod"), user("member"), user("new")
    o = await connect(clients, server, owner)
    md = await connect(clients, server, mod)
    mb = await connect(clients, server, member)
    room = await _private_room(o, mod, member)
    # A member manages nothing.
    assert await mb.error("add_member", {"room": room, "user": newcomer}) == "forbidden"
    assert await mb.error("set_role", {"room": room, "user": member, "role": "moderator"}) == "forbidden"
    assert await mb.error("remove_member", {"room": room, "user": mod}) == "forbidden"
    # Only an owner grants moderator.
    assert await md.error("set_role", {"room": room, "user": mod, "role": "moderator"}) == "forbidden"
    changed = await o.ok("set_role", {"room": room, "user": mod, "role": "moderator"})
    assert changed["role"] == "moderator"
    event = await md.next("role_changed", where=lambda e: e["room"] == room)
    assert event == {"room": room, "user": mod, "by": owner, "role": "moderator"}
    # A moderator adds and removes members, but not owners or moderators.
    await md.ok("add_member", {"room": room, "user": newcomer})
    assert (await md.ok("add_member", {"room": room, "user": newcomer}))["role"] == "member"  # idempotent
    assert await md.error("remove_member", {"room": room, "user": owner}) == "forbidden"
    assert await md.error("set_role", {"room": room, "user": newcomer, "role": "owner"}) == "forbidden"
    await md.ok("remove_member", {"room": room, "user": newcomer})
    # Bad roles and non-members.
    assert await o.error("set_role", {"room": room, "user": member, "role": "king"}) == "invalid_payload"
    assert await o.error("set_role", {"room": room, "user": newcomer, "role": "member"}) == "not_found"
    # The last owner cannot leave or step down without handing over.
    assert await o.error("remove_member", {"room": room, "user": owner}) == "last_owner"
    assert await o.error("set_role", {"room": room, "user": owner, "role": "member"}) == "last_owner"
    await o.ok("set_role", {"room": room, "user": member, "role": "owner"})
    await o.ok("remove_member", {"room": room, "user": owner})
    assert await o.error("join", {"room": room}) == "forbidden"
    # Anyone may remove itself.
    await md.ok("remove_member", {"room": room, "user": mod})
    members = await mb.ok("members", {"room": room})
    assert members["members"] == [{"user": member, "role": "owner"}]
    assert await o.error("add_member", {"room": "lobby", "user": mod}) == "invalid_payload"


async def test_a_removed_member_stops_receiving_at_once(clients: ClientPool, server: ServerProcess) -> None:
    owner, bob = user("owner"), user("bob")
    o = await connect(clients, server, owner)
    b = await connect(clients, server, bob)
    room = await _private_room(o, bob)
    await o.ok("join", {"room": room})
    await b.ok("join", {"room": room})
    await o.ok("message", {"room": room, "text": "before"})
    assert (await b.next("message", where=lambda m: m["room"] == room))["text"] == "before"
    await o.ok("remove_member", {"room": room, "user": bob})
    removed = await b.next("member_removed", where=lambda e: e["room"] == room)
    assert removed == {"room": room, "user": bob, "by": owner}
    kicked = await b.next("kicked", where=lambda e: e["room"] == room)
    assert kicked["reason"] == "removed from the room"
    await o.ok("message", {"room": room, "text": "after"})
    assert await b.error("message", {"room": room, "text": "still here?"}) == "forbidden"
    assert await b.error("history", {"room": room}) == "forbidden"
    await asyncio.sleep(0.5)
    assert [m for m in b.pending("message") if m["room"] == room] == []


async def test_room_moderators_delete_others_messages(clients: ClientPool, server: ServerProcess) -> None:
    owner, mod, member = user("owner"), user("mod"), user("member")
    o = await connect(clients, server, owner)
    md = await connect(clients, server, mod)
    mb = await connect(clients, server, member)
    room = await _private_room(o, mod, member)
    await o.ok("set_role", {"room": room, "user": mod, "role": "moderator"})
    for c in (o, md, mb):
        await c.ok("join", {"room": room})
    first = (await o.ok("message", {"room": room, "text": "one"}))["message"]["id"]
    second = (await md.ok("message", {"room": room, "text": "two"}))["message"]["id"]
    assert await mb.error("delete", {"room": room, "id": first}) == "forbidden"
    await md.ok("delete", {"room": room, "id": first})
    await o.ok("delete", {"room": room, "id": second})
    # Moderators delete, they do not edit others' words.
    third = (await mb.ok("message", {"room": room, "text": "three"}))["message"]["id"]
    assert await md.error("edit", {"room": room, "id": third, "text": "x"}) == "forbidden"
    deleted = await mb.next("message_deleted", where=lambda e: e["id"] == first)
    assert deleted["deleted_by"] == mod


async def test_bounds_each_have_a_code(clients: ClientPool, bounded: ServerProcess) -> None:
    alice, bob, carol, dave = (user(n) for n in ("alice", "bob", "carol", "dave"))
    a = await connect(clients, bounded, alice)
    assert await a.error("create_room", {"title": "big", "members": [bob, carol, dave]}) == "room_full"
    room = (await a.ok("create_room", {"title": "ok", "members": [bob, carol]}))["room"]
    assert await a.error("add_member", {"room": room, "user": dave}) == "room_full"
    await a.ok("open_dm", {"user": dave})
    await a.ok("open_dm", {"user": user("erin")})
    # alice is now in 3 private/direct rooms: a fourth is refused, for her and for others.
    assert await a.error("create_room", {"title": "fourth"}) == "user_room_limit"
    b = await connect(clients, bounded, bob)
    assert await b.error("open_dm", {"user": alice}) == "user_room_limit"
    # 2 new DMs a minute (opening an existing one again is free).
    f = await connect(clients, bounded, user("fred"))
    x = user("x")
    await f.ok("open_dm", {"user": x})
    await f.ok("open_dm", {"user": user("y")})
    assert await f.error("open_dm", {"user": user("z")}) == "dm_rate_limited"
    await f.ok("open_dm", {"user": x})
