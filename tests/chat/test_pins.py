"""Pins on a real server (issue 25 item 4), python-socketio clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.clients import ClientPool, running_server
from tests.support.replicas import FAST
from tests.support.servers import ServerProcess
from tests.support.tokens import token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("pins"), CHATSVC_MAX_PINS="2", **FAST) as running:
        yield running


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_admins_pin_in_public_rooms_events_listed_and_replayed(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = f"pin-{uuid.uuid4().hex[:8]}"
    admin = await clients.connect(server.url, token(user("admin"), roles=["admin"]))
    bob = await clients.connect(server.url, token(user("bob")))
    await admin.ok("join", {"room": room})
    await bob.ok("join", {"room": room})
    sent = [(await bob.ok("message", {"room": room, "text": f"m{i}"}))["message"] for i in range(3)]
    since = sent[-1]["pos"]
    assert await bob.error("pin", {"room": room, "id": sent[0]["id"]}) == "forbidden"
    ack = await admin.ok("pin", {"room": room, "id": sent[0]["id"]})
    assert ack["changed"] is True
    event = await bob.next("pinned")
    assert event["id"] == sent[0]["id"] and event["room"] == room and "pos" in event
    assert (await admin.ok("pin", {"room": room, "id": sent[0]["id"]}))["changed"] is False
    await admin.ok("pin", {"room": room, "id": sent[1]["id"]})
    assert await admin.error("pin", {"room": room, "id": sent[2]["id"]}) == "pin_limit"
    listed = await bob.ok("pins", {"room": room})
    assert [p["message"]["id"] for p in listed["pins"]] == [sent[1]["id"], sent[0]["id"]]
    await admin.ok("unpin", {"room": room, "id": sent[1]["id"]})
    assert (await bob.next("unpinned"))["id"] == sent[1]["id"]
    await bob.ok("delete", {"room": room, "id": sent[0]["id"]})
    assert (await bob.ok("pins", {"room": room}))["pins"] == [], "a deleted message drops out"
    missing = "01J00000000000000000000000"
    assert await admin.error("pin", {"room": room, "id": missing}) == "not_found"
    assert await admin.error("pin", {"room": room, "id": "x"}) == "invalid_payload"
    carol = await clients.connect(server.url, token(user("carol")))
    caught = await carol.ok("join", {"room": room, "since": since})
    kinds = [(e["event"], e["id"]) for e in caught["events"] if e["event"] in ("pinned", "unpinned")]
    assert kinds == [
        ("pinned", sent[0]["id"]),
        ("pinned", sent[1]["id"]),
        ("unpinned", sent[1]["id"]),
        ("unpinned", sent[0]["id"]),  # its message was deleted
    ]


async def test_owners_and_moderators_pin_in_private_rooms_members_do_not(
    server: ServerProcess, clients: ClientPool
) -> None:
    owner, member = user("own"), user("mem")
    o = await clients.connect(server.url, token(owner))
    m = await clients.connect(server.url, token(member))
    room = (await o.ok("create_room", {"title": "Desk", "members": [member]}))["room"]
    sent = (await m.ok("message", {"room": room, "text": "pin me"}))["message"]
    assert await m.error("pin", {"room": room, "id": sent["id"]}) == "forbidden"
    assert (await o.ok("pin", {"room": room, "id": sent["id"]}))["changed"] is True
    assert (await m.next("pinned"))["id"] == sent["id"]
    outsider = await clients.connect(server.url, token(user("out")))
    assert await outsider.error("pins", {"room": room}) == "forbidden"
