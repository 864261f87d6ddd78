"""Rolling sentiment per public room (issue 25).

Each ``bullish``/``bearish`` message of a public room is counted in the store, in minute
and hour slots (chatsvc.store.base.RoomModeStore), so the counts of the last hour and day
are the cluster's whichever replica stored the messages. ``join`` and ``room_info`` return
them; a room whose counts changed gets ``sentiment {room, hour: {bullish, bearish}, day:
{bullish, bearish}}`` at most once per ``CHATSVC_SENTIMENT_EVENT_MS`` from each replica
that stored sentiment there: changes in between are coalesced into the next one, and each
flush reads at most FLUSH_ROOMS_MAX rooms (the rest wait for the next window).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from chatsvc.chat.service import ChatService
from chatsvc.errors import StoreUnavailable
from chatsvc.model.messages import Message
from chatsvc.model.modes import SentimentCounts
from chatsvc.model.rooms import members_only
from chatsvc.store.base import MessageStore

#: Rooms read per flush at most; a room's counts read for ``join`` are reused this long.
FLUSH_ROOMS_MAX = 200
READ_CACHE_SECONDS = 1.0
CACHE_ROOMS_MAX = 10_000

log = logging.getLogger(__name__)


class SentimentBoard:
    """Counts sentiment, answers it per room, and broadcasts its changes coalesced."""

    def __init__(
        self, service: ChatService, store: MessageStore, clock: Callable[[], float] = time.time
    ) -> None:
        self._service = service
        self._store = store
        self._clock = clock
        #: Rooms with sentiment stored here since their last broadcast.
        self._dirty: OrderedDict[str, None] = OrderedDict()
        #: What was last broadcast per room (nothing again while unchanged).
        self._sent: OrderedDict[str, SentimentCounts] = OrderedDict()
        self._cache: OrderedDict[str, tuple[float, SentimentCounts]] = OrderedDict()
        #: Whether the store refused a count since the last one it took (log once per outage).
        self._uncounted = False

    async def posted(self, message: Message) -> None:
        """Count a new message's sentiment (public rooms) and mark its room for broadcast."""
        if message.sentiment is None or members_only(message.room):
            return
        try:
            await self._store.add_sentiment(message.room, message.sentiment, message.created_at_ms)
        except StoreUnavailable as exc:
            # The message is already in the room's stream and delivered: its ack must not
            # fail for an aggregate (a retry would be deduplicated and never counted either),
            # so a store outage costs the rolling counts this message, logged once.
            if not self._uncounted:
                log.warning("sentiment not counted while the store is unavailable: %s", exc)
                self._uncounted = True
            return
        if self._uncounted:
            log.info("sentiment counted again: the store is back")
            self._uncounted = False
        self._cache.pop(message.room, None)
        self._dirty[message.room] = None
        while len(self._dirty) > CACHE_ROOMS_MAX:
            self._dirty.popitem(last=False)

    async def counts(self, room: str) -> dict[str, Any] | None:
        """``{hour: {...}, day: {...}}`` of a public room (None for private and direct ones)."""
        if members_only(room):
            return None
        now = self._clock()
        cached = self._cache.get(room)
        if cached is None or now - cached[0] >= READ_CACHE_SECONDS:
            cached = (now, await self._store.sentiment_counts(room, int(now * 1000)))
            self._cache[room] = cached
            self._cache.move_to_end(room)
            while len(self._cache) > CACHE_ROOMS_MAX:
                self._cache.popitem(last=False)
        return cached[1].wire()

    async def flush(self) -> None:
        """Broadcast the counts of up to FLUSH_ROOMS_MAX changed rooms."""
        now_ms = int(self._clock() * 1000)
        for _ in range(min(FLUSH_ROOMS_MAX, len(self._dirty))):
            room, _none = self._dirty.popitem(last=False)
            counts = await self._store.sentiment_counts(room, now_ms)
            if self._sent.get(room) == counts:
                continue
            self._sent[room] = counts
            self._sent.move_to_end(room)
            while len(self._sent) > CACHE_ROOMS_MAX:
                self._sent.popitem(last=False)
            await self._service.send_to("sentiment", {"room": room, **counts.wire()}, [room])
