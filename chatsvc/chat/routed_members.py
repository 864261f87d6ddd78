"""Interest-based routing for private and direct rooms (issue 26, docs/scaling.md).

With ``KAFKA_EVENTS_ROUTING`` a replica reads only the events topic's partitions of rooms it
has interest in. A member of a private or direct room receives its events through her user
room ``@u:<id>`` without ever joining it (chatsvc.chat.conversations), so the rooms her
sockets are *in* say nothing of them. This module makes them interest:

* **At connect** (the bus's enter hook for her user room, before her socket is in it): her
  member rooms are read from the store (at most ``CHATSVC_MAX_ROOMS_PER_USER``), registered,
  and followed, one start per partition, so every event appended after her socket is in her
  user room is delivered live, as without routing.
* **When she is added to a room while connected** (``create_room``, a new DM, ``add_member``
  on any replica): the replica adding her runs the ``follow`` cluster action before it
  answers; every replica with a socket of hers registers the room and reads its partition
  before replying, so the first event the room's members can send after that answer is
  read live there.
* **When her last socket goes**, her rooms stop being interest (chatsvc.bus.interest's
  :class:`~chatsvc.bus.interest.MemberRooms`) and their partitions are released like any
  other, ``RELEASE_AFTER_SECONDS`` later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from chatsvc.bus.interest import MemberRooms
from chatsvc.chat.cluster import ClusterActions
from chatsvc.chat.conversations import Conversations
from chatsvc.errors import ChatError

log = logging.getLogger(__name__)

#: The cluster action a replica runs when users are added to a private or direct room.
FOLLOW_ACTION = "follow_members"


class Follower(Protocol):
    """The part of the events log (chatsvc.bus.kafka_log) that starts reading rooms."""

    async def follow(self, room: str) -> None: ...

    async def follow_rooms(self, rooms: Iterable[str]) -> None: ...


class RoutedMembers:
    """Keeps the private and direct rooms of this replica's users read (module docstring)."""

    def __init__(self, conversations: Conversations, per_user: int, members_per_room: int) -> None:
        self._conversations = conversations
        self._members_per_room = members_per_room
        self.rooms = MemberRooms(per_user)
        self._log: Follower | None = None
        self._has_sockets: Callable[[str], bool] = lambda _user: False
        self._failing = False

    def use_log(self, follower: Follower) -> None:
        """Follow rooms on ``follower`` (the events log, built after this)."""
        self._log = follower

    def use_actions(self, actions: ClusterActions, has_sockets: Callable[[str], bool]) -> None:
        """Register the cluster action and have the conversations run it on every add."""
        self._has_sockets = has_sockets
        actions.register(FOLLOW_ACTION, self._on_added)

        async def announce(room: str, users: list[str]) -> None:
            await actions.run(FOLLOW_ACTION, {"room": room, "users": users})

        self._conversations.use_follow(announce)

    def interest(self, present: Callable[[str], bool]) -> Iterable[str]:
        """The member rooms of the users ``present`` here (the events log's interest)."""
        return self.rooms.rooms(present, time.monotonic())

    async def connected(self, user_id: str) -> None:
        """A socket of ``user_id`` is entering its user room: read its member rooms first.
        Never raises: a failure is logged once per outage, and the events log starts the
        registered rooms' partitions on its own as soon as it can."""
        rooms: list[str] = []
        try:
            rooms = [m.room for m in await self._conversations.rooms_of(user_id)]
            self.rooms.set(user_id, rooms, time.monotonic())
            if self._log is not None and rooms:
                await self._log.follow_rooms(rooms)
        except ChatError as exc:
            self._failed(exc)
            return
        self._recovered()

    async def _on_added(self, args: dict[str, Any]) -> int:
        """The cluster action: follow ``room`` if one of ``users`` has a socket here; the
        number of such users. Never raises (the requester must get an answer)."""
        room, users = args.get("room"), args.get("users")
        if not isinstance(room, str) or not isinstance(users, list):
            return 0
        local = [u for u in users[: self._members_per_room] if isinstance(u, str) and self._has_sockets(u)]
        if not local:
            return 0
        now = time.monotonic()
        for user_id in local:
            self.rooms.add(user_id, room, now)
        if self._log is not None:
            try:
                await self._log.follow(room)
            except ChatError as exc:
                self._failed(exc)
                return 0
        self._recovered()
        return len(local)

    def _failed(self, exc: ChatError) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "could not start reading a private room's events (%s): %s; retried in the background",
                exc.code,
                exc.message,
            )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("private rooms' events read again")
