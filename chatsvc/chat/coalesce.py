"""Presence, typing and read receipts in big rooms: one aggregate per room and window.

In a room of ``n`` members every join is delivered to ``n`` sockets, so ``n`` joins cost
``n²`` deliveries (issue 26: a market-open join storm of 2,000 users made 858k presence
deliveries). Above ``big_room`` members (the cluster's online count,
:meth:`chatsvc.chat.cluster_presence.ClusterPresence.online_now`, O(1)) this replica stops
delivering the per-user events to its sockets and instead sends, per room:

* ``presence {room, online}`` at most once per ``presence_window`` (no ``user``/``action``);
* ``typing {room, users: [first TYPING_USERS_SHOWN {id, name}], count}`` at most once per
  ``typing_window``; above ``typing_off`` members typing is not delivered at all;
* ``read {room, readers: [first READERS_SHOWN {id, name, message_id}], count, message_id}``
  at most once per ``read_window`` (``message_id``: the newest one read in the window).

Where it runs: on the *receiving* side. The bus still carries each join, leave, typing and
read as the per-user event it always was; every replica's local delivery of a bus record
(``chatsvc.transport.broadcast.DirectEmitMixin.use_absorber``) offers it to :meth:`Coalescer.absorb`
first, so each replica aggregates for its own sockets what it hears from every replica,
and members on any replica see the same ``online`` within a window. Small rooms are not
touched: ``absorb`` answers False and the per-user event goes out as before.

A window opens on the first change after a quiet window, which is sent at once (a lone
typist in a big room shows up without delay); further changes wait for the window's end.
One timer per room with something pending, none per socket; a single flusher task sends.
Everything buffered per room is bounded (``MAX_TRACKED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Typists named in a coalesced ``typing`` (``count`` has them all).
TYPING_USERS_SHOWN = 3
#: Readers named in a coalesced ``read``.
READERS_SHOWN = 3
#: Typists / readers remembered per room; beyond it ``count`` stops growing (typing) or
#: counts receipts instead of distinct readers (read).
MAX_TRACKED = 1000
#: A typist who sends no ``typing: false`` (a closed tab) stops counting this long after
#: their last ``typing: true``.
TYPING_TTL_SECONDS = 6.0

PRESENCE, TYPING, READ = "presence", "typing", "read"

Deliver = Callable[[str, dict[str, Any], str], Awaitable[None]]


@dataclass
class _Room:
    """What is pending for one room, and when each kind was last sent."""

    #: kind -> monotonic time it may be sent (pending kinds only).
    due: dict[str, float] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)
    #: user id -> (name, expires at).
    typists: dict[str, tuple[str, float]] = field(default_factory=dict)
    last_typing: tuple[tuple[str, ...], int] = ((), 0)
    last_online: int = -1
    #: user id -> (name, message id), this window.
    readers: dict[str, tuple[str, str]] = field(default_factory=dict)
    readers_overflow: int = 0
    timer: asyncio.TimerHandle | None = None


class Coalescer:
    """Per-room windows replacing per-user presence/typing/read events in big rooms."""

    def __init__(
        self,
        deliver: Deliver,
        room_size: Callable[[str], int],
        *,
        big_room: int,
        typing_off: int,
        presence_window: float,
        typing_window: float = 1.0,
        read_window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deliver = deliver
        self._size = room_size
        self._big_room = big_room
        self._typing_off = typing_off
        self._windows = {PRESENCE: presence_window, TYPING: typing_window, READ: read_window}
        self._clock = clock
        self._rooms: dict[str, _Room] = {}
        self._ready: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False

    # -- intake --------------------------------------------------------------------------

    def absorb(self, event: str, data: Any, room: str | None) -> bool:
        """Take a per-user ``presence``/``typing``/``read`` event bound for ``room``'s local
        sockets if the room is big (it is then sent aggregated, or not at all); False for
        anything else, which the caller delivers as it is. Never raises, never suspends."""
        if room is None or event not in self._windows or not isinstance(data, dict):
            return False
        user = data.get("user")
        if not isinstance(user, dict) or not isinstance(uid := user.get("id"), str):
            return False  # an aggregate already, or not ours
        size = self._size(room)
        if event == PRESENCE and isinstance(online := data.get("online"), int):
            # The sender's count: a peer's presence delta may reach this replica after the
            # event, and the room is big for everyone once it is big for the sender.
            size = max(size, online)
        if size < self._big_room or self._closed:
            return False
        name = str(user.get("name", uid))
        now = self._clock()
        if event == PRESENCE:
            state = self._room(room)
            if data.get("action") == "leave" and state.typists.pop(uid, None) is not None:
                self._pending(room, state, TYPING, now)
            self._pending(room, state, PRESENCE, now)
        elif event == TYPING:
            if size >= self._typing_off:
                return True  # dropped: nobody can follow thousands typing
            state = self._room(room)
            if data.get("typing") is True:
                if uid in state.typists or len(state.typists) < MAX_TRACKED:
                    state.typists[uid] = (name, now + TYPING_TTL_SECONDS)
            elif state.typists.pop(uid, None) is None:
                return True  # stopped typing without having started: nothing changes
            self._pending(room, state, TYPING, now)
        else:
            message_id = data.get("message_id")
            if not isinstance(message_id, str):
                return False
            state = self._room(room)
            if uid in state.readers or len(state.readers) < MAX_TRACKED:
                state.readers[uid] = (name, message_id)
            else:
                state.readers_overflow += 1
            self._pending(room, state, READ, now)
        return True

    def touch(self, room: str) -> None:
        """``room``'s online count changed (a peer's presence delta can arrive after the
        per-user event it goes with): if the room is big, its count goes out again within
        the window, so every replica's members end on the same ``online``."""
        if not self._closed and self._size(room) >= self._big_room:
            self._pending(room, self._room(room), PRESENCE, self._clock())

    # -- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop: cancel every room's timer and the flusher; what is pending is dropped
        (at shutdown the sockets are gone already). Idempotent."""
        self._closed = True
        for state in self._rooms.values():
            if state.timer is not None:
                state.timer.cancel()
        self._rooms.clear()
        self._ready.clear()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    def pending_rooms(self) -> int:
        """Rooms with a window open (tests, metrics)."""
        return len(self._rooms)

    # -- windows -------------------------------------------------------------------------

    def _room(self, room: str) -> _Room:
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _Room()
        return state

    def _pending(self, room: str, state: _Room, kind: str, now: float) -> None:
        last = state.sent.get(kind)
        at = now if last is None else max(now, last + self._windows[kind])
        if state.due.get(kind, at + 1) <= at:
            return  # already due no later (the window's end, not a TTL check far off)
        state.due[kind] = at
        self._arm(room, state, now)

    def _arm(self, room: str, state: _Room, now: float) -> None:
        """One timer per room, at its earliest due kind (or, with nothing due, at the end
        of the last window, to forget the room then)."""
        if state.timer is not None:
            state.timer.cancel()
        if state.due:
            at = min(state.due.values())
        else:
            at = max((sent + self._windows[kind] for kind, sent in state.sent.items()), default=now)
        loop = asyncio.get_running_loop()
        state.timer = loop.call_later(max(0.0, at - now), self._fire, room)

    def _fire(self, room: str) -> None:
        state = self._rooms.get(room)
        if state is None:
            return
        state.timer = None
        self._ready.add(room)
        if self._flusher is None or self._flusher.done():
            self._wake = asyncio.Event()
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="coalescer")
        assert self._wake is not None
        self._wake.set()

    async def _flush_loop(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            while self._ready:
                room = self._ready.pop()
                try:
                    await self._flush(room)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # One failed room must not stop the others; the next change retries.
                    # Logged once per failing spell, not per room and window.
                    if not self._failing:
                        log.warning("coalesced room events could not be delivered (%r)", exc)
                        self._failing = True
                else:
                    if self._failing:
                        log.info("coalesced room events delivered again")
                        self._failing = False

    async def _flush(self, room: str) -> None:
        state = self._rooms.get(room)
        if state is None:
            return
        now = self._clock()
        due = [kind for kind, at in state.due.items() if at <= now]
        for kind in due:
            del state.due[kind]
            state.sent[kind] = now
        if TYPING in due or state.typists:
            self._expire_typists(room, state, now)
        quiet = all(now >= sent + self._windows[kind] for kind, sent in state.sent.items())
        if not state.due and not state.typists and quiet:
            del self._rooms[room]  # quiet for a whole window: forget the room
        else:
            self._arm(room, state, now)
        for kind in due:
            payload = self._payload(kind, room, state)
            if payload is not None:
                await self._deliver(kind, payload, room)

    def _expire_typists(self, room: str, state: _Room, now: float) -> None:
        """Drop typists past their TTL; while some remain, look again when the next expires."""
        expired = [uid for uid, (_, until) in state.typists.items() if until <= now]
        for uid in expired:
            del state.typists[uid]
        if expired and TYPING not in state.due:
            self._pending(room, state, TYPING, now)
        elif state.typists and TYPING not in state.due:
            state.due[TYPING] = max(
                min(until for _, until in state.typists.values()),
                state.sent.get(TYPING, now) + self._windows[TYPING],
            )

    def _payload(self, kind: str, room: str, state: _Room) -> dict[str, Any] | None:
        if kind == PRESENCE:
            online = self._size(room)
            if online == state.last_online:
                return None  # several triggers (the event, the delta) for one change
            state.last_online = online
            return {"room": room, "online": online}
        if kind == TYPING:
            shown = list(state.typists.items())[:TYPING_USERS_SHOWN]
            signature = (tuple(uid for uid, _ in shown), len(state.typists))
            if signature == state.last_typing:
                return None  # a TTL check that found nothing new
            state.last_typing = signature
            return {
                "room": room,
                "users": [{"id": uid, "name": name} for uid, (name, _) in shown],
                "count": len(state.typists),
            }
        readers, overflow = state.readers, state.readers_overflow
        state.readers, state.readers_overflow = {}, 0
        if not readers:
            return None
        return {
            "room": room,
            "readers": [
                {"id": uid, "name": name, "message_id": mid}
                for uid, (name, mid) in list(readers.items())[:READERS_SHOWN]
            ],
            "count": len(readers) + overflow,
            "message_id": max(mid for _, mid in readers.values()),
        }
