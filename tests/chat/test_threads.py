"""Replies and threads on a real server (issue 25 item 1), python-socketio clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.support.clients import ClientPool, running_server
from tests.support.replicas import on_both, start_replicas
from tests.support.servers import ServerProcess
from tests.support.tokens import token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("threads"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


def new_room() -> str:
    return f"thr-{uuid.uuid4().hex[:12]}"


async def test_reply_thread_page_live_count_and_catch_up(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token("alice"))
    bob = await clients.connect(server.url, token("bob"))
    await alice.ok("join", {"room": room})
    joined = await bob.ok("join", {"room": room})
    parent = (await alice.ok("message", {"room": room, "text": "$AAPL earnings beat " + "x" * 300}))[
        "message"
    ]
    since = parent["pos"]
    replies = []
    for i in range(3):
        ack = await bob.ok("message", {"room": room, "text": f"re {i}", "reply_to": parent["id"]})
        replies.append(ack["message"])
        ref = ack["message"]["reply_to"]
        assert ref["id"] == parent["id"] and ref["user"]["id"] == "alice"
        assert parent["text"].startswith(ref["preview"]) and 0 < len(ref["preview"]) < len(parent["text"])
        update = await alice.next("message_updated", where=lambda e: e["id"] == parent["id"])
        assert update["reply_count"] == i + 1 and update["room"] == room and "pos" in update
        assert update["last_reply_at"] == ack["message"]["created_at"]
    # A retry of a reply is the same message and does not count twice.
    retry = {"room": room, "text": "re k", "reply_to": parent["id"], "client_msg_id": "k"}
    first = await bob.ok("message", retry)
    again = await bob.ok("message", retry)
    assert again["duplicate"] and again["message"]["id"] == first["message"]["id"]
    replies.append(first["message"])

    history = await alice.ok("history", {"room": room})
    by_id = {m["id"]: m for m in history["messages"]}
    assert by_id[parent["id"]]["reply_count"] == 4
    assert by_id[parent["id"]]["last_reply_at"] == first["message"]["created_at"]
    assert all(by_id[r["id"]]["reply_to"]["id"] == parent["id"] for r in replies), (
        "replies are in the room too"
    )

    page = await alice.ok("thread", {"room": room, "id": parent["id"], "limit": 3})
    assert page["message"]["id"] == parent["id"] and page["message"]["reply_count"] == 4
    assert [m["id"] for m in page["replies"]] == [r["id"] for r in reversed(replies)][:3]
    rest = await alice.ok(
        "thread", {"room": room, "id": parent["id"], "limit": 3, "before": page["next_before"]}
    )
    assert [m["id"] for m in rest["replies"]] == [replies[0]["id"]] and rest["next_before"] is None

    # Edits keep reply_to; deleting the parent leaves its replies readable.
    edited = await bob.ok("edit", {"room": room, "id": replies[0]["id"], "text": "re 0 edited"})
    assert edited["message"]["reply_to"]["id"] == parent["id"]
    await alice.ok("delete", {"room": room, "id": parent["id"]})
    gone = await bob.ok("thread", {"room": room, "id": parent["id"]})
    assert gone["message"]["deleted"] is True and len(gone["replies"]) == 4
    assert gone["replies"][-1]["text"] == "re 0 edited"
    assert await bob.error("message", {"room": room, "text": "late", "reply_to": parent["id"]}) == "not_found"

    # join {since}: every reply and every count change, once, in stream order.
    carol = await clients.connect(server.url, token("carol"))
    caught = await carol.ok("join", {"room": room, "since": since})
    updates = [e for e in caught["events"] if e["event"] == "message_updated"]
    assert [e["reply_count"] for e in updates] == [1, 2, 3, 4]
    assert len({e["event_id"] for e in updates}) == 4
    assert [m["id"] for m in caught["messages"]] == [r["id"] for r in replies]
    assert joined["ok"]


async def test_bad_reply_and_thread_requests_are_refused(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token("alice"))
    await alice.ok("join", {"room": room})
    assert await alice.error("message", {"room": room, "text": "x", "reply_to": "nope"}) == "invalid_payload"
    assert await alice.error("message", {"room": room, "text": "x", "reply_to": 5}) == "invalid_payload"
    missing = "01J00000000000000000000000"
    assert await alice.error("message", {"room": room, "text": "x", "reply_to": missing}) == "not_found"
    assert await alice.error("thread", {"room": room, "id": missing}) == "not_found"
    assert await alice.error("thread", {"room": room}) == "invalid_payload"
    assert await alice.error("thread", {"room": room, "id": missing, "limit": 10_000}) == "invalid_payload"
    assert (await alice.ok("history", {"room": room}))["messages"] == [], "refused replies store nothing"


async def test_concurrent_and_retried_replies_on_two_replicas_count_once(
    server_factory: ServerFactory, cql_keyspace: dict[str, str]
) -> None:
    """Cluster mode (the real broker and CQL node): the reply's record is the order of
    truth. Replies sent on both replicas at once, each sent twice (a retry), count once
    each; every client sees the counts in stream order from the replies themselves
    (``message_updated`` without ``pos``), and the rows the history writer adds agree."""
    ra, rb = start_replicas(server_factory, cql_keyspace)
    room = new_room()
    users = [f"t{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    async with ClientPool() as pool:
        on_a, on_b = await on_both(pool, (ra, rb), room, users)
        parent = (await on_a[0].ok("message", {"room": room, "text": "$NVDA guidance"}))["message"]
        acks = await asyncio.gather(
            *(
                c.ok(
                    "message",
                    {"room": room, "text": f"re {i}", "reply_to": parent["id"], "client_msg_id": f"c{i}"},
                )
                for i, c in enumerate(on_a + on_b)
                for _ in (1, 2)
            )
        )
        replies = {a["message"]["id"] for a in acks}
        assert len(replies) == len(users) * 2 and sum(not a["duplicate"] for a in acks) == len(replies)
        total = len(replies)
        for watcher in (on_a[1], on_b[1]):
            seen: list[dict[str, Any]] = []
            while len(seen) < total:
                seen.append(await watcher.next("message_updated", within=10))
            assert [u["reply_count"] for u in seen] == list(range(1, total + 1))
            assert all(u["id"] == parent["id"] and "pos" not in u for u in seen)
        # Pages count the stream at once, and the history writer's rows (the thread page
        # reads them) hold each reply once.
        page = await on_b[2].ok("history", {"room": room, "limit": 20})
        by_id = {m["id"]: m for m in page["messages"]}
        assert by_id[parent["id"]]["reply_count"] == total
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            thread = await on_a[2].ok("thread", {"room": room, "id": parent["id"], "limit": 50})
            if len(thread["replies"]) == total or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert {r["id"] for r in thread["replies"]} == replies
        assert thread["message"]["reply_count"] == total
        # A catch-up from after the parent: the replies, and the count they imply (no
        # message_updated record is stored in cluster mode).
        late = await pool.connect(rb.url, token(f"late-{uuid.uuid4().hex[:6]}"))
        caught = await late.ok("join", {"room": room, "since": parent["pos"]})
        assert {m["id"] for m in caught["messages"]} >= replies
        implied = [e for e in caught["events"] if e["event"] == "message_updated"]
        assert [(e["id"], e["reply_count"]) for e in implied] == [(parent["id"], total)]
