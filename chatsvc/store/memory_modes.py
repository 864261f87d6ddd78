"""The room mode and sentiment part of :class:`~chatsvc.store.memory.MemoryStore` (issue 25)."""

from __future__ import annotations

from collections import Counter

from chatsvc.model.modes import RoomMode, SentimentCounts
from chatsvc.store.base import HOUR_MS, MINUTE_MS


class MemoryModes:
    """:class:`~chatsvc.store.base.RoomModeStore` in memory; mixed into MemoryStore."""

    def __init__(self) -> None:
        super().__init__()
        self._modes: dict[str, RoomMode] = {}
        #: room -> (grain, slot, sentiment) -> count; stale slots are dropped on each add.
        self._sentiment: dict[str, Counter[tuple[str, int, str]]] = {}

    async def get_room_mode(self, room: str) -> RoomMode:
        """The room's mode, or the default."""
        return self._modes.get(room, RoomMode())

    async def set_slow_mode(self, room: str, seconds: int) -> None:
        """Keep the surge flag."""
        self._modes[room] = RoomMode(seconds, self._modes.get(room, RoomMode()).surge)

    async def set_surge(self, room: str, surge: bool) -> bool:
        """True only when the flag flipped."""
        mode = self._modes.get(room, RoomMode())
        if mode.surge == surge:
            return False
        self._modes[room] = RoomMode(mode.slow_mode_seconds, surge)
        return True

    async def add_sentiment(self, room: str, sentiment: str, at_ms: int) -> None:
        """Count it in its minute and hour slots."""
        counts = self._sentiment.setdefault(room, Counter())
        minute, hour = at_ms // MINUTE_MS, at_ms // HOUR_MS
        counts[("m", minute, sentiment)] += 1
        counts[("h", hour, sentiment)] += 1
        for key in [
            k for k in counts if (k[0] == "m" and k[1] < minute - 60) or (k[0] == "h" and k[1] < hour - 24)
        ]:
            del counts[key]

    async def count_after(self, room: str, after_id: str, cap: int) -> int:
        """Counted on MemoryStore's sorted ids."""
        return min(cap, len(await self.after(room, after_id, cap)))  # type: ignore[attr-defined]

    async def sentiment_counts(self, room: str, now_ms: int) -> SentimentCounts:
        """Sums over the windows' slots."""
        counts = self._sentiment.get(room, Counter())
        floors = {"m": now_ms // MINUTE_MS - 59, "h": now_ms // HOUR_MS - 23}
        total: Counter[tuple[str, str]] = Counter()
        for (grain, slot, sentiment), n in counts.items():
            if slot >= floors[grain]:
                total[(grain, sentiment)] += n
        return SentimentCounts(
            total[("m", "bullish")], total[("m", "bearish")], total[("h", "bullish")], total[("h", "bearish")]
        )
