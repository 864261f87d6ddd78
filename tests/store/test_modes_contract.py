"""The room mode and sentiment contract (issue 25): SQLite, the real CQL node, and memory."""

from __future__ import annotations

import asyncio
import time

from chatsvc.model.ids import id_at
from chatsvc.model.messages import Message
from chatsvc.model.modes import RoomMode, SentimentCounts
from chatsvc.store.base import HOUR_MS, MINUTE_MS, MessageStore
from chatsvc.store.memory import MemoryStore
from tests.store.conftest import StoreSpec

NOW_MS = int(time.time() * 1000)
DAY_MS = 24 * HOUR_MS


async def _tickers_and_sentiment(store: MessageStore, room: str) -> None:
    tagged = Message(
        id_at(NOW_MS - 900),
        room,
        "alice",
        "Alice",
        "$AAPL up",
        NOW_MS - 900,
        tickers=("AAPL", "BRK.B"),
        sentiment="bullish",
    )
    plain = Message(id_at(NOW_MS - 800), room, "bob", "Bob", "hi", NOW_MS - 800)
    stored, _ = await store.append(tagged)
    await store.append(plain)
    assert stored.tickers == ("AAPL", "BRK.B") and stored.sentiment == "bullish"
    got = await store.get(room, tagged.id)
    assert got is not None and got.tickers == ("AAPL", "BRK.B") and got.sentiment == "bullish"
    page = await store.history(room, before=None, limit=5)
    assert [(m.tickers, m.sentiment) for m in page.messages] == [((), None), (("AAPL", "BRK.B"), "bullish")]
    assert [m.tickers for m in await store.after(room, id_at(NOW_MS - 10_000), 5)] == [("AAPL", "BRK.B"), ()]
    edited = await store.edit(room, tagged.id, "now $TSLA", NOW_MS, tickers=("TSLA",))
    assert edited.tickers == ("TSLA",) and edited.sentiment == "bullish", "an edit keeps the sentiment"
    cleared = await store.edit(room, tagged.id, "no tags", NOW_MS + 1, tickers=())
    assert cleared.tickers == ()
    kept = await store.edit(room, plain.id, "text only", NOW_MS + 2)
    assert kept.tickers == ()
    again = await store.get(room, tagged.id)
    assert again is not None and again.tickers == () and again.text == "no tags"


async def _room_modes(store: MessageStore, room: str) -> None:
    assert await store.get_room_mode(room) == RoomMode()
    await store.set_slow_mode(room, 30)
    assert await store.get_room_mode(room) == RoomMode(30, False)
    assert await store.set_surge(room, True)
    assert not await store.set_surge(room, True), "already in surge: no second flip"
    assert await store.get_room_mode(room) == RoomMode(30, True)
    await store.set_slow_mode(room, 0)
    assert await store.get_room_mode(room) == RoomMode(0, True), "slow mode keeps the surge flag"
    assert await store.set_surge(room, False)
    assert not await store.set_surge(room, False)
    assert await store.get_room_mode(room) == RoomMode(0, False)
    fresh = f"{room}-fresh"
    assert not await store.set_surge(fresh, False), "a room never in surge does not leave it"
    assert await store.set_surge(fresh, True), "the first surge of a room without a row flips"


async def _sentiment(store: MessageStore, room: str) -> None:
    now = NOW_MS
    assert await store.sentiment_counts(room, now) == SentimentCounts()
    await store.add_sentiment(room, "bullish", now - 1000)
    await store.add_sentiment(room, "bullish", now - 30 * MINUTE_MS)
    await store.add_sentiment(room, "bearish", now - 2 * HOUR_MS)
    await store.add_sentiment(room, "bearish", now - 2 * DAY_MS)  # outside both windows
    counts = await store.sentiment_counts(room, now)
    assert counts == SentimentCounts(hour_bullish=2, hour_bearish=0, day_bullish=2, day_bearish=1)
    # Two hours on, the last hour is empty and the day still counts them.
    later = await store.sentiment_counts(room, now + 2 * HOUR_MS)
    assert later == SentimentCounts(0, 0, 2, 1)
    assert await store.sentiment_counts(f"{room}-other", now) == SentimentCounts()


async def _count_after(store: MessageStore, room: str) -> None:
    for i in range(5):
        await store.append(
            Message(id_at(NOW_MS - 5000 + i * 1000), room, "u", "U", f"m{i}", NOW_MS - 5000 + i * 1000)
        )
    assert await store.count_after(room, id_at(NOW_MS - 10_000), 100) == 5
    assert await store.count_after(room, id_at(NOW_MS - 2500), 100) == 2
    assert await store.count_after(room, id_at(NOW_MS - 10_000), 3) == 3, "capped"
    assert await store.count_after(f"{room}-none", id_at(NOW_MS - 10_000), 3) == 0


async def test_count_after_counts_the_surge_window(store: MessageStore, room: str) -> None:
    await _count_after(store, room)


async def test_messages_keep_tickers_and_sentiment(store: MessageStore, room: str) -> None:
    await _tickers_and_sentiment(store, room)


async def test_room_mode_slow_and_surge(store: MessageStore, room: str) -> None:
    await _room_modes(store, room)


async def test_sentiment_counts_the_last_hour_and_day(store: MessageStore, room: str) -> None:
    await _sentiment(store, room)


async def test_concurrent_surge_flips_from_two_store_objects_report_once(spec: StoreSpec, room: str) -> None:
    """Replicas deciding the same moment: exactly one flip reports the change, each way."""
    first, second = spec.make(), spec.make()
    await first.open()
    await second.open()
    try:
        await first.migrate()
        for surge in (True, False, True):
            flips = await asyncio.gather(
                *(s.set_surge(room, surge) for s in (first, second) for _ in range(3))
            )
            assert sum(flips) == 1, flips
        counted = await asyncio.gather(
            *(s.add_sentiment(room, "bearish", NOW_MS - i) for i in range(10) for s in (first, second))
        )
        assert len(counted) == 20
        assert (await second.sentiment_counts(room, NOW_MS)).hour_bearish == 20
    finally:
        await first.aclose()
        await second.aclose()


async def test_memory_store_keeps_the_same_contract() -> None:
    store = MemoryStore()
    await store.open()
    await _tickers_and_sentiment(store, "r1")
    await _room_modes(store, "r2")
    await _sentiment(store, "r3")
    await _count_after(store, "r4")
