"""Edits and deletes keep issue 25's annotations consistent, on a real server with
python-socketio clients: mentions re-validated on edit (only the newly mentioned told),
``reply_to`` fixed, a deleted message's pins, reactions and mention counts gone, its
replies readable."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.clients import ChatClient, ClientPool, running_server
from tests.support.replicas import FAST
from tests.support.servers import ServerProcess
from tests.support.tokens import token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"CHATSVC_MAX_MENTIONS": "3", "CHATSVC_MAX_PINS": "1", **FAST}
    with running_server(tmp_path_factory.mktemp("edits"), **env) as running:
        yield running


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def unread_mentions(client: ChatClient, room: str) -> int:
    listed = {r["room"]: r for r in (await client.ok("my_rooms", {}))["rooms"]}
    return int(listed[room]["unread_mentions"])


async def test_an_edit_re_validates_mentions_and_tells_only_the_newly_mentioned(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = f"ed-{uuid.uuid4().hex[:8]}"
    alice, bob, carol, dave = user("alice"), user("bob"), user("carol"), user("dave")
    a = await clients.connect(server.url, token(alice))
    b = await clients.connect(server.url, token(bob))
    c = await clients.connect(server.url, token(carol))
    for sock in (a, b, c):
        await sock.ok("join", {"room": room})
    posted = (await a.ok("message", {"room": room, "text": "hi bob", "mentions": [bob]}))["message"]
    await b.next("mention")
    edit: dict[str, Any] = {"room": room, "id": posted["id"], "text": "hi bob and carol"}
    ack = await a.ok("edit", {**edit, "mentions": [bob, carol, alice]})
    assert ack["message"]["mentions"] == [bob, carol], "the author dropped"
    told = await c.next("mention")
    assert told["message"]["id"] == posted["id"] and told["message"]["text"] == "hi bob and carol"
    live = await b.next("message_edited", where=lambda m: m["id"] == posted["id"])
    assert live["mentions"] == [bob, carol]
    await asyncio.sleep(0.3)
    assert b.pending("mention") == [], "bob was mentioned before: no second event"
    assert await unread_mentions(b, room) == 1 and await unread_mentions(c, room) == 1
    # Without mentions: kept as they are.
    kept = await a.ok("edit", {**edit, "text": "typo fixed"})
    assert kept["message"]["mentions"] == [bob, carol]
    # Dropping bob: his unread mention goes; dave is new and told.
    d = await clients.connect(server.url, token(dave))
    ack = await a.ok("edit", {**edit, "mentions": [carol, dave]})
    assert ack["message"]["mentions"] == [carol, dave]
    assert (await d.next("mention"))["message"]["id"] == posted["id"]
    assert await unread_mentions(b, room) == 0
    await asyncio.sleep(0.3)
    assert c.pending("mention") == []
    stored = (await b.ok("history", {"room": room}))["messages"][0]
    assert stored["mentions"] == [carol, dave] and stored["text"] == "hi bob and carol"
    # Empty list: none left (and no mentions field on the wire).
    cleared = await a.ok("edit", {**edit, "mentions": []})
    assert "mentions" not in cleared["message"] and await unread_mentions(c, room) == 0
    # Bounded and validated like a message's: nothing changes on a refusal.
    too_many = [user("x") for _ in range(4)]
    for bad in (too_many, "bob", [""], [1]):
        assert await a.error("edit", {**edit, "mentions": bad}) == "invalid_payload"
    assert "mentions" not in (await b.ok("history", {"room": room}))["messages"][0]


async def test_an_edit_in_a_private_room_drops_non_members(
    server: ServerProcess, clients: ClientPool
) -> None:
    alice, bob, eve = user("alice"), user("bob"), user("eve")
    a = await clients.connect(server.url, token(alice))
    e = await clients.connect(server.url, token(eve))
    club = (await a.ok("create_room", {"title": "Club", "members": [bob]}))["room"]
    posted = (await a.ok("message", {"room": club, "text": "plain"}))["message"]
    ack = await a.ok("edit", {"room": club, "id": posted["id"], "text": "hey", "mentions": [bob, eve]})
    assert ack["message"]["mentions"] == [bob]
    await asyncio.sleep(0.3)
    assert e.pending("mention") == [], "a non-member learns nothing of the room"


async def test_an_edit_keeps_reply_to(server: ServerProcess, clients: ClientPool) -> None:
    room = f"ed-{uuid.uuid4().hex[:8]}"
    a = await clients.connect(server.url, token(user("alice")))
    await a.ok("join", {"room": room})
    parent = (await a.ok("message", {"room": room, "text": "parent"}))["message"]
    other = (await a.ok("message", {"room": room, "text": "other"}))["message"]
    reply = (await a.ok("message", {"room": room, "text": "reply", "reply_to": parent["id"]}))["message"]
    moved = {"room": room, "id": reply["id"], "text": "moved", "reply_to": other["id"]}
    assert await a.error("edit", moved) == "invalid_payload"
    made = {"room": room, "id": other["id"], "text": "now a reply", "reply_to": parent["id"]}
    assert await a.error("edit", made) == "invalid_payload"
    same = await a.ok("edit", {"room": room, "id": reply["id"], "text": "edited", "reply_to": parent["id"]})
    assert same["message"]["reply_to"]["id"] == parent["id"]
    plain = await a.ok("edit", {"room": room, "id": reply["id"], "text": "edited again"})
    assert plain["message"]["reply_to"] == reply["reply_to"]


async def test_a_deleted_message_loses_pins_reactions_and_mentions_replies_stay(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = f"ed-{uuid.uuid4().hex[:8]}"
    admin_id, bob = user("admin"), user("bob")
    admin = await clients.connect(server.url, token(admin_id, roles=["admin"]))
    b = await clients.connect(server.url, token(bob))
    for sock in (admin, b):
        await sock.ok("join", {"room": room})
    doomed = (await admin.ok("message", {"room": room, "text": "doomed", "mentions": [bob]}))["message"]
    since = doomed["pos"]
    keeper = (await admin.ok("message", {"room": room, "text": "keeper"}))["message"]
    reply = (await b.ok("message", {"room": room, "text": "a reply", "reply_to": doomed["id"]}))["message"]
    await admin.ok("pin", {"room": room, "id": doomed["id"]})
    assert await admin.error("pin", {"room": room, "id": keeper["id"]}) == "pin_limit"  # CHATSVC_MAX_PINS=1
    await b.ok("react", {"room": room, "id": doomed["id"], "emoji": "🚀"})
    assert await unread_mentions(b, room) == 1
    await admin.ok("delete", {"room": room, "id": doomed["id"]})
    unpinned = await b.next("unpinned", where=lambda e: e["id"] == doomed["id"])
    assert unpinned["by"]["id"] == admin_id and "pos" in unpinned
    assert (await b.ok("pins", {"room": room}))["pins"] == []
    # The pin is really gone: the room has room for another.
    await admin.ok("pin", {"room": room, "id": keeper["id"]})
    assert await unread_mentions(b, room) == 0
    # The reaction rows are gone from the store (SQLite, read beside the server).
    db = sqlite3.connect(f"file:{server.env['CHATSVC_DATA_DIR']}/chatsvc.sqlite3?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT count(*) FROM reactions WHERE room=?", (room,)).fetchone()
    finally:
        db.close()
    assert rows == (0,)
    # The replies stay readable, the parent shows as deleted.
    thread = await b.ok("thread", {"room": room, "id": doomed["id"]})
    assert thread["message"]["deleted"] is True and [r["id"] for r in thread["replies"]] == [reply["id"]]
    # The reply no longer quotes the deleted text, in the thread and in history.
    assert reply["reply_to"]["preview"] == "doomed"
    gone = {"id": doomed["id"], "user": reply["reply_to"]["user"], "preview": "", "deleted": True}
    assert thread["replies"][0]["reply_to"] == gone
    listed = {m["id"]: m for m in (await b.ok("history", {"room": room}))["messages"]}
    assert listed[reply["id"]]["reply_to"] == gone and listed[reply["id"]]["text"] == "a reply"
    # A client catching up sees the pin go, in the stream.
    caught = await b.ok("join", {"room": room, "since": since})
    kinds = [(e["event"], e["id"]) for e in caught["events"] if e["event"] in ("pinned", "unpinned")]
    assert kinds == [("pinned", doomed["id"]), ("unpinned", doomed["id"]), ("pinned", keeper["id"])]
