"""Slow mode (issue 25): a user may post once per ``seconds`` in a room.

A room's mode is a row in the store (chatsvc.store.base.RoomModeStore): the seconds a
moderator set, and whether the surge monitor (chatsvc.chat.surge) put it in surge, which
slows it to at least ``CHATSVC_SURGE_SLOW_MODE`` seconds. Every replica reads the row at
most once a second per room (so a change holds everywhere within about a second) and
refuses a post that comes too soon with ``slow_mode`` and ``retry_after_ms``. Admins, and
owners and moderators of a private room, are not slowed.

When each user last posted is kept per replica (bounded), and is cluster-wide: a post let
through here counts at once, and a post another replica let through counts when this
replica applies its record from the room stream (:meth:`SlowModes.seen`, fed by
chatsvc.chat.crossposts: for users with a socket here, and for anyone in a room this
replica knows to be slowed). Why the stream and not a store-side conditional: every replica
already applies every record of the events log (docs/delivery.md), so knowing another
replica's post costs nothing on the send path, while a conditional write would add a store
round trip (an LWT on ScyllaDB) to the posts it guards. The price is
staleness: a post on another replica is known here one bus hop after it was appended (the
time its sender waits for its own ack, a few ms); two posts of one user on two replicas
within that hop both pass. Times are wall-clock (a record carries its sender's
``created_at_ms``), so replicas' clocks should agree (NTP) to well under a second.

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
from chatsvc.model.messages import Message
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._service = service
        self._store = store
        self._settings = settings
        self._moderates = moderates
        self._clock = clock
        self._modes: OrderedDict[str, tuple[float, RoomMode]] = OrderedDict()
        self._last_post: OrderedDict[tuple[str, str], float] = OrderedDict()
        #: Rooms the last ``room_mode`` record applied here said were slowed (bounded).
        self._slowed: OrderedDict[str, None] = OrderedDict()

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
            # Clamped: a post seen from a replica whose clock runs ahead is "in the future".
            retry = min(seconds * 1000, max(1, int((seconds - (now - last)) * 1000)))
            raise SlowMode(retry, f"slow mode: one message per {seconds} s in {room}")
        self._posted(key, now)

    def seen(self, message: Message, *, local: bool) -> None:
        """Another replica let ``message`` through (read from the room stream): it starts
        its author's interval here too. Kept when the author has a socket here (``local``;
        every post counts, whether this replica read the room's mode yet or not), or the
        room is known here to be slowed: by the mode last read, or the last ``room_mode``
        record applied (a user who reconnects here stays slowed; nothing is kept for rooms
        that are not). Bounded like :meth:`check`'s."""
        if not local and message.room not in self._slowed:
            cached = self._modes.get(message.room)
            if cached is None or not self.seconds(cached[1]):
                return
        key = (message.room, message.user_id)
        at = message.created_at_ms / 1000
        last = self._last_post.get(key)
        if last is None or at > last:
            self._posted(key, at)

    def announced(self, room: str, seconds: int) -> None:
        """A ``room_mode`` record applied from the room stream (any replica's): ``seconds``
        is the interval now in force. The cached mode is dropped (re-read at the room's next
        use), and whether the room is slowed is known here at once for :meth:`seen`."""
        self._modes.pop(room, None)
        if seconds <= 0:
            self._slowed.pop(room, None)
            return
        self._slowed[room] = None
        self._slowed.move_to_end(room)
        while len(self._slowed) > MODE_CACHE_ROOMS:
            self._slowed.popitem(last=False)

    def _posted(self, key: tuple[str, str], at: float) -> None:
        self._last_post[key] = at
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
