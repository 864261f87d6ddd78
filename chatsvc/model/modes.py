"""Room modes and market signals of a stock room (issue 25): slow and surge mode, the
rolling sentiment. Plain frozen values, like the rest of the model."""

from __future__ import annotations

from dataclasses import dataclass

#: The two marks a message may carry.
SENTIMENTS = ("bullish", "bearish")


@dataclass(frozen=True, slots=True)
class RoomMode:
    """A room's posting mode as stored: the slow mode a moderator set (0: off) and whether
    the surge monitor put the room in surge."""

    slow_mode_seconds: int = 0
    surge: bool = False


@dataclass(frozen=True, slots=True)
class SentimentCounts:
    """Bullish and bearish messages of a room over the last hour and the last day."""

    hour_bullish: int = 0
    hour_bearish: int = 0
    day_bullish: int = 0
    day_bearish: int = 0

    def wire(self) -> dict[str, dict[str, int]]:
        """``{hour: {bullish, bearish}, day: {bullish, bearish}}``."""
        return {
            "hour": {"bullish": self.hour_bullish, "bearish": self.hour_bearish},
            "day": {"bullish": self.day_bullish, "bearish": self.day_bearish},
        }
