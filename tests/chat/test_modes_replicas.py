"""Issue 25's per-user rules across two replicas over the real Kafka broker, real clients:
one user with a socket on each replica is slowed and caught repeating itself as if it had
one socket, and one who moves to the other replica stays slowed (chatsvc.chat.crossposts).
Each replica's second post waits until that replica delivered the first one to a socket
there: the rules are stale by that one bus hop (README, "Slow mode, surge mode, cashtags
and sentiment"), which this test does not race."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.bus.helpers import new_topic, replica_env
from tests.conftest import ServerFactory
from tests.support.clients import ChatClient, ClientPool
from tests.support.replicas import FAST, until_delivered
from tests.support.servers import ServerProcess
from tests.support.services import kafka_env
from tests.support.tokens import token

WINDOW_SECONDS = 30


@pytest.fixture
def replicas(server_factory: ServerFactory, tmp_path: Path) -> tuple[ServerProcess, ServerProcess]:
    env = replica_env(kafka_env(), tls=False, topic=new_topic()) | FAST
    env["CHATSVC_SPAM_DUPLICATE_WINDOW_SECONDS"] = str(WINDOW_SECONDS)
    shared = tmp_path / "shared-data"  # one SQLite history, written by the history writer
    a = server_factory(name="ra", data_dir=shared, CHATSVC_REPLICA_ID="ra", **env)
    b = server_factory(name="rb", data_dir=shared, CHATSVC_REPLICA_ID="rb", **env)
    for replica in (a, b):
        replica.wait_http("/readyz", timeout=60)
    return a, b


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def room() -> str:
    return f"stock:{uuid.uuid4().hex[:8]}"


async def delivered(client: ChatClient, message_id: str) -> None:
    """``client`` got the message: its replica applied the record."""
    await client.next("message", where=lambda m: m["id"] == message_id, within=15)


async def two_sockets(
    pool: ClientPool, replicas: tuple[ServerProcess, ServerProcess], sub: str, *rooms: str
) -> tuple[ChatClient, ChatClient]:
    """One user's socket on each replica, in ``rooms``, the replicas hearing each other."""
    ra, rb = replicas
    on_a = await pool.connect(ra.url, token(sub))
    on_b = await pool.connect(rb.url, token(sub))
    probe = await pool.connect(ra.url, token(user("probe")))
    for client in (on_a, on_b, probe):
        for name in rooms:
            await client.ok("join", {"room": name})
    await until_delivered(probe, on_b, rooms[0])
    return on_a, on_b


async def test_slow_mode_holds_for_one_user_posting_through_two_replicas(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    ra, rb = replicas
    lobby = room()
    async with ClientPool() as pool:
        alice_a, alice_b = await two_sockets(pool, replicas, user("alice"), lobby)
        bob = await pool.connect(rb.url, token(user("bob")))
        await bob.ok("join", {"room": lobby})
        admin = await pool.connect(ra.url, token(user("admin"), roles=["admin"]))
        await admin.ok("set_slow_mode", {"room": lobby, "seconds": 30})
        for client in (alice_a, alice_b, bob):
            assert (await client.next("room_mode", within=10))["slow_mode_seconds"] == 30
        await asyncio.sleep(1.1)  # each replica re-reads the mode within a second

        first = await alice_a.ok("message", {"room": lobby, "text": "one"})
        await delivered(alice_b, first["message"]["id"])
        refused = await alice_b.call("message", {"room": lobby, "text": "two"})
        assert refused["ok"] is False and refused["error"]["code"] == "slow_mode", refused
        retry = refused["error"]["retry_after_ms"]
        assert isinstance(retry, int) and 25_000 < retry <= 30_000, retry
        assert await alice_a.error("message", {"room": lobby, "text": "two"}) == "slow_mode"
        # Another user on replica b is not slowed by alice's post; and b's post holds on a.
        await bob.ok("message", {"room": lobby, "text": "bob one"})
        history = await bob.ok("history", {"room": lobby})
        texts = [m["text"] for m in history["messages"]]
        assert "two" not in texts and texts.count("one") == 1, texts

        # A user with a socket on a only, who then connects to b: b knew the room was slowed
        # (its room_mode record) and kept carol's post, though carol had no socket there.
        carol_a = await pool.connect(ra.url, token(carol := user("carol")))
        await carol_a.ok("join", {"room": lobby})
        said = await carol_a.ok("message", {"room": lobby, "text": "carol one"})
        await delivered(bob, said["message"]["id"])
        carol_b = await pool.connect(rb.url, token(carol))
        await carol_b.ok("join", {"room": lobby})
        assert await carol_b.error("message", {"room": lobby, "text": "carol two"}) == "slow_mode"

        # The other way round, in a second room: b lets a post through, a refuses the next.
        other = room()
        for client in (alice_a, alice_b):
            await client.ok("join", {"room": other})
        await admin.ok("set_slow_mode", {"room": other, "seconds": 30})
        for client in (alice_a, alice_b):
            assert (await client.next("room_mode", where=lambda e: e["room"] == other, within=10))[
                "slow_mode_seconds"
            ] == 30
        await asyncio.sleep(1.1)
        posted = await alice_b.ok("message", {"room": other, "text": "from b"})
        await delivered(alice_a, posted["message"]["id"])
        assert await alice_a.error("message", {"room": other, "text": "from a"}) == "slow_mode"


async def test_the_duplicate_rule_holds_for_one_user_posting_through_two_replicas(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    first_room, second_room = room(), room()
    async with ClientPool() as pool:
        alice_a, alice_b = await two_sockets(pool, replicas, user("alice"), first_room, second_room)
        text = "Load up on $XYZ before the news!!"
        sent = await alice_a.ok("message", {"room": first_room, "text": text, "client_msg_id": "c1"})
        await delivered(alice_b, sent["message"]["id"])
        # The same words in another room through replica b: refused as a duplicate.
        copy = await alice_b.call("message", {"room": second_room, "text": "load up on XYZ before the news"})
        assert copy["ok"] is False and copy["error"]["code"] == "spam", copy
        assert copy["error"]["rule"] == "duplicate"
        # A retry of the original through b (its room and client_msg_id) is acked the original.
        retry = await alice_b.ok("message", {"room": first_room, "text": text, "client_msg_id": "c1"})
        assert retry["duplicate"] is True and retry["message"]["id"] == sent["message"]["id"]
        # Other words pass on b; repeating them on a is refused in turn.
        other = await alice_b.ok("message", {"room": second_room, "text": "quite different words here"})
        await delivered(alice_a, other["message"]["id"])
        again = await alice_a.call("message", {"room": first_room, "text": "Quite different words, here."})
        assert again["ok"] is False and again["error"]["rule"] == "duplicate", again
        # Another user may say the same thing.
        bob = await pool.connect(replicas[1].url, token(user("bob")))
        await bob.ok("join", {"room": second_room})
        await bob.ok("message", {"room": second_room, "text": text})
