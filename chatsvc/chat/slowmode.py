"""Slow mode (issue 25): a user may post once per ``seconds`` in a room.

A room's mode is a row in the store (chatsvc.store.base.RoomModeStore): the seconds a
moderator set, and whether the surge monitor (chatsvc.chat.surge) put it in surge, which
slows it to at least ``CHATSVC_SURGE_SLOW_MODE`` seconds. Every replica reads the row at
most once a second per room (so a change holds everywhere within about a second) and
refuses a post that comes too soon with ``slow_mode`` and ``retry_after_ms``. When each
user last posted is kept per replica (bounded): a user with sockets on two replicas may
post once on each. Admins, and owners and moderators of a private room, are not slowed.

Each change is a room-stream record delivered as ``room_mode {room, slow_mode_seconds,
reason}`` (``slow_mode_seconds``: the interval now in force), replayed by ``join {since}``
and connection state recovery like pins.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from chatsvc.auth.identity import Identity
from chatsvc.chat.service import ChatService
from chatsvc.errors import SlowMode, StoreUnavailable
from chatsvc.model.modes import RoomMode
from chatsvc.model.rooms import members_only
from chatsvc.settings import ModeSettings
from chatsvc.store.base import MessageStore

#: How long a replica trusts the room mode it read.
MODE_CACHE_SECONDS = 1.0
#: Rooms whose mode one replica keeps cached, and (room, user) last posts it remembers.
MODE_CACHE_ROOMS = 10_000
LAST_POSTS_MAX = 100_000

Moderates = Callable[[str, str], Awaitable[bool]]


class SlowModes:
    """Reads, enforces and changes rooms' slow mode."""

    def __init__(
        self,
        service: ChatService,
        store: MessageStore,
        settings: ModeSettings,
        moderates: Moderates | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._store = store
        self._settings = settings
        self._moderates = moderates
        self._clock = clock
        self._modes: OrderedDict[str, tuple[float, RoomMode]] = OrderedDict()
        self._last_post: OrderedDict[tuple[str, str], float] = OrderedDict()

    def seconds(self, mode: RoomMode) -> int:
        """The interval in force: the moderators', raised to the surge interval in surge."""
        return max(mode.slow_mode_seconds, self._settings.surge_slow_mode_seconds if mode.surge else 0)

    async def mode(self, room: str, *, fresh: bool = False) -> RoomMode:
        """The room's mode, read from the store at most once per MODE_CACHE_SECONDS."""
        now = self._clock()
        cached = self._modes.get(room)
        if cached is not None and not fresh and now - cached[0] < MODE_CACHE_SECONDS:
            return cached[1]
        try:
            mode = await self._store.get_room_mode(room)
        except StoreUnavailable:
            if cached is None or fresh:
                raise
            # The store is down: the last mode read holds, so a CQL outage does not stop
            # live chat (issue 21: sends need the log, not the store); re-read when it answers.
            return cached[1]
        self._modes[room] = (now, mode)
        self._modes.move_to_end(room)
        while len(self._modes) > MODE_CACHE_ROOMS:
            self._modes.popitem(last=False)
        return mode

    async def moderates(self, room: str, actor: Identity) -> bool:
        """Whether ``actor`` may change the room's mode: ``admin`` in public rooms, owners
        and moderators in private and direct ones."""
        if actor.is_admin and not members_only(room):
            return True
        return (
            members_only(room) and self._moderates is not None and await self._moderates(room, actor.user_id)
        )

    async def check(self, room: str, author: Identity) -> None:
        """Refuse a post within the interval with ``slow_mode`` (and when to retry); a post
        let through starts the author's next interval."""
        seconds = self.seconds(await self.mode(room))
        if not seconds or author.is_admin:
            return
        if members_only(room) and await self.moderates(room, author):
            return
        key = (room, author.user_id)
        now = self._clock()
        last = self._last_post.get(key)
        if last is not None and now - last < seconds:
            retry = max(1, int((seconds - (now - last)) * 1000))
            raise SlowMode(retry, f"slow mode: one message per {seconds} s in {room}")
        self._last_post[key] = now
        self._last_post.move_to_end(key)
        while len(self._last_post) > LAST_POSTS_MAX:
            self._last_post.popitem(last=False)

    async def set(self, room: str, seconds: int, reason: str) -> RoomMode:
        """Store the moderators' interval (0: off) and announce the room's mode."""
        await self._store.set_slow_mode(room, seconds)
        return await self.announce(room, reason)

    async def announce(self, room: str, reason: str) -> RoomMode:
        """Re-read the room's mode and log and deliver ``room_mode``."""
        mode = await self.mode(room, fresh=True)
        await self._service.epoch()
        wire = {"room": room, "slow_mode_seconds": self.seconds(mode), "reason": reason}
        await self._service.log_and_deliver("room_mode", "room_mode", room, "", wire)
        return mode
