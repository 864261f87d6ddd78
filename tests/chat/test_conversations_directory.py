"""my_rooms and blocking end to end (issue 24): real server, python-socketio clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.support.clients import ChatClient, ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("directory"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
        CHATSVC_MAX_BLOCKS_PER_USER="2",
    ) as running:
        yield running


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def connect(clients: ClientPool, server: ServerProcess, sub: str) -> ChatClient:
    return await clients.connect(server.url, token(sub))


async def test_my_rooms_lists_newest_activity_first_with_unread_and_preview(
    clients: ClientPool, server: ServerProcess
) -> None:
    alice, bob = user("alice"), user("bob")
    a = await connect(clients, server, alice)
    b = await connect(clients, server, bob)
    club = (await a.ok("create_room", {"title": "Club", "members": [bob]}))["room"]
    dm = (await a.ok("open_dm", {"user": bob}))["room"]
    lobby = f"lobby-{uuid.uuid4().hex[:8]}"
    await a.ok("join", {"room": lobby})
    await b.ok("join", {"room": lobby})
    await b.ok("message", {"room": club, "text": "club 1"})
    await b.ok("message", {"room": lobby, "text": "lobby 1"})
    last_dm = (await b.ok("message", {"room": dm, "text": "dm 1"}))["message"]
    await b.ok("message", {"room": dm, "text": "dm 2"})
    last_dm = (await b.ok("message", {"room": dm, "text": "dm 3"}))["message"]

    listed = await a.ok("my_rooms", {})
    rooms = listed["rooms"]
    assert [r["room"] for r in rooms] == [dm, lobby, club]
    by_room = {r["room"]: r for r in rooms}
    assert by_room[dm] == {
        "room": dm,
        "kind": "direct",
        "title": bob,
        "role": "member",
        "members": 2,
        "unread": 3,
        "unread_mentions": 0,
        "last_message": last_dm,
    }
    assert by_room[club]["title"] == "Club" and by_room[club]["role"] == "owner"
    assert by_room[club]["unread"] == 1 and by_room[club]["last_message"]["text"] == "club 1"
    assert by_room[lobby]["kind"] == "public" and by_room[lobby]["title"] == lobby
    assert by_room[lobby]["role"] is None and by_room[lobby]["last_message"]["text"] == "lobby 1"
    assert listed["next_before"] is None
    await a.ok("read", {"room": dm, "message_id": last_dm["id"]})
    assert {r["room"]: r["unread"] for r in (await a.ok("my_rooms", {}))["rooms"]}[dm] == 0

    # Pages.
    first = await a.ok("my_rooms", {"limit": 2})
    assert [r["room"] for r in first["rooms"]] == [dm, lobby] and first["next_before"]
    rest = await a.ok("my_rooms", {"limit": 2, "before": first["next_before"]})
    assert [r["room"] for r in rest["rooms"]] == [club] and rest["next_before"] is None

    # Removing itself from a public room unlists it; a removed member's room goes too.
    await a.ok("remove_member", {"room": lobby, "user": alice})
    await b.ok("remove_member", {"room": club, "user": bob})
    assert [r["room"] for r in (await a.ok("my_rooms", {}))["rooms"]] == [dm, club]
    assert [r["room"] for r in (await b.ok("my_rooms", {}))["rooms"]] == [dm, lobby]
    for bad in ({"limit": 0}, {"limit": 101}, {"before": 5}, {"before": "x" * 101}):
        assert await a.error("my_rooms", bad) == "invalid_payload"


async def test_blocking_rules_and_what_it_hides(clients: ClientPool, server: ServerProcess) -> None:
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    a = await connect(clients, server, alice)
    b1 = await connect(clients, server, bob)
    b2 = await connect(clients, server, bob)  # bob's other socket, never joins
    c = await connect(clients, server, carol)
    lobby = f"lobby-{uuid.uuid4().hex[:8]}"
    for client in (a, b1, c):
        await client.ok("join", {"room": lobby})
    club = (await c.ok("create_room", {"title": "Club", "members": [alice, bob]}))["room"]
    before = (await a.ok("message", {"room": lobby, "text": "before the block"}))["message"]
    assert (await b1.next("message"))["id"] == before["id"]

    assert (await b1.ok("block", {"user": alice})) == {"ok": True, "user": alice}
    assert (await b2.ok("blocked", {})) == {"ok": True, "users": [alice]}
    # alice cannot open a DM with bob, nor add him anywhere.
    assert await a.error("open_dm", {"user": bob}) == "forbidden"
    mine = (await a.ok("create_room", {"title": "Mine"}))["room"]
    assert await a.error("add_member", {"room": mine, "user": bob}) == "forbidden"
    assert await a.error("create_room", {"title": "x", "members": [bob]}) == "forbidden"
    # bob may still open one with alice (he blocks her, not the other way round).
    dm = (await b1.ok("open_dm", {"user": alice}))["room"]

    # bob's sockets stop receiving alice in every room; everyone else still does.
    in_lobby = (await a.ok("message", {"room": lobby, "text": "hidden in lobby"}))["message"]
    in_club = (await a.ok("message", {"room": club, "text": "hidden in club"}))["message"]
    await a.ok("message", {"room": dm, "text": "hidden in dm"})
    await a.ok("typing", {"room": lobby, "typing": True})
    assert (await c.next("message", where=lambda m: m["id"] == in_lobby["id"]))["text"] == "hidden in lobby"
    assert (await c.next("message", where=lambda m: m["id"] == in_club["id"]))["text"] == "hidden in club"
    assert (await c.next("typing"))["user"]["id"] == alice
    from_carol = (await c.ok("message", {"room": lobby, "text": "carol still heard"}))["message"]
    assert (await b1.next("message", where=lambda m: m["id"] == from_carol["id"]))["id"] == from_carol["id"]
    await asyncio.sleep(0.5)
    for socket in (b1, b2):
        assert [m for m in socket.pending("message") if m["user"]["id"] == alice] == []
        assert [t for t in socket.pending("typing") if t["user"]["id"] == alice] == []
    # History and previews leave alice out for bob only.
    texts = [m["text"] for m in (await b1.ok("history", {"room": lobby}))["messages"]]
    assert "hidden in lobby" not in texts and "before the block" not in texts and "carol still heard" in texts
    assert "hidden in lobby" in [m["text"] for m in (await c.ok("history", {"room": lobby}))["messages"]]
    previews = {r["room"]: r["last_message"] for r in (await b1.ok("my_rooms", {}))["rooms"]}
    assert previews[dm] is None and previews[club] is None

    # Unblock: alice is heard again.
    await b2.ok("unblock", {"user": alice})
    assert (await b1.ok("blocked", {}))["users"] == []
    again = (await a.ok("message", {"room": lobby, "text": "heard again"}))["message"]
    assert (await b1.next("message", where=lambda m: m["id"] == again["id"]))["text"] == "heard again"
    await a.ok("open_dm", {"user": bob})

    # Bounds and bad payloads.
    assert await b1.error("block", {"user": bob}) == "invalid_payload"
    assert await b1.error("block", {}) == "invalid_payload"
    await b1.ok("block", {"user": user("x")})
    await b1.ok("block", {"user": user("y")})
    assert await b1.error("block", {"user": user("z")}) == "block_limit"
