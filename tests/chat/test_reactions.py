"""Reactions on a real server (issue 25 item 2), python-socketio clients; and concurrent
reacts on two replicas over the real Kafka broker and the real CQL node."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import ServerFactory
from tests.support.clients import ClientPool, running_server
from tests.support.replicas import FAST, on_both, start_replicas
from tests.support.servers import ServerProcess
from tests.support.tokens import token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("reactions"), CHATSVC_MAX_REACTION_KINDS="3", **FAST
    ) as running:
        yield running


def new_room() -> str:
    return f"rx-{uuid.uuid4().hex[:12]}"


async def test_react_unreact_counts_seen_by_another_client_and_replayed(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token("alice"))
    bob = await clients.connect(server.url, token("bob"))
    await alice.ok("join", {"room": room})
    await bob.ok("join", {"room": room})
    sent = (await alice.ok("message", {"room": room, "text": "$TSLA 🚀"}))["message"]
    since = sent["pos"]
    ack = await bob.ok("react", {"room": room, "id": sent["id"], "emoji": "🚀"})
    assert (ack["count"], ack["changed"]) == (1, True)
    event = await alice.next("reaction")
    assert {k: event[k] for k in ("room", "id", "emoji", "count", "action")} == {
        "room": room,
        "id": sent["id"],
        "emoji": "🚀",
        "count": 1,
        "action": "add",
    }
    assert event["user"]["id"] == "bob" and "pos" in event and "event_id" in event
    retry = await bob.ok("react", {"room": room, "id": sent["id"], "emoji": "🚀"})
    assert (retry["count"], retry["changed"]) == (1, False), "idempotent per (user, message, emoji)"
    await alice.ok("react", {"room": room, "id": sent["id"], "emoji": "🚀"})
    await alice.ok("react", {"room": room, "id": sent["id"], "emoji": ":bull:"})
    by_alice = [await bob.next("reaction", where=lambda e: e["user"]["id"] == "alice") for _ in range(2)]
    assert [(e["emoji"], e["count"]) for e in by_alice] == [("🚀", 2), (":bull:", 1)]
    gone = await bob.ok("unreact", {"room": room, "id": sent["id"], "emoji": "🚀"})
    assert (gone["count"], gone["changed"]) == (1, True)
    assert (await alice.next("reaction", where=lambda e: e["action"] == "remove"))["count"] == 1
    assert not (await bob.ok("unreact", {"room": room, "id": sent["id"], "emoji": "🚀"}))["changed"]

    mine = (await alice.ok("history", {"room": room}))["messages"][0]
    assert mine["reactions"] == {"🚀": 1, ":bull:": 1} and sorted(mine["own_reactions"]) == [":bull:", "🚀"]
    theirs = (await bob.ok("history", {"room": room}))["messages"][0]
    assert theirs["reactions"] == {"🚀": 1, ":bull:": 1} and theirs["own_reactions"] == []
    thread = await bob.ok("thread", {"room": room, "id": sent["id"]})
    assert thread["message"]["reactions"] == {"🚀": 1, ":bull:": 1}

    carol = await clients.connect(server.url, token("carol"))
    caught = await carol.ok("join", {"room": room, "since": since})
    changes = [(e["emoji"], e["count"], e["action"]) for e in caught["events"] if e["event"] == "reaction"]
    assert changes == [("🚀", 1, "add"), ("🚀", 2, "add"), (":bull:", 1, "add"), ("🚀", 1, "remove")]
    assert alice.pending("reaction") == [] or all(
        e["user"]["id"] == "alice" for e in alice.pending("reaction")
    )


async def test_bad_reactions_are_refused(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token("alice"))
    await alice.ok("join", {"room": room})
    sent = (await alice.ok("message", {"room": room, "text": "x"}))["message"]
    for bad in ("", "a", "👍 ", "x" * 40, ":Bad Name:", "<script>", "1", 5, None, "👍" * 17, "\u0000"):
        assert (
            await alice.error("react", {"room": room, "id": sent["id"], "emoji": bad}) == "invalid_payload"
        ), bad
    missing = "01J00000000000000000000000"
    assert await alice.error("react", {"room": room, "id": missing, "emoji": "👍"}) == "not_found"
    for e in ("👍", "🔥", ":ok:"):
        await alice.ok("react", {"room": room, "id": sent["id"], "emoji": e})
    assert await alice.error("react", {"room": room, "id": sent["id"], "emoji": "🐻"}) == "reaction_limit"
    assert (await alice.ok("react", {"room": room, "id": sent["id"], "emoji": "🔥"}))["changed"] is False
    await alice.ok("delete", {"room": room, "id": sent["id"]})
    assert await alice.error("react", {"room": room, "id": sent["id"], "emoji": "👍"}) == "not_found"
    deleted = (await alice.ok("history", {"room": room}))["messages"][0]
    assert deleted["deleted"] and "reactions" not in deleted, "a deleted message shows no reactions"
    other = new_room()
    assert await alice.error("react", {"room": other, "id": sent["id"], "emoji": "👍"}) == "not_in_room"


async def test_concurrent_reacts_on_two_replicas_count_exactly(
    server_factory: ServerFactory, cql_keyspace: dict[str, str]
) -> None:
    ra, rb = start_replicas(server_factory, cql_keyspace)
    room = new_room()
    users = [f"u{i}-{uuid.uuid4().hex[:6]}" for i in range(8)]
    async with ClientPool() as pool:
        on_a, on_b = await on_both(pool, (ra, rb), room, users)
        sent = (await on_a[0].ok("message", {"room": room, "text": "hot"}))["message"]
        # Every user reacts on both replicas at once, each twice (a retry).
        acks = await asyncio.gather(
            *(
                c.ok("react", {"room": room, "id": sent["id"], "emoji": "🔥"})
                for c in on_a + on_b
                for _ in (1, 2)
            )
        )
        assert sum(a["changed"] for a in acks) == len(users), "exactly one call per user added"
        for c in (on_a[1], on_b[1]):
            page = await c.ok("history", {"room": room, "limit": 1})
            assert page["messages"][0]["reactions"] == {"🔥": len(users)}
            assert page["messages"][0]["own_reactions"] == ["🔥"]
        seen = [e for e in on_b[2].pending("reaction")]
        deadline = asyncio.get_running_loop().time() + 10
        while len(seen) < len(users) and asyncio.get_running_loop().time() < deadline:
            seen.append(await on_b[2].next("reaction", within=10))
        assert len(seen) == len(users) and max(e["count"] for e in seen) == len(users)
        assert len({e["event_id"] for e in seen}) == len(users)
