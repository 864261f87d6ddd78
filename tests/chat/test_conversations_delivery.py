"""Delivery without join (issue 24): a private or direct room's events reach every socket
of every member, exactly once each, whether or not it joined. Real server, python-socketio."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.support.clients import TRANSPORTS, ChatClient, ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("delivery"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def connect(
    clients: ClientPool, server: ServerProcess, sub: str, transport: str = "websocket"
) -> ChatClient:
    return await clients.connect(server.url, token(sub), transport=transport)


async def quiet(*clients: ChatClient, event: str = "message", seconds: float = 0.5) -> None:
    """Nothing more of ``event`` arrives at any of ``clients`` for a while."""
    await asyncio.sleep(seconds)
    for client in clients:
        assert client.pending(event) == [], client.pending(event)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_dm_reaches_every_socket_of_both_users_once_joined_or_not(
    clients: ClientPool, server: ServerProcess, transport: str
) -> None:
    alice, bob, mallory = user("alice"), user("bob"), user("mallory")
    a1 = await connect(clients, server, alice)
    a2 = await connect(clients, server, alice, transport)
    b1 = await connect(clients, server, bob, transport)  # only connected
    b2 = await connect(clients, server, bob)  # also joins
    m = await connect(clients, server, mallory)
    room = (await a1.ok("open_dm", {"user": bob}))["room"]
    await b2.ok("join", {"room": room})

    sent = (await a1.ok("message", {"room": room, "text": "hello bob"}))["message"]
    for receiver in (a2, b1, b2):
        assert await receiver.next("message") == sent
    await quiet(a1, a2, b1, b2, m)  # each once; never back to the sender's socket, never to others

    await a1.ok("typing", {"room": room, "typing": True})
    for receiver in (a2, b1, b2):
        typing = await receiver.next("typing")
        assert typing["room"] == room and typing["user"]["id"] == alice
    await quiet(a1, a2, b1, b2, m, event="typing")

    edited = (await a1.ok("edit", {"room": room, "id": sent["id"], "text": "hi bob"}))["message"]
    for receiver in (a1, a2, b1, b2):
        assert (await receiver.next("message_edited"))["text"] == edited["text"]
    await a1.ok("delete", {"room": room, "id": sent["id"]})
    for receiver in (a1, a2, b1, b2):
        assert (await receiver.next("message_deleted"))["id"] == sent["id"]
    await quiet(a1, a2, b1, b2, m, event="message_edited")
    await quiet(m, event="message_deleted", seconds=0)

    # bob answers without ever joining.
    reply = (await b1.ok("message", {"room": room, "text": "hi alice"}))["message"]
    for receiver in (a1, a2, b2):
        assert await receiver.next("message") == reply
    await quiet(b1, m)


async def test_private_room_members_get_its_messages_and_removed_ones_stop(
    clients: ClientPool, server: ServerProcess
) -> None:
    owner, bob, carol = user("owner"), user("bob"), user("carol")
    o = await connect(clients, server, owner)
    b = await connect(clients, server, bob)
    c = await connect(clients, server, carol)
    room = (await o.ok("create_room", {"title": "Club", "members": [bob, carol]}))["room"]
    first = (await o.ok("message", {"room": room, "text": "one"}))["message"]
    assert await b.next("message") == first and await c.next("message") == first
    await o.ok("remove_member", {"room": room, "user": carol})
    await c.next("member_removed")
    second = (await o.ok("message", {"room": room, "text": "two"}))["message"]
    assert await b.next("message") == second
    await quiet(c)
    # Added later: from then on.
    await o.ok("add_member", {"room": room, "user": carol})
    third = (await o.ok("message", {"room": room, "text": "three"}))["message"]
    assert await c.next("message") == third


async def test_user_rooms_cannot_be_named_by_clients(clients: ClientPool, server: ServerProcess) -> None:
    bob = user("bob")
    m = await connect(clients, server, user("mallory"))
    assert await m.error("join", {"room": f"@u:{bob}"}) == "invalid_payload"
    assert await m.error("message", {"room": f"@u:{bob}", "text": "x"}) == "invalid_payload"


async def test_public_rooms_still_need_a_join(clients: ClientPool, server: ServerProcess) -> None:
    alice, bob = user("alice"), user("bob")
    a = await connect(clients, server, alice)
    b = await connect(clients, server, bob)
    room = f"lobby-{uuid.uuid4().hex[:8]}"
    await a.ok("join", {"room": room})
    await a.ok("message", {"room": room, "text": "public"})
    await quiet(b)
    assert await b.error("message", {"room": room, "text": "x"}) == "not_in_room"
