"""Room membership of this process's sockets, kept in one place.

A socket's membership of a room lives in four holders that must agree:

1. python-socketio's manager rooms: what a room broadcast reaches;
2. the connection's ``rooms``: which rooms the socket may send to, and how many it holds;
3. the recovery session's rooms (``PosSession.rooms``): what a recovered socket re-enters;
4. presence: who the room sees online, announced to the room as ``presence`` join/leave.

:class:`Membership` is the only code that changes them. Entering updates 1, 2, 3 in that
order (subscribed first, so nothing broadcast while the caller reads the gap is missed),
then 4 and the announcement; leaving takes the socket out of 2, 3, 1, then 4. A failure
after subscribing and before presence (typically the catch-up read) undoes 2, 3, 1, so
every holder is back as it was. With recovery off, 3 is :class:`NoRecovery`, which holds
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from chatsvc.auth.identity import Identity
from chatsvc.chat.presence import PresenceRegistry
from chatsvc.chat.recovery_base import Send, SessionRecovery
from chatsvc.errors import TooManyRooms
from chatsvc.metrics import Metrics

log = logging.getLogger(__name__)


#: A socket's rooms before its first join: one empty set for all (an empty ``set`` is
#: 216 bytes, and most idle sockets of a stock chat never join one).
NO_ROOMS: frozenset[str] = frozenset()


class Member(Protocol):
    """The per-socket state membership keeps (``chatsvc.chat.namespace.Connection``)."""

    identity: Identity
    #: :data:`NO_ROOMS` until the first join; only this module changes it.
    rooms: set[str] | frozenset[str]


def _own_rooms(member: Member) -> set[str]:
    """``member.rooms``, a set of its own from the first room on."""
    rooms = member.rooms
    if isinstance(rooms, set):
        return rooms
    own: set[str] = set(rooms)
    member.rooms = own
    return own


class RoomSockets(Protocol):
    """The part of a python-socketio namespace membership uses: manager rooms and emits."""

    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None: ...

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None: ...

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: str | None = None,
        room: str | None = None,
        skip_sid: str | list[str] | None = None,
    ) -> None: ...


@dataclass(slots=True)
class Entered:
    """What :meth:`Membership.enter` reports: whether the room is new to the socket, and
    (once the ``async with`` block has ended) how many users the room has online."""

    room: str
    newly: bool
    online: int = 0


class Membership:
    """Enters, leaves, drops and restores sockets' rooms across the four holders, and owns
    the ``presence`` announcements and the rooms gauge."""

    def __init__(
        self,
        sockets: RoomSockets,
        presence: PresenceRegistry,
        recovery: SessionRecovery,
        metrics: Metrics,
        *,
        rooms_per_connection: int,
    ) -> None:
        self._sockets = sockets
        self._presence = presence
        self._recovery = recovery
        self._metrics = metrics
        self._rooms_per_connection = rooms_per_connection

    @asynccontextmanager
    async def enter(self, sid: str, member: Member, room: str) -> AsyncIterator[Entered]:
        """Put socket ``sid`` in ``room`` around the ``async with`` block.

        Before the block the socket is subscribed (it receives the room's broadcasts from
        then on, so a catch-up read in the block misses nothing; the client drops the rare
        message that arrives both ways, by id). After the block presence records it, the
        rooms gauge is updated and the room is told (``presence`` join, unless the user was
        already there), and ``online`` is set. If the block or any step raises, the socket
        is unsubscribed again (every holder as before) and the error propagates.

        Entering a room the socket is already in changes no holder (presence is idempotent).
        A socket taken out of the room while the block ran (a kick, a disconnect) is not
        put in presence.
        Raises ``TooManyRooms`` (before any change) past ``rooms_per_connection``.
        """
        newly = room not in member.rooms
        if newly and len(member.rooms) >= self._rooms_per_connection:
            raise TooManyRooms(f"at most {self._rooms_per_connection} rooms per connection")
        entered = Entered(room, newly)
        if newly:
            await self._sockets.enter_room(sid, room)
            _own_rooms(member).add(room)
            self._recovery.joined(sid, room)
        try:
            if newly:
                await self._recovery.subscribed(sid, room)
            yield entered
            if room not in member.rooms:
                # Kicked or disconnected while the block ran: recording it in presence now
                # would leave a member there that nothing ever takes out.
                entered.online = await self._presence.online(room)
                return
            change = await self._presence.join(room, member.identity, sid)
        except BaseException:
            if newly:
                await self._unsubscribe(sid, member, room)
            raise
        entered.online = change.online
        if change.changed:
            await self._announce(room, member.identity, "join", change.online, skip_sid=sid)

    async def leave(
        self,
        sid: str,
        member: Member,
        room: str,
        *,
        then: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Take socket ``sid`` out of ``room`` and tell the room (``presence`` leave, if it
        was the user's last socket there). ``then`` runs once the socket no longer receives
        the room, before presence changes (a kick tells the socket why). False, and nothing
        changed, if the socket was not in the room."""
        if room not in member.rooms:
            return False
        await self._unsubscribe(sid, member, room)
        if then is not None:
            await then()
        await self._left(sid, member.identity, room)
        return True

    async def drop(self, sid: str, member: Member | None, reason: Any) -> None:
        """Socket ``sid`` disconnected (``member`` None: it never finished connecting).

        Recovery saves its session first (with its rooms, so a client reconnecting
        elsewhere finds it soon); then it leaves every room in presence, announced.
        python-socketio takes it out of its manager rooms right after the disconnect
        handler, without suspending, so recovery forgets the session last: until then it
        withholds deliveries to the socket. A second drop changes nothing.
        """
        try:
            await self._recovery.end(sid, reason)
            if member is None:
                return
            rooms, member.rooms = sorted(member.rooms), NO_ROOMS
            for room in rooms:
                await self._left(sid, member.identity, room)
        finally:
            self._recovery.forget(sid)

    def resume(self, sid: str, member: Member, opted_in: bool) -> None:
        """At connect, for a socket that opted in to recovery: take over the rooms of the
        session being recovered under ``sid`` (entered by :meth:`restore`, after the
        replay), or start a fresh session."""
        if not opted_in:
            return
        rooms = self._recovery.resume(sid)
        if rooms is not None:
            member.rooms = set(rooms)
        else:
            self._recovery.start(sid, member.identity.user_id)

    async def restore(self, sid: str, member: Member, send: Send, connected: Callable[[], bool]) -> None:
        """After a recovered socket's CONNECT: replay what it missed, enter its manager
        rooms (recovery does both, in that order), then record it in presence and
        announce it to each room. Nothing happens for a socket that is not being
        recovered; a failure is logged (the client keeps what it got)."""
        rooms = sorted(member.rooms)

        async def enter(room: str) -> None:
            if room in member.rooms:  # not kicked meanwhile
                await self._sockets.enter_room(sid, room)

        try:
            replayed = await self._recovery.restore(sid, send, enter)
        except Exception:
            log.exception("restoring session %s failed", sid)
            return
        if replayed is None:
            return
        if not connected():
            log.info("session %s ended while being restored", sid)
            return
        self._metrics.recoveries.labels("recovered").inc()
        self._metrics.replayed.inc(replayed)
        log.info("session %s recovered: %d room(s), %d event(s) replayed", sid, len(rooms), replayed)
        for room in rooms:
            if room not in member.rooms:
                continue  # kicked while being restored
            change = await self._presence.join(room, member.identity, sid)
            if change.changed:
                await self._announce(room, member.identity, "join", change.online, skip_sid=sid)

    async def _unsubscribe(self, sid: str, member: Member, room: str) -> None:
        """Out of holders 2, 3, 1: first nothing more may be sent to the room, last nothing
        more is received from it."""
        if room in member.rooms:
            _own_rooms(member).discard(room)
        self._recovery.left(sid, room)
        await self._sockets.leave_room(sid, room)

    async def _left(self, sid: str, user: Identity, room: str) -> None:
        change = await self._presence.leave(room, user, sid)
        if change.changed:
            await self._announce(room, user, "leave", change.online, skip_sid=sid)

    async def _announce(self, room: str, user: Identity, action: str, online: int, *, skip_sid: str) -> None:
        try:
            await self._sockets.emit(
                "presence",
                {"room": room, "user": user.public(), "action": action, "online": online},
                room=room,
                skip_sid=skip_sid,
            )
        except Exception:
            log.warning("presence %s for %s could not be delivered", action, room)
