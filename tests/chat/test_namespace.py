"""The chat protocol end to end: real ``chatsvc serve`` processes, python-socketio clients."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chatsvc.model.ids import is_message_id
from tests.support.clients import TRANSPORTS, WAIT, ChatClient, ClientPool, assert_error_ack, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token

MESSAGE_KEYS = {"id", "room", "user", "text", "client_msg_id", "created_at", "pos"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Defaults, except a rate limit no test here reaches."""
    with running_server(
        tmp_path_factory.mktemp("chat"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Tiny limits: 4 events then 0.1/s, 64-byte messages, 2 rooms per connection."""
    with running_server(
        tmp_path_factory.mktemp("limited"),
        name="limited",
        CHATSVC_RATE_LIMIT_PER_SECOND="0.1",
        CHATSVC_RATE_LIMIT_BURST="4",
        CHATSVC_MAX_MESSAGE_BYTES="64",
        CHATSVC_MAX_ROOMS_PER_CONNECTION="2",
    ) as running:
        yield running


def new_room(prefix: str = "room") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def pair(
    clients: ClientPool, server: ServerProcess, room: str, transport: str = "websocket"
) -> tuple[ChatClient, ChatClient]:
    """alice (over ``transport``) and bob (websocket), both in ``room``."""
    alice = await clients.connect(server.url, token("alice"), transport=transport)
    bob = await clients.connect(server.url, token("bob"))
    await alice.ok("join", {"room": room})
    await bob.ok("join", {"room": room})
    await alice.next("presence", where=lambda p: p["user"]["id"] == "bob")
    return alice, bob


# -- join, message, receive --------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_join_message_and_receive(server: ServerProcess, clients: ClientPool, transport: str) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token("alice"), transport=transport)
    bob = await clients.connect(server.url, token("bob"), transport=transport)

    join = await alice.ok("join", {"room": room})
    assert join == {
        "ok": True,
        "room": room,
        "online": 1,
        "unread": 0,
        "slow_mode_seconds": 0,
        "sentiment": {"hour": {"bullish": 0, "bearish": 0}, "day": {"bullish": 0, "bearish": 0}},
    }
    assert (await bob.ok("join", {"room": room}))["online"] == 2

    ack = await alice.ok("message", {"room": room, "text": "안녕하세요 005930", "client_msg_id": "c-1"})
    assert set(ack) == {"ok", "message", "duplicate"}
    assert ack["duplicate"] is False
    message = ack["message"]
    assert set(message) == MESSAGE_KEYS
    assert is_message_id(message["id"])
    assert message["room"] == room
    assert message["user"] == {"id": "alice", "name": "Alice"}
    assert message["text"] == "안녕하세요 005930"
    assert message["client_msg_id"] == "c-1"
    assert message["created_at"].endswith("Z")

    assert await bob.next("message") == message
    # The sender is not echoed its own message (it has the ack); the next one it sees is bob's.
    reply = (await bob.ok("message", {"room": room, "text": "hi alice"}))["message"]
    assert reply["client_msg_id"] is None
    assert await alice.next("message") == reply
    assert reply["id"] > message["id"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_one_clients_messages_are_stored_and_delivered_in_the_order_sent(
    server: ServerProcess, clients: ClientPool, transport: str
) -> None:
    """A client that sends without waiting for acks still has its messages stored, acked and
    delivered in the order it sent them (events of one connection are handled in turn)."""
    room = new_room()
    alice, bob = await pair(clients, server, room, transport)
    # More than python-engineio's 16 packets per polling POST (chatsvc accepts 512).
    texts = [f"burst {i}" for i in range(40)]
    acks = await asyncio.gather(*(alice.ok("message", {"room": room, "text": t}) for t in texts))
    ids = [ack["message"]["id"] for ack in acks]
    assert [ack["message"]["text"] for ack in acks] == texts
    assert ids == sorted(ids)
    received = [(await bob.next("message"))["text"] for _ in texts]
    assert received == texts
    page = await bob.ok("history", {"room": room, "limit": len(texts)})
    assert [m["text"] for m in reversed(page["messages"])] == texts


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_json_text_payloads(server: ServerProcess, clients: ClientPool, transport: str) -> None:
    """Hoppscotch sends the editor text as a string."""
    room = new_room()
    alice, bob = await pair(clients, server, room, transport)
    ack = await alice.ok("message", json.dumps({"room": room, "text": "as text"}))
    assert (await bob.next("message"))["id"] == ack["message"]["id"]
    history = await alice.ok("history", f'{{"room": "{room}", "limit": 5}}')
    assert [m["text"] for m in history["messages"]] == ["as text"]
    assert await alice.error("message", "{not json") == "invalid_payload"


async def test_idempotent_retry(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice, bob = await pair(clients, server, room)
    first = await alice.ok("message", {"room": room, "text": "once", "client_msg_id": "retry-1"})
    again = await alice.ok("message", {"room": room, "text": "once", "client_msg_id": "retry-1"})
    assert again["duplicate"] is True
    assert again["message"] == first["message"]
    # bob may use the same key; it is per user.
    await bob.ok("message", {"room": room, "text": "mine", "client_msg_id": "retry-1"})
    history = await alice.ok("history", {"room": room})
    assert [m["text"] for m in history["messages"]] == ["mine", "once"]
    assert bob.pending("message") == [first["message"]]


async def test_history_paging(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token("alice"))
    await alice.ok("join", {"room": room})
    sent = [(await alice.ok("message", {"room": room, "text": f"m{i}"}))["message"] for i in range(7)]

    page = await alice.ok("history", {"room": room, "limit": 3})
    assert set(page) == {"ok", "room", "messages", "next_before"}
    assert [m["text"] for m in page["messages"]] == ["m6", "m5", "m4"]
    assert page["messages"][0] == sent[-1]
    page = await alice.ok("history", {"room": room, "limit": 3, "before": page["next_before"]})
    assert [m["text"] for m in page["messages"]] == ["m3", "m2", "m1"]
    page = await alice.ok("history", {"room": room, "limit": 3, "before": page["next_before"]})
    assert [m["text"] for m in page["messages"]] == ["m0"]
    assert page["next_before"] is None

    everything = await alice.ok("history", {"room": room})  # default limit 50
    assert len(everything["messages"]) == 7 and everything["next_before"] is None
    assert len((await alice.ok("history", {"room": room, "limit": 1}))["messages"]) == 1
    assert len((await alice.ok("history", {"room": room, "limit": 100}))["messages"]) == 7
    for bad in (0, 101, -5, "10", 2.5, True):
        assert await alice.error("history", {"room": room, "limit": bad}) == "invalid_payload", bad
    assert await alice.error("history", {"room": room, "before": "not-an-id"}) == "invalid_payload"

    empty = await alice.ok("history", {"room": new_room("empty")})
    assert empty["messages"] == [] and empty["next_before"] is None


async def test_catch_up_with_since(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token("alice"))
    await alice.ok("join", {"room": room})
    sent = [(await alice.ok("message", {"room": room, "text": f"m{i}"}))["message"] for i in range(4)]

    bob = await clients.connect(server.url, token("bob"))
    ack = await bob.ok("join", {"room": room, "since": sent[1]["id"]})
    # m0 is in the overlap window before since (CHATSVC_CATCHUP_OVERLAP_MS); since itself is not.
    assert [m["text"] for m in ack["messages"]] == ["m0", "m2", "m3"]
    assert ack["messages"][1] == sent[2]
    assert ack["has_more"] is False
    again = await bob.ok("join", {"room": room, "since": sent[3]["id"]})  # already in: still answers
    assert [m["id"] for m in again["messages"]] == [m["id"] for m in sent[:3]]
    assert await bob.error("join", {"room": room, "since": "bogus"}) == "invalid_payload"


# -- limits ------------------------------------------------------------------------------------


async def test_rate_limit(limited: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    client = await clients.connect(limited.url, token("speedy"))
    await client.ok("join", {"room": room})
    for i in range(3):
        await client.ok("message", {"room": room, "text": f"{i}"})
    ack = await client.call("message", {"room": room, "text": "one too many"})
    assert_error_ack(ack, "rate_limited")
    # Another connection has its own bucket.
    other = await clients.connect(limited.url, token("speedy"))
    await other.ok("join", {"room": room})


async def test_size_limit(limited: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    client = await clients.connect(limited.url, token("talker"))
    await client.ok("join", {"room": room})
    assert (await client.ok("message", {"room": room, "text": "x" * 64}))["message"]["text"] == "x" * 64
    assert await client.error("message", {"room": room, "text": "x" * 65}) == "too_large"
    assert await client.error("message", {"room": room, "text": "가" * 22}) == "too_large"  # 66 bytes


async def test_rooms_per_connection(limited: ServerProcess, clients: ClientPool) -> None:
    client = await clients.connect(limited.url, token("roamer"))
    first, second = new_room(), new_room()
    await client.ok("join", {"room": first})
    await client.ok("join", {"room": second})
    assert await client.error("join", {"room": new_room()}) == "too_many_rooms"
    # Rejoining a room the connection is already in does not count (uses the last token).
    await client.ok("join", {"room": first})


async def test_leave_frees_a_room_slot(limited: ServerProcess, clients: ClientPool) -> None:
    client = await clients.connect(limited.url, token("roamer"))
    first = new_room()
    await client.ok("join", {"room": first})
    await client.ok("join", {"room": new_room()})
    assert await client.ok("leave", {"room": first}) == {"ok": True, "room": first}
    await client.ok("join", {"room": new_room()})


# -- rooms and permissions ---------------------------------------------------------------------


async def test_room_names(server: ServerProcess, clients: ClientPool) -> None:
    client = await clients.connect(server.url, token("namer"))
    for good in ("stock:005930", "a", "A_b-c.d:e", "x" * 64):
        assert (await client.ok("join", {"room": good}))["room"] == good
    for bad in ("", "x" * 65, "with space", "a/b", "a#b", "한국", None, 5, ["lobby"], {"a": 1}):
        assert await client.error("join", {"room": bad}) == "invalid_payload", bad
    assert await client.error("join", {}) == "invalid_payload"
    ack = await client.ok("message", {"room": "stock:005930", "text": "삼성전자"})
    assert ack["message"]["room"] == "stock:005930"


async def test_rooms_claim_forbids_other_rooms(server: ServerProcess, clients: ClientPool) -> None:
    client = await clients.connect(server.url, token("limited", rooms=["stock:*", "lobby"]))
    await client.ok("join", {"room": "stock:005930"})
    await client.ok("join", {"room": "lobby"})
    assert await client.error("join", {"room": "vip"}) == "forbidden"
    assert await client.error("history", {"room": "vip"}) == "forbidden"
    assert await client.error("message", {"room": "vip", "text": "hi"}) == "not_in_room"


async def test_events_need_membership(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    client = await clients.connect(server.url, token("outsider"))
    some_id = "01" + "0" * 24
    assert await client.error("message", {"room": room, "text": "hi"}) == "not_in_room"
    assert await client.error("typing", {"room": room, "typing": True}) == "not_in_room"
    assert await client.error("read", {"room": room, "message_id": some_id}) == "not_in_room"
    assert await client.error("leave", {"room": room}) == "not_in_room"
    await client.ok("join", {"room": room})
    await client.ok("leave", {"room": room})
    assert await client.error("message", {"room": room, "text": "hi"}) == "not_in_room"


async def test_edit_and_delete(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice, bob = await pair(clients, server, room)
    admin = await clients.connect(server.url, token("root", roles=["admin"]))
    await admin.ok("join", {"room": room})
    msg = (await alice.ok("message", {"room": room, "text": "typo"}))["message"]
    await bob.next("message")

    edited = await alice.ok("edit", {"room": room, "id": msg["id"], "text": "fixed"})
    assert edited["message"]["text"] == "fixed" and "edited_at" in edited["message"]
    assert (await bob.next("message_edited"))["text"] == "fixed"
    assert await bob.error("edit", {"room": room, "id": msg["id"], "text": "mine now"}) == "forbidden"
    assert await bob.error("delete", {"room": room, "id": msg["id"]}) == "forbidden"
    by_admin = await admin.ok("edit", {"room": room, "id": msg["id"], "text": "moderated"})
    assert by_admin["message"]["text"] == "moderated"

    assert await alice.ok("delete", {"room": room, "id": msg["id"]}) == {"ok": True, "id": msg["id"]}
    deleted = await bob.next("message_deleted")
    assert deleted.pop("event_id") > msg["id"]  # the room event log's id, additive
    assert deleted.pop("pos").split(":")[0] == msg["pos"].split(":")[0]  # the event's stream position
    assert deleted == {"id": msg["id"], "room": room, "deleted_by": "alice"}
    assert await alice.error("edit", {"room": room, "id": msg["id"], "text": "back"}) == "not_found"

    other = (await bob.ok("message", {"room": room, "text": "spam"}))["message"]
    await admin.ok("delete", {"room": room, "id": other["id"]})
    assert (await alice.next("message_deleted", where=lambda d: d["id"] == other["id"]))[
        "deleted_by"
    ] == "root"
    history = await alice.ok("history", {"room": room})
    assert all(m.get("deleted") and m["text"] == "" for m in history["messages"])
    for bad in ({"room": room, "id": "nope", "text": "x"}, {"room": room, "text": "x"}):
        assert await alice.error("edit", bad) == "invalid_payload"


async def test_read_receipts_and_unread_counts(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    bob = await clients.connect(server.url, token("bob"))
    await bob.ok("join", {"room": room})
    sent = [(await bob.ok("message", {"room": room, "text": f"b{i}"}))["message"] for i in range(3)]

    alice = await clients.connect(server.url, token("alice"))
    assert (await alice.ok("join", {"room": room}))["unread"] == 3
    assert await alice.ok("read", {"room": room, "message_id": sent[1]["id"]}) == {"ok": True}
    receipt = await bob.next("read")
    assert receipt == {"room": room, "user": {"id": "alice", "name": "Alice"}, "message_id": sent[1]["id"]}
    assert alice.pending("read") == []  # not echoed to the reader

    second_tab = await clients.connect(server.url, token("alice"))
    assert (await second_tab.ok("join", {"room": room}))["unread"] == 1
    assert (await bob.ok("join", {"room": room}))["unread"] == 0  # own messages never count
    assert await alice.error("read", {"room": room, "message_id": "x"}) == "invalid_payload"


async def test_typing_is_relayed_not_stored(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice, bob = await pair(clients, server, room)
    assert await alice.ok("typing", {"room": room, "typing": True}) == {"ok": True}
    assert await bob.next("typing") == {
        "room": room,
        "user": {"id": "alice", "name": "Alice"},
        "typing": True,
    }
    await alice.ok("typing", {"room": room, "typing": False})
    assert (await bob.next("typing"))["typing"] is False
    assert await alice.error("typing", {"room": room}) == "invalid_payload"
    assert (await bob.ok("history", {"room": room}))["messages"] == []
    assert alice.pending("typing") == []


async def test_presence(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token("alice"))
    await alice.ok("join", {"room": room})
    bob = await clients.connect(server.url, token("bob"), transport="polling")
    assert (await bob.ok("join", {"room": room}))["online"] == 2
    joined = await alice.next("presence")
    assert joined == {"room": room, "user": {"id": "bob", "name": "Bob"}, "action": "join", "online": 2}

    # A second socket of the same user is not a new member.
    bob_tab = await clients.connect(server.url, token("bob"))
    assert (await bob_tab.ok("join", {"room": room}))["online"] == 2
    await bob_tab.disconnect()
    await bob.ok("leave", {"room": room})
    left = await alice.next("presence")
    assert left == {"room": room, "user": {"id": "bob", "name": "Bob"}, "action": "leave", "online": 1}

    carol = await clients.connect(server.url, token("carol"), transport="polling")
    await carol.ok("join", {"room": room})
    assert (await alice.next("presence"))["action"] == "join"
    await carol.disconnect()  # disconnecting leaves every room
    gone = await alice.next("presence")
    assert (gone["user"]["id"], gone["action"], gone["online"]) == ("carol", "leave", 1)
    assert alice.pending("presence") == []


# -- garbage in, clean errors out ----------------------------------------------------------------

GARBAGE: list[Any] = [
    None,
    0,
    -1,
    3.14,
    True,
    [],
    [1, "two", None],
    "",
    "   ",
    "[1, 2]",
    "null",
    '"just a string"',
    "\x00\x01\x02",
    "x" * 20_000,
    {"room": {"nested": [1, 2, {"deep": True}]}},
    {"room": "ok", "text": ["list"]},
    {"room": "ok", "text": "x" * 20_000},
    {"room": "ok", "text": {"$gt": ""}},
    {"room": 1e308},
    {"room": "ok", "since": 12345},
    {"room": "ok", "client_msg_id": {"a": 1}, "text": "hi"},
]


async def test_garbage_gets_clean_error_acks(server: ServerProcess, clients: ClientPool) -> None:
    client = await clients.connect(server.url, token("fuzzer"))
    await client.ok("join", {"room": "ok"})
    events = ["join", "leave", "message", "typing", "history", "read", "edit", "delete"]
    for event in events:
        for data in GARBAGE:
            ack = await client.call(event, data)
            if isinstance(ack, dict) and ack.get("ok") is True:
                continue  # e.g. history {"room": "ok", "since": ...} ignores unknown fields
            assert_error_ack(ack)
            assert ack["error"]["code"] in {"invalid_payload", "too_large", "not_in_room", "forbidden"}, (
                event,
                data,
                ack,
            )
    for unknown in ("hack", "admin", "connect_error", "x" * 500):
        ack = await client.call(unknown, {"room": "ok"})
        assert_error_ack(ack, "invalid_payload")
        assert len(ack["error"]["message"]) < 100
    # Several arguments or none at all.
    assert_error_ack(await client.sio.call("message", timeout=WAIT), "invalid_payload")
    assert_error_ack(await client.sio.call("message", ("a", "b"), timeout=WAIT), "invalid_payload")
    # Still a working connection (a garbage-tolerant leave may have taken it out of "ok").
    await client.ok("join", {"room": "ok"})
    await client.ok("message", {"room": "ok", "text": "still here"})


async def test_an_event_without_an_ack_is_harmless(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice, bob = await pair(clients, server, room)
    await alice.sio.emit("message", {"room": room, "text": "fire and forget"})
    assert (await bob.next("message"))["text"] == "fire and forget"
    await alice.sio.emit("message", 42)
    await alice.ok("typing", {"room": room, "typing": True})


async def test_many_clients_in_one_room(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    members = await asyncio.gather(
        *(clients.connect(server.url, token(f"user{i}"), transport=TRANSPORTS[i % 2]) for i in range(6))
    )
    for member in members:
        await member.ok("join", {"room": room})
    sent = await members[0].ok("message", {"room": room, "text": "to everyone"})
    received = await asyncio.gather(*(m.next("message") for m in members[1:]))
    assert all(r == sent["message"] for r in received)


async def test_refresh_swaps_the_token_and_moves_the_expiry(
    server: ServerProcess, clients: ClientPool
) -> None:
    alice = await clients.connect(server.url, token("alice", ttl=3))
    room = new_room()
    await alice.ok("join", {"room": room})
    fresh = token("alice", ttl=600, name="Alice Refreshed")
    ack = await alice.ok("refresh", {"token": fresh})
    assert set(ack) == {"ok", "expires_at"} and ack["expires_at"].endswith("Z")
    await asyncio.sleep(4)  # past the first token's exp: the socket stays
    assert alice.sio.connected and not alice.pending("session_end")
    sent = await alice.ok("message", {"room": room, "text": "still here"})
    assert sent["message"]["user"] == {"id": "alice", "name": "Alice Refreshed"}


async def test_refresh_to_a_short_token_ends_the_session_at_its_exp(
    server: ServerProcess, clients: ClientPool
) -> None:
    alice = await clients.connect(server.url, token("alice", ttl=600))
    await alice.ok("refresh", {"token": token("alice", ttl=2)})
    end = await alice.next("session_end", within=WAIT)
    assert end["code"] == "token_expired" and end["reconnect"] is False


async def test_refresh_refusals_keep_the_socket(server: ServerProcess, clients: ClientPool) -> None:
    alice = await clients.connect(server.url, token("alice", ttl=600))
    assert_error_ack(await alice.call("refresh", {"token": token("mallory")}), "forbidden")
    assert_error_ack(await alice.call("refresh", {"token": token("alice", ttl=-60)}), "token_expired")
    assert_error_ack(await alice.call("refresh", {"token": token("alice", secret="x" * 40)}), "token_invalid")
    assert_error_ack(await alice.call("refresh", {"token": "not-a-jwt"}), "token_invalid")
    assert_error_ack(await alice.call("refresh", {"token": 42}), "invalid_payload")
    assert_error_ack(await alice.call("refresh", {}), "invalid_payload")
    assert alice.sio.connected
    assert (await alice.ok("join", {"room": new_room()}))["ok"] is True
