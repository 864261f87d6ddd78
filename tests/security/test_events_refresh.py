"""Issue 22, item 7: ``refresh`` to a token whose ``rooms`` claim excludes a joined room
takes the socket out of that room (``kicked {room, reason}``, a presence leave); the
socket can no longer send there, and stays in the rooms the new token allows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.clients import TRANSPORTS, ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.tokens import token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("refresh"),
        CHATSVC_RATE_LIMIT_PER_SECOND="1000",
        CHATSVC_RATE_LIMIT_BURST="1000",
    ) as running:
        yield running


@pytest.fixture
async def clients() -> AsyncIterator[ClientPool]:
    async with ClientPool() as pool:
        yield pool


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refresh_leaves_rooms_the_new_token_forbids(
    server: ServerProcess, clients: ClientPool, transport: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    user, kept, dropped, pattern_room = f"alice{tag}", f"keep-{tag}", f"drop-{tag}", f"stock:{tag}"
    alice = await clients.connect(
        server.url, token(user, rooms=[kept, dropped, "stock:*"]), transport=transport
    )
    bob = await clients.connect(server.url, token(f"bob{tag}"))
    for room in (kept, dropped, pattern_room):
        await alice.ok("join", {"room": room})
    await bob.ok("join", {"room": dropped})

    ack = await alice.ok("refresh", {"token": token(user, rooms=[kept], ttl=900)})
    assert ack["expires_at"]
    kicked = [await alice.next("kicked"), await alice.next("kicked")]
    assert sorted(k["room"] for k in kicked) == sorted([dropped, pattern_room])
    assert all(isinstance(k["reason"], str) and k["reason"] for k in kicked)
    leave = await bob.next("presence", where=lambda p: p["user"]["id"] == user and p["action"] == "leave")
    assert leave["room"] == dropped and leave["online"] == 1

    assert await alice.error("message", {"room": dropped, "text": "still here?"}) == "not_in_room"
    assert await alice.error("join", {"room": dropped}) == "forbidden"
    await alice.ok("message", {"room": kept, "text": "kept"})
    await bob.ok("message", {"room": dropped, "text": "not for alice"})

    # A refresh that allows everything it had keeps every room.
    await alice.ok("refresh", {"token": token(user)})
    await alice.ok("message", {"room": kept, "text": "still kept"})
    assert not alice.pending("kicked")
    # bob's message would have reached alice's socket before these acks: it did not.
    assert not alice.pending("message")
