"""The room mode and sentiment part of :class:`~chatsvc.store.scylla.store.ScyllaStore`
(issue 25): one ``room_modes`` row per room (the surge flag flipped by a lightweight
transaction, so of several replicas deciding at once exactly one announces), and sentiment
counters per (room, UTC day) partition in minute and hour slots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence

from chatsvc.model.ids import timestamp_ms
from chatsvc.model.modes import RoomMode, SentimentCounts
from chatsvc.store.base import HOUR_MS, MINUTE_MS, bucket_of
from chatsvc.store.scylla.driver import Row, ScyllaSession

DAY_MS = 24 * HOUR_MS


class ScyllaModes:
    """:class:`~chatsvc.store.base.RoomModeStore` on CQL; mixed into ScyllaStore."""

    #: ScyllaStore's session.
    _db: ScyllaSession

    def _mode_cql(self, name: str, params: Sequence[object]) -> Awaitable[list[Row]]:
        return self._db.run(name, params)

    async def get_room_mode(self, room: str) -> RoomMode:
        """One row (nulls: the defaults)."""
        rows = await self._mode_cql("mode_get", (room,))
        if not rows:
            return RoomMode()
        seconds, surge = rows[0][0], rows[0][1]
        return RoomMode(int(seconds or 0), bool(surge))

    async def set_slow_mode(self, room: str, seconds: int) -> None:
        """An upsert of one cell: the surge flag is left alone."""
        await self._mode_cql("mode_slow", (seconds, room))

    async def set_surge(self, room: str, surge: bool) -> bool:
        """A lightweight transaction: one of concurrent identical flips applies (a missing
        row or null flag is "not in surge")."""
        rows = await self._mode_cql("mode_surge_on" if surge else "mode_surge_off", (room,))
        return bool(rows and rows[0][0])

    async def add_sentiment(self, room: str, sentiment: str, at_ms: int) -> None:
        """Two counter increments, the minute and the hour slot, in the day's partition."""
        day = at_ms // DAY_MS
        await asyncio.gather(
            self._mode_cql("sentiment_add", (room, day, "m", at_ms // MINUTE_MS, sentiment)),
            self._mode_cql("sentiment_add", (room, day, "h", at_ms // HOUR_MS, sentiment)),
        )

    async def count_after(self, room: str, after_id: str, cap: int) -> int:
        """Ids only, from ``after_id``'s bucket to now's (a surge window spans at most two)."""
        count = 0
        bucket, last = bucket_of(timestamp_ms(after_id)), bucket_of(int(time.time() * 1000))
        while bucket <= last and count < cap:
            count += len(await self._mode_cql("msg_ids_after", (room, bucket, after_id, cap - count)))
            bucket += 1
        return min(count, cap)

    async def sentiment_counts(self, room: str, now_ms: int) -> SentimentCounts:
        """The last 60 minute slots and 24 hour slots: a slice of today's partition and,
        when the window reaches back past midnight, of yesterday's."""
        total: dict[tuple[str, str], int] = {}
        reads = []
        for grain, floor_slot, width in (
            ("m", now_ms // MINUTE_MS - 59, MINUTE_MS),
            ("h", now_ms // HOUR_MS - 23, HOUR_MS),
        ):
            for day in sorted({floor_slot * width // DAY_MS, now_ms // DAY_MS}):
                reads.append((grain, self._mode_cql("sentiment_get", (room, day, grain, floor_slot))))
        for grain, rows in zip(
            (g for g, _ in reads), await asyncio.gather(*(r for _, r in reads)), strict=True
        ):
            for sentiment, n in rows:
                key = (grain, str(sentiment))
                total[key] = total.get(key, 0) + int(n or 0)
        return SentimentCounts(
            total.get(("m", "bullish"), 0),
            total.get(("m", "bearish"), 0),
            total.get(("h", "bullish"), 0),
            total.get(("h", "bearish"), 0),
        )
