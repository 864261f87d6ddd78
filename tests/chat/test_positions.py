"""Room stream positions on the wire (issue 21, docs/delivery.md): ``pos`` on messages and
edit/delete events, ``join {since: pos}`` answering everything after it in stream order,
and ``reset`` when a position cannot be answered from. A real server on SQLite."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatsvc.model.ids import id_at
from chatsvc.model.messages import RoomEvent
from chatsvc.store.base import EVENT_RETENTION_SECONDS
from chatsvc.store.sqlite import SqliteStore
from tests.conftest import ServerFactory
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token

CATCHUP_MAX = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("positions"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
        CHATSVC_CATCHUP_MAX=str(CATCHUP_MAX),
    ) as running:
        yield running


def new_room() -> str:
    return f"pos-{uuid.uuid4().hex[:12]}"


def split(pos: str) -> tuple[str, int]:
    epoch, _, n = pos.partition(":")
    return epoch, int(n)


def stream(ack: dict[str, Any]) -> list[tuple[int, str]]:
    """A catch-up answer merged back into stream order: (n, what)."""
    records = [(split(m["pos"])[1], f"message {m['text'] or '(deleted)'}") for m in ack["messages"]]
    records += [(split(e["pos"])[1], f"{e['event']} {e['id']}") for e in ack["events"]]
    return sorted(records)


async def test_positions_live_and_catch_up_in_stream_order(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token("alice"))
    bob = await clients.connect(server.url, token("bob"))
    await alice.ok("join", {"room": room})
    await bob.ok("join", {"room": room})
    sent = [(await alice.ok("message", {"room": room, "text": f"m{i}"}))["message"] for i in range(4)]
    epoch = split(sent[0]["pos"])[0]
    assert [split(m["pos"]) for m in sent] == [(epoch, n) for n in (1, 2, 3, 4)]
    for m in sent:
        assert (await bob.next("message"))["pos"] == m["pos"], "live delivery carries the same position"

    edit_ack = await alice.ok("edit", {"room": room, "id": sent[1]["id"], "text": "m1 edited"})
    assert edit_ack["message"]["pos"] == sent[1]["pos"], "a message keeps the position it was posted at"
    edited = await bob.next("message_edited")
    assert edited["pos"] == f"{epoch}:5" and edited["id"] == sent[1]["id"]
    await alice.ok("delete", {"room": room, "id": sent[2]["id"]})
    assert (await bob.next("message_deleted"))["pos"] == f"{epoch}:6"
    last = (await alice.ok("message", {"room": room, "text": "m4"}))["message"]
    assert last["pos"] == f"{epoch}:7"
    retry = await alice.ok("message", {"room": room, "text": "m4", "client_msg_id": "k"})
    again = await alice.ok("message", {"room": room, "text": "m4", "client_msg_id": "k"})
    assert again["duplicate"] and again["message"]["pos"] == retry["message"]["pos"] == f"{epoch}:8"

    history = await alice.ok("history", {"room": room})
    assert [m["pos"] for m in history["messages"]] == [f"{epoch}:{n}" for n in (8, 7, 4, 3, 2, 1)]

    # A newcomer pages through everything after m0, in stream order, CATCHUP_MAX at a time.
    carol = await clients.connect(server.url, token("carol"))
    pages = []
    since = sent[0]["pos"]
    for _ in range(10):
        ack = await carol.ok("join", {"room": room, "since": since})
        assert ack["reset"] is False
        assert len(ack["messages"]) + len(ack["events"]) <= CATCHUP_MAX
        pages.extend(stream(ack))
        since = ack["pos"]
        if not ack["has_more"]:
            break
    assert pages == [
        (2, "message m1 edited"),
        (3, "message (deleted)"),
        (4, "message m3"),
        (5, f"message_edited {sent[1]['id']}"),
        (6, f"message_deleted {sent[2]['id']}"),
        (7, "message m4"),
        (8, "message m4"),
    ]
    assert since == f"{epoch}:8"
    tail = await carol.ok("join", {"room": room, "since": since})
    assert tail["messages"] == tail["events"] == [] and tail["pos"] == since and not tail["has_more"]


async def test_positions_that_cannot_be_answered_reset(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token("alice"))
    await alice.ok("join", {"room": room})
    sent = [(await alice.ok("message", {"room": room, "text": f"m{i}"}))["message"] for i in range(3)]
    epoch = split(sent[0]["pos"])[0]
    other_epoch = "0" * 16 if epoch != "0" * 16 else "1" * 16
    bob = await clients.connect(server.url, token("bob"))
    for since in (f"{other_epoch}:1", f"{epoch}:99"):  # another epoch; beyond the head
        ack = await bob.ok("join", {"room": room, "since": since})
        assert ack["reset"] is True, since
        assert [m["text"] for m in ack["messages"]] == ["m0", "m1", "m2"], "the newest page, oldest first"
        assert ack["events"] == [] and ack["has_more"] is False and ack["pos"] == sent[-1]["pos"]
    for bad in ("bogus", f"{epoch}:", f"{epoch}:-1", ":5", f"{epoch.upper()}X:1", 12345, [1]):
        assert await bob.error("join", {"room": room, "since": bad}) == "invalid_payload", bad
    # A message id is still accepted, best effort, as before positions.
    by_id = await bob.ok("join", {"room": room, "since": sent[1]["id"]})
    assert "reset" not in by_id and by_id["messages"][-1]["pos"] == sent[2]["pos"]


async def test_a_position_older_than_what_is_kept_resets(server: ServerProcess, clients: ClientPool) -> None:
    """Edit/delete events are kept EVENT_RETENTION_SECONDS; once one is purged, a catch-up
    from before it would miss it: the client is told to resync instead."""
    room = new_room()
    alice = await clients.connect(server.url, token("alice"))
    await alice.ok("join", {"room": room})
    first = (await alice.ok("message", {"room": room, "text": "first"}))["message"]
    # An event old enough to be purged, written through the store the server uses: the
    # store's purge (at its first event write) drops it and raises the room's floor.
    store = SqliteStore(Path(server.env["CHATSVC_DATA_DIR"]) / "chatsvc.sqlite3")
    await store.open()
    try:
        old_id = id_at(int((time.time() - EVENT_RETENTION_SECONDS - 60) * 1000))
        purged = await store.append_event(RoomEvent(old_id, room, "edited", first["id"], {"id": first["id"]}))
    finally:
        await store.aclose()
    later = (await alice.ok("message", {"room": room, "text": "later"}))["message"]
    bob = await clients.connect(server.url, token("bob"))
    stale = await bob.ok("join", {"room": room, "since": first["pos"]})
    assert stale["reset"] is True and stale["pos"] == later["pos"]
    assert [m["text"] for m in stale["messages"]] == ["first", "later"]
    fresh = await bob.ok("join", {"room": room, "since": f"{split(first['pos'])[0]}:{purged.pos}"})
    assert fresh["reset"] is False and [m["text"] for m in fresh["messages"]] == ["later"]


async def test_a_replica_whose_bus_lost_messages_catches_up_by_position(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Two replicas on one SQLite file with no bus between them: every message of the other
    replica is one its live delivery lost (as in a Kafka outage). Positions come from the
    shared file, so a client of replica B that catches up from the last position it received
    gets exactly what it missed, in stream order; a message id since could not say that."""
    shared = tmp_path / "shared-data"
    env = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}
    a, b = (server_factory(name=f"replica{i}", data_dir=shared, **env) for i in range(2))
    room = new_room()
    async with ClientPool() as pool:
        on_a = await pool.connect(a.url, token("alice"))
        on_b = await pool.connect(b.url, token("bob"))
        watcher = await pool.connect(b.url, token("carol"))
        for client in (on_a, on_b, watcher):
            await client.ok("join", {"room": room})
        order = ["a1", "b1", "a2", "a3", "b2", "a4"]
        acked = {}
        for text in order:
            sender = on_a if text.startswith("a") else on_b
            acked[text] = (await sender.ok("message", {"room": room, "text": text}))["message"]
        # Live, carol on B saw only B's messages.
        live = [(await watcher.next("message"))["text"] for _ in range(2)]
        assert live == ["b1", "b2"]
        first_seen = acked["b1"]["pos"]
        caught = await watcher.ok("join", {"room": room, "since": first_seen})
    assert caught["reset"] is False
    assert [m["text"] for m in caught["messages"]] == ["a2", "a3", "b2", "a4"]
    assert [m["pos"] for m in caught["messages"]] == [acked[t]["pos"] for t in ("a2", "a3", "b2", "a4")]
    assert caught["pos"] == acked["a4"]["pos"]
