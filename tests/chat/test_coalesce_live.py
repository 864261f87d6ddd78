"""Big rooms end to end: a real ``chatsvc serve`` (big-room threshold 5), python-socketio
clients. Counts instead of per-user events in big rooms, per-user events in small ones."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.clients import ChatClient, ClientPool, running_server, until
from tests.support.servers import ServerProcess
from tests.support.tokens import token

BIG = 5
WINDOW = 0.5
BURST = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Big rooms from 5 members, a 500 ms presence window, typing off from 40; pings every
    second with a 1 s timeout, so a server stalled by a join burst drops sockets."""
    with running_server(
        tmp_path_factory.mktemp("bigrooms"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
        CHATSVC_BIG_ROOM_MEMBERS=str(BIG),
        CHATSVC_PRESENCE_COALESCE_MS=str(int(WINDOW * 1000)),
        CHATSVC_TYPING_OFF_MEMBERS="40",
        CHATSVC_PING_INTERVAL="1",
        CHATSVC_PING_TIMEOUT="1",
    ) as running:
        yield running


def new_room() -> str:
    return f"big-{uuid.uuid4().hex[:10]}"


class Stamped:
    """Every ``presence`` a client receives, with the time it arrived."""

    def __init__(self, client: ChatClient) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        client.sio.on("presence", self._on)

    async def _on(self, data: dict[str, Any]) -> None:
        self.events.append((time.monotonic(), data))


async def members(
    clients: ClientPool, server: ServerProcess, room: str, names: list[str]
) -> list[ChatClient]:
    """Clients ``names`` connected and joined to ``room``, one after another."""
    out = []
    for name in names:
        client = await clients.connect(server.url, token(name))
        await client.ok("join", {"room": room})
        out.append(client)
    return out


async def test_a_small_room_keeps_per_user_presence(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    alice, _, _, dave = await members(clients, server, room, ["alice", "bob", "carol", "dave"])  # 4 < BIG
    joins = [await alice.next("presence") for _ in range(3)]
    assert [(p["user"]["id"], p["action"], p["online"]) for p in joins] == [
        ("bob", "join", 2),
        ("carol", "join", 3),
        ("dave", "join", 4),
    ]
    await dave.disconnect()
    left = await alice.next("presence")
    assert (left["user"]["id"], left["action"], left["online"]) == ("dave", "leave", 3)


async def test_a_join_burst_in_a_big_room_is_one_count_per_window(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = new_room()
    first = await members(clients, server, room, [f"m{i}" for i in range(BIG)])
    observer = first[0]
    # Three per-user joins (the room still small), then the count of five.
    await observer.next("presence", where=lambda p: p["online"] == BIG and "user" not in p)
    stamped = Stamped(observer)
    # Cleared: from here every presence the observer gets is recorded with its time.
    observer.pending("presence")

    async def join(i: int) -> ChatClient:
        client = await clients.connect(server.url, token(f"burst{i}"))
        await client.ok("join", {"room": room})
        return client

    started = time.monotonic()
    burst = await asyncio.gather(*(join(i) for i in range(BURST)))
    took = time.monotonic() - started
    total = BIG + BURST
    await until(
        lambda: bool(stamped.events) and stamped.events[-1][1]["online"] == total, "the final count arrived"
    )
    await asyncio.sleep(WINDOW * 2)  # nothing more may come
    events = stamped.events
    assert all(set(data) == {"room", "online"} and data["room"] == room for _, data in events), events
    assert len(events) <= took / WINDOW + 2, (len(events), took)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(events)]
    # The server sends them at least a window apart; arrival jitter on a busy machine allowed.
    assert all(gap >= WINDOW * 0.4 for gap in gaps), gaps
    assert events[-1][1]["online"] == total
    # No socket was dropped (ping timeout 1 s) while the burst was served.
    assert not any(c.disconnected.is_set() for c in [*first, *burst])

    # Leaves are counted the same way.
    await asyncio.gather(*(c.disconnect() for c in burst[:10]))
    await until(lambda: stamped.events[-1][1]["online"] == total - 10, "the count after 10 leaves")
    assert all("user" not in data for _, data in stamped.events)


async def test_typing_in_a_big_room_is_capped_and_counted(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    crowd = await members(clients, server, room, [f"t{i}" for i in range(12)])
    observer = crowd[-1]
    for typist in crowd[:8]:
        await typist.ok("typing", {"room": room, "typing": True})
    latest = await observer.next("typing", where=lambda t: t.get("count") == 8, within=5)
    assert set(latest) == {"room", "users", "count"} and len(latest["users"]) == 3
    assert all(set(u) == {"id", "name"} for u in latest["users"])
    for typist in crowd[:8]:
        await typist.ok("typing", {"room": room, "typing": False})
    await observer.next("typing", where=lambda t: t.get("count") == 0, within=5)
    received = observer.pending("typing")
    assert all("user" not in t for t in received), received
    # At most one a second per room, so the 16 changes made only a few events.
    assert len(received) <= 4, received


async def test_read_receipts_in_a_big_room_are_aggregated(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    crowd = await members(clients, server, room, [f"r{i}" for i in range(8)])
    posted = await crowd[0].ok("message", {"room": room, "text": "read me"})
    message_id = posted["message"]["id"]
    for reader in crowd[1:7]:
        await reader.ok("read", {"room": room, "message_id": message_id})
    observer = crowd[7]
    total = 0
    while total < 6:
        read = await observer.next("read", within=5)
        assert set(read) == {"room", "readers", "count", "message_id"}, read
        assert read["message_id"] == message_id and len(read["readers"]) <= 3
        total += read["count"]
    assert total == 6


async def test_typing_is_off_in_a_huge_room(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()

    async def join(i: int) -> ChatClient:
        client = await clients.connect(server.url, token(f"h{i}"))
        await client.ok("join", {"room": room})
        return client

    crowd = await asyncio.gather(*(join(i) for i in range(40)))
    await crowd[0].ok("typing", {"room": room, "typing": True})
    await crowd[1].ok("message", {"room": room, "text": "after the typing"})
    await crowd[2].next("message", within=5)
    await asyncio.sleep(1.5)
    assert crowd[2].pending("typing") == []
