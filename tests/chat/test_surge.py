"""Surge mode on a real server (issue 25): a bounded burst slows the room down by itself,
and the room leaves surge once the rate falls back; python-socketio clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.clients import ClientPool, running_server
from tests.support.replicas import FAST
from tests.support.servers import ServerProcess
from tests.support.tokens import token

#: Above 2 messages a second over 3 s (more than 6 in the window) the room surges.
SURGE = {"CHATSVC_SURGE_RATE": "2", "CHATSVC_SURGE_WINDOW": "3", "CHATSVC_SURGE_SLOW_MODE": "4"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("surge"), **SURGE, **FAST) as running:
        yield running


async def test_a_burst_enters_surge_and_the_room_leaves_it_when_calm(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = f"stock:{uuid.uuid4().hex[:8]}"
    posters = [await clients.connect(server.url, token(f"p{i}-{uuid.uuid4().hex[:6]}")) for i in range(4)]
    watcher = await clients.connect(server.url, token(f"w-{uuid.uuid4().hex[:6]}"))
    for client in (*posters, watcher):
        await client.ok("join", {"room": room})
    # Below the threshold: 6 messages in the window are not a surge.
    for i in range(6):
        await posters[i % 4].ok("message", {"room": room, "text": f"calm {i}"})
    assert (await watcher.ok("room_info", {"room": room}))["surge"] is False
    # The burst: bounded, 12 messages from four users.
    for i in range(12):
        ack = await posters[i % 4].call("message", {"room": room, "text": f"burst {i}"})
        if not ack["ok"]:
            assert ack["error"]["code"] == "slow_mode", ack
    entered = await watcher.next("room_mode", within=15)
    assert {k: entered[k] for k in ("room", "slow_mode_seconds", "reason")} == {
        "room": room,
        "slow_mode_seconds": 4,
        "reason": "surge",
    }
    info = await watcher.ok("room_info", {"room": room})
    assert info["surge"] is True and info["slow_mode_seconds"] == 4
    # In surge each user posts once per 4 s: the second post in a row is refused.
    await watcher.ok("message", {"room": room, "text": "one"})
    refused = await watcher.call("message", {"room": room, "text": "two"})
    assert refused["error"]["code"] == "slow_mode" and 0 < refused["error"]["retry_after_ms"] <= 4000
    # Nobody posts: the window empties and the room leaves surge by itself.
    left = await watcher.next("room_mode", within=20)
    assert (left["reason"], left["slow_mode_seconds"]) == ("surge_end", 0)
    info = await watcher.ok("room_info", {"room": room})
    assert info["surge"] is False and info["slow_mode_seconds"] == 0
    # The changes are in the room's stream: a join from the start replays both, once.
    caught = await watcher.ok("join", {"room": room, "since": f"{info_epoch(entered)}:0"})
    reasons = [e["reason"] for e in caught["events"] if e["event"] == "room_mode"]
    assert reasons == ["surge", "surge_end"]


def info_epoch(event: dict[str, str]) -> str:
    """The stream epoch of a delivered event's position."""
    return event["pos"].split(":")[0]
