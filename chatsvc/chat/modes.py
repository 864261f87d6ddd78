"""Stock-room modes and signals (issue 25): slow and surge mode, cashtags, sentiment and
``room_info``; what the namespace calls on the send path, on ``join`` and ``edit``, and the
client events ``set_slow_mode`` and ``room_info``. The parts live in chatsvc.chat.slowmode,
surge, tickers and sentiment; this module wires them and runs their background loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chatsvc.auth.identity import Identity
from chatsvc.chat.sentiment import SentimentBoard
from chatsvc.chat.service import ChatService
from chatsvc.chat.slowmode import Moderates, SlowModes
from chatsvc.chat.surge import SurgeMonitor
from chatsvc.chat.tickers import Cashtags, sentiment
from chatsvc.errors import Forbidden, InvalidPayload
from chatsvc.model.messages import Message
from chatsvc.settings import ModeSettings

log = logging.getLogger(__name__)

Ack = dict[str, Any]
#: The namespace's room resolution: the payload's room for this connection, or an error.
RoomOf = Callable[[Any, dict[str, Any]], str]
Handler = Callable[[str, Any, dict[str, Any]], Awaitable[Ack]]
#: The background loop's period, and its longest wait after failures.
TICK_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Admitted:
    """What a post may carry: its cashtags and sentiment."""

    tickers: tuple[str, ...]
    sentiment: str | None


class RoomModes:
    """Slow/surge mode, cashtags, sentiment and room_info for the namespace and admin API."""

    def __init__(
        self,
        service: ChatService,
        settings: ModeSettings,
        *,
        online: Callable[[str], Awaitable[int]],
        moderates: Moderates | None,
        pins_max: int,
    ) -> None:
        store = service.message_store
        self._service = service
        self._store = store
        self._settings = settings
        self._online = online
        self._pins_max = pins_max
        self._cashtags = Cashtags(settings.cashtag_pattern, settings.tickers_per_message)
        self.slow = SlowModes(service, store, settings, moderates)
        self.surge = SurgeMonitor(store, self.slow, settings)
        self.sentiment = SentimentBoard(service, store)

    # -- the send path, join and edit -------------------------------------------------------

    def tickers(self, text: str) -> tuple[str, ...]:
        """The cashtags of ``text``."""
        return self._cashtags.extract(text)

    async def admit(self, room: str, author: Identity, text: str, payload: dict[str, Any]) -> Admitted:
        """Before a post is stored: validate ``sentiment``, enforce slow mode (``slow_mode``
        with ``retry_after_ms``), extract the cashtags."""
        mark = sentiment(payload) if "sentiment" in payload else None  # absent reads as null
        await self.slow.check(room, author)
        return Admitted(self._cashtags.extract(text), mark)

    async def posted(self, message: Message, created: bool) -> None:
        """After a post is stored: count it for surge and sentiment (new messages only)."""
        if created:
            self.surge.posted(message.room)
            if message.sentiment is not None:  # the board counts only marked messages
                await self.sentiment.posted(message)

    async def join_info(self, room: str) -> Ack:
        """What ``join`` adds: the room's slow mode and (public rooms) sentiment."""
        mode = await self.slow.mode(room)
        return {"slow_mode_seconds": self.slow.seconds(mode), "sentiment": await self.sentiment.counts(room)}

    async def info(self, room: str) -> Ack:
        """``room_info``'s fields: online (cluster-wide), slow mode, surge, pins, sentiment."""
        mode = await self.slow.mode(room)
        pins = await self._store.list_pins(room, self._pins_max + 1)
        return {
            "room": room,
            "online": await self._online(room),
            "slow_mode_seconds": self.slow.seconds(mode),
            "surge": mode.surge,
            "pins": len(pins),
            "sentiment": await self.sentiment.counts(room),
        }

    async def set_slow_mode(self, room: str, seconds: int, reason: str) -> Ack:
        """Set the moderators' interval (0: off) and announce it; the mode now in force."""
        if not 0 <= seconds <= self._settings.slow_mode_max_seconds:
            raise InvalidPayload(f"'seconds' must be 0..{self._settings.slow_mode_max_seconds}")
        mode = await self.slow.set(room, seconds, reason)
        return {"room": room, "slow_mode_seconds": self.slow.seconds(mode), "surge": mode.surge}

    # -- client events ------------------------------------------------------------------------

    def handlers(self, allowed: RoomOf) -> dict[str, Handler]:
        """``set_slow_mode`` and ``room_info``, resolving rooms with ``allowed``."""

        async def set_slow_mode(sid: str, conn: Any, payload: dict[str, Any]) -> Ack:
            room = allowed(conn, payload)
            seconds = payload.get("seconds")
            if not isinstance(seconds, int) or isinstance(seconds, bool):
                raise InvalidPayload(
                    f"'seconds' must be an integer 0..{self._settings.slow_mode_max_seconds}"
                )
            if not await self.slow.moderates(room, conn.identity):
                raise Forbidden("only the room's owners and moderators (public rooms: admins) set slow mode")
            await self._service.epoch()
            return {"ok": True, **await self.set_slow_mode(room, seconds, "moderator")}

        async def room_info(sid: str, conn: Any, payload: dict[str, Any]) -> Ack:
            room = allowed(conn, payload)
            return {"ok": True, **await self.info(room)}

        return {"set_slow_mode": set_slow_mode, "room_info": room_info}

    # -- background -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Evaluate surge every second and flush sentiment every CHATSVC_SENTIMENT_EVENT_MS,
        until cancelled; a failing round backs off exponentially (capped), logged once."""
        flush_every = self._settings.sentiment_event_ms / 1000
        flushed = time.monotonic()
        delay, failing = TICK_SECONDS, False
        while True:
            await asyncio.sleep(delay)
            try:
                if self.surge.enabled:
                    await self.surge.tick()
                if time.monotonic() - flushed >= flush_every:
                    flushed = time.monotonic()
                    await self.sentiment.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("room modes: a round failed (%s); backing off", type(exc).__name__)
                failing = True
                delay = min(BACKOFF_MAX_SECONDS, delay * 2)
                continue
            if failing:
                log.info("room modes: working again")
            failing, delay = False, TICK_SECONDS
