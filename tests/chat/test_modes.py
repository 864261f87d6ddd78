"""Slow mode, cashtags, sentiment and room_info on a real server (issue 25),
python-socketio clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.support.clients import ClientPool, running_server
from tests.support.replicas import FAST
from tests.support.servers import ServerProcess
from tests.support.tokens import token

ZERO = {"hour": {"bullish": 0, "bearish": 0}, "day": {"bullish": 0, "bearish": 0}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("modes"),
        CHATSVC_MAX_TICKERS="3",
        CHATSVC_SENTIMENT_EVENT_MS="500",
        CHATSVC_SLOW_MODE_MAX="600",
        CHATSVC_SURGE_RATE="0",  # this module's bursts must not surge; test_surge.py does
        **FAST,
    ) as running:
        yield running


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_room() -> str:
    return f"stock:{uuid.uuid4().hex[:8]}"


async def test_slow_mode_refuses_with_retry_after_and_is_replayed(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = new_room()
    admin = await clients.connect(server.url, token(user("admin"), roles=["admin"]))
    bob = await clients.connect(server.url, token(user("bob")))
    await admin.ok("join", {"room": room})
    first = await bob.ok("join", {"room": room})
    assert first["slow_mode_seconds"] == 0
    since = (await bob.ok("message", {"room": room, "text": "before"}))["message"]["pos"]
    assert await bob.error("set_slow_mode", {"room": room, "seconds": 5}) == "forbidden"
    for bad in (-1, 601, "5", True, None, 2.5):
        assert await admin.error("set_slow_mode", {"room": room, "seconds": bad}) == "invalid_payload", bad
    ack = await admin.ok("set_slow_mode", {"room": room, "seconds": 2})
    assert ack == {"ok": True, "room": room, "slow_mode_seconds": 2, "surge": False}
    event = await bob.next("room_mode")
    assert {k: event[k] for k in ("room", "slow_mode_seconds", "reason")} == {
        "room": room,
        "slow_mode_seconds": 2,
        "reason": "moderator",
    }
    assert "pos" in event and "event_id" in event
    await bob.ok("message", {"room": room, "text": "one"})
    refused = await bob.call("message", {"room": room, "text": "two"})
    assert refused["ok"] is False and refused["error"]["code"] == "slow_mode"
    retry = refused["error"]["retry_after_ms"]
    assert isinstance(retry, int) and 0 < retry <= 2000
    history = await bob.ok("history", {"room": room})
    assert "two" not in [m["text"] for m in history["messages"]], "a refused post stores nothing"
    # Admins are not slowed.
    for i in range(3):
        await admin.ok("message", {"room": room, "text": f"admin {i}"})
    await asyncio.sleep(retry / 1000 + 0.05)
    await bob.ok("message", {"room": room, "text": "two, later"})
    assert (await bob.ok("room_info", {"room": room}))["slow_mode_seconds"] == 2
    # A client that joins from a position before the change gets it in its events.
    carol = await clients.connect(server.url, token(user("carol")))
    caught = await carol.ok("join", {"room": room, "since": since})
    modes = [e for e in caught["events"] if e["event"] == "room_mode"]
    assert [(e["slow_mode_seconds"], e["reason"]) for e in modes] == [(2, "moderator")]
    assert caught["slow_mode_seconds"] == 2
    await admin.ok("set_slow_mode", {"room": room, "seconds": 0})
    assert (await bob.next("room_mode"))["slow_mode_seconds"] == 0
    await asyncio.sleep(1.1)  # the mode is cached up to a second
    for i in range(3):
        await bob.ok("message", {"room": room, "text": f"free {i}"})


async def test_slow_mode_in_private_rooms_by_owners_and_moderators(
    server: ServerProcess, clients: ClientPool
) -> None:
    owner, member = user("own"), user("mem")
    o = await clients.connect(server.url, token(owner))
    m = await clients.connect(server.url, token(member))
    room = (await o.ok("create_room", {"title": "Desk", "members": [member]}))["room"]
    assert await m.error("set_slow_mode", {"room": room, "seconds": 30}) == "forbidden"
    await o.ok("set_slow_mode", {"room": room, "seconds": 30})
    assert (await m.next("room_mode"))["slow_mode_seconds"] == 30
    await m.ok("message", {"room": room, "text": "one"})
    assert await m.error("message", {"room": room, "text": "two"}) == "slow_mode"
    await o.ok("message", {"room": room, "text": "owner one"})
    await o.ok("message", {"room": room, "text": "owner two"})  # owners are not slowed
    outsider = await clients.connect(server.url, token(user("out")))
    assert await outsider.error("set_slow_mode", {"room": room, "seconds": 0}) == "forbidden"
    assert await outsider.error("room_info", {"room": room}) == "forbidden"
    info = await m.ok("room_info", {"room": room})
    assert info["sentiment"] is None and info["slow_mode_seconds"] == 30


async def test_cashtags_are_extracted_bounded_and_re_extracted_on_edit(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token(user("alice")))
    bob = await clients.connect(server.url, token(user("bob")))
    await alice.ok("join", {"room": room})
    await bob.ok("join", {"room": room})
    text = "$AAPL vs $005930, $brk.b; not US$5, a$b, $TOOLONGX or $12345; $AAPL again"
    sent = (await alice.ok("message", {"room": room, "text": text}))["message"]
    assert sent["tickers"] == ["AAPL", "005930", "BRK.B"]
    assert (await bob.next("message"))["tickers"] == ["AAPL", "005930", "BRK.B"]
    many = (await alice.ok("message", {"room": room, "text": "$A $B $C $D $E"}))["message"]
    assert many["tickers"] == ["A", "B", "C"], "CHATSVC_MAX_TICKERS=3 keeps the first three"
    plain = (await alice.ok("message", {"room": room, "text": "no tags"}))["message"]
    assert "tickers" not in plain
    edited = (await alice.ok("edit", {"room": room, "id": sent["id"], "text": "now $TSLA"}))["message"]
    assert edited["tickers"] == ["TSLA"]
    assert (await bob.next("message_edited"))["tickers"] == ["TSLA"]
    retagged = (await alice.ok("edit", {"room": room, "id": plain["id"], "text": "$NVDA"}))["message"]
    assert retagged["tickers"] == ["NVDA"]
    untagged = (await alice.ok("edit", {"room": room, "id": many["id"], "text": "gone"}))["message"]
    assert "tickers" not in untagged
    history = {m["id"]: m for m in (await bob.ok("history", {"room": room}))["messages"]}
    assert history[sent["id"]]["tickers"] == ["TSLA"]
    assert history[plain["id"]]["tickers"] == ["NVDA"]
    assert "tickers" not in history[many["id"]]
    marked = (await alice.ok("message", {"room": room, "text": "$AMD", "sentiment": "bearish"}))["message"]
    await alice.ok("delete", {"room": room, "id": marked["id"]})
    gone = {m["id"]: m for m in (await bob.ok("history", {"room": room}))["messages"]}[marked["id"]]
    assert gone["deleted"] is True and "tickers" not in gone and "sentiment" not in gone


async def test_sentiment_is_validated_counted_and_broadcast_coalesced(
    server: ServerProcess, clients: ClientPool
) -> None:
    room = new_room()
    alice = await clients.connect(server.url, token(user("alice")))
    bob = await clients.connect(server.url, token(user("bob")))
    assert (await alice.ok("join", {"room": room}))["sentiment"] == ZERO
    await bob.ok("join", {"room": room})
    for bad in ("neutral", "BULLISH", 1, ["bullish"], {"x": 1}):
        assert (
            await alice.error("message", {"room": room, "text": "x", "sentiment": bad}) == "invalid_payload"
        )
    assert (await bob.ok("history", {"room": room}))["messages"] == [], "refused posts store nothing"
    sent = (await alice.ok("message", {"room": room, "text": "long", "sentiment": "bullish"}))["message"]
    assert sent["sentiment"] == "bullish"
    assert (await bob.next("message"))["sentiment"] == "bullish"
    event = await bob.next("sentiment", within=10)
    assert event == {"room": room, "hour": {"bullish": 1, "bearish": 0}, "day": {"bullish": 1, "bearish": 0}}
    # A burst: fewer events than messages, the last with the final counts.
    burst = 10
    for i in range(burst):
        mark = "bearish" if i % 2 else "bullish"
        await alice.ok("message", {"room": room, "text": f"b{i}", "sentiment": mark})
    final = {"bullish": 6, "bearish": 5}
    seen = []
    while not seen or seen[-1]["hour"] != final:
        seen.append(await bob.next("sentiment", within=10))
    assert len(seen) < burst, seen
    assert seen[-1]["day"] == final
    await asyncio.sleep(1.2)
    assert bob.pending("sentiment") == [], "nothing changed: no more events"
    info = await bob.ok("room_info", {"room": room})
    assert info["sentiment"]["hour"] == final
    plain = (await alice.ok("message", {"room": room, "text": "no mark"}))["message"]
    assert "sentiment" not in plain
    edited = (await alice.ok("edit", {"room": room, "id": sent["id"], "text": "still long"}))["message"]
    assert edited["sentiment"] == "bullish", "an edit keeps the sentiment"


async def test_room_info_counts_online_pins_and_mode(server: ServerProcess, clients: ClientPool) -> None:
    room = new_room()
    admin = await clients.connect(server.url, token(user("admin"), roles=["admin"]))
    bob = await clients.connect(server.url, token(user("bob")))
    await admin.ok("join", {"room": room})
    sent = (await admin.ok("message", {"room": room, "text": "pin me"}))["message"]
    await admin.ok("pin", {"room": room, "id": sent["id"]})
    info = await bob.ok("room_info", {"room": room})  # no join needed, like history
    assert info == {
        "ok": True,
        "room": room,
        "online": 1,
        "slow_mode_seconds": 0,
        "surge": False,
        "pins": 1,
        "sentiment": ZERO,
    }
    await bob.ok("join", {"room": room})
    assert (await bob.ok("room_info", {"room": room}))["online"] == 2
    assert await bob.error("room_info", {"room": "bad room!"}) == "invalid_payload"
    assert await bob.error("room_info", {}) == "invalid_payload"
    limited = await clients.connect(server.url, token(user("lim"), rooms=["stock:only"]))
    assert await limited.error("room_info", {"room": room}) == "forbidden"
