"""Mentions on a real server (issue 25 item 3, part), python-socketio clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.support.clients import ClientPool, running_server
from tests.support.replicas import FAST
from tests.support.servers import ServerProcess
from tests.support.tokens import token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("mentions"), CHATSVC_MAX_MENTIONS="3", **FAST) as running:
        yield running


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_mention_reaches_every_socket_of_a_user_that_never_joined(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = f"men-{uuid.uuid4().hex[:8]}"
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    a = await clients.connect(server.url, token(alice))
    b1 = await clients.connect(server.url, token(bob))  # connected only, never joins
    b2 = await clients.connect(server.url, token(bob))
    c = await clients.connect(server.url, token(carol))
    await a.ok("join", {"room": room})
    ack = await a.ok("message", {"room": room, "text": "look", "mentions": [bob, bob, alice]})
    assert ack["message"]["mentions"] == [bob], "deduplicated, the author dropped"
    for sock in (b1, b2):
        got = await sock.next("mention")
        assert got["room"] == room and got["message"]["id"] == ack["message"]["id"]
        assert got["message"]["mentions"] == [bob]
    await asyncio.sleep(0.3)
    assert c.pending("mention") == [] and a.pending("mention") == []
    assert b1.pending("message") == [], "a mention is not a subscription to the room"
    stored = (await a.ok("history", {"room": room}))["messages"][0]
    assert stored["mentions"] == [bob]
    plain = await a.ok("message", {"room": room, "text": "no one"})
    assert "mentions" not in plain["message"]
    await a.ok("message", {"room": room, "text": "again", "mentions": [bob]})
    await b1.ok("join", {"room": room})
    listed = {r["room"]: r for r in (await b1.ok("my_rooms", {}))["rooms"]}
    assert listed[room]["unread_mentions"] == 2 and listed[room]["unread"] == 3
    await b1.ok("read", {"room": room, "message_id": ack["message"]["id"]})
    listed = {r["room"]: r for r in (await b1.ok("my_rooms", {}))["rooms"]}
    assert listed[room]["unread_mentions"] == 1


async def test_mentions_of_non_members_of_a_private_room_are_dropped(
    server: ServerProcess, clients: ClientPool
) -> None:
    owner, member, outsider = user("own"), user("mem"), user("out")
    o = await clients.connect(server.url, token(owner))
    m = await clients.connect(server.url, token(member))
    x = await clients.connect(server.url, token(outsider))
    room = (await o.ok("create_room", {"title": "Desk", "members": [member]}))["room"]
    ack = await o.ok("message", {"room": room, "text": "both?", "mentions": [member, outsider]})
    assert ack["message"]["mentions"] == [member]
    assert (await m.next("mention"))["message"]["id"] == ack["message"]["id"]
    await asyncio.sleep(0.3)
    assert x.pending("mention") == [], "an outsider learns nothing of the room"


async def test_bad_mentions_are_refused_before_anything_is_stored(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = f"men-{uuid.uuid4().hex[:8]}"
    a = await clients.connect(server.url, token(user("alice")))
    await a.ok("join", {"room": room})
    for bad in ("bob", ["a", "b", "c", "d"], [5], [""], ["x" * 129], ["a\nb"], {"u": 1}):
        assert await a.error("message", {"room": room, "text": "x", "mentions": bad}) == "invalid_payload", (
            bad
        )
    assert (await a.ok("history", {"room": room}))["messages"] == []
