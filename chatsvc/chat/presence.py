"""Who is online in which room.

The chat namespace reports joins and leaves; the registry answers counts and member
lists. ``LocalPresence`` knows this process's sockets; a multi-replica deployment plugs
in a registry that merges every replica's view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from chatsvc.auth.identity import Identity


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """The result of a join or leave: whether the user's first/last socket moved, and the count."""

    changed: bool
    online: int


class PresenceRegistry(Protocol):
    """Tracks (room, user, socket) membership."""

    async def join(self, room: str, user: Identity, sid: str) -> PresenceChange: ...

    async def leave(self, room: str, user: Identity, sid: str) -> PresenceChange: ...

    async def online(self, room: str) -> int: ...

    async def members(self, room: str) -> list[dict[str, str]]: ...

    async def rooms(self) -> dict[str, int]: ...

    async def user_count(self) -> int: ...

    def room_count(self) -> int:
        """Rooms with at least one member, everywhere this registry sees; O(1)."""
        ...

    def local_room_count(self) -> int:
        """Rooms with at least one socket of this process; O(1)."""
        ...


@dataclass
class _Room:
    #: A user's sockets here: the sid itself for one (nearly everyone; a set is 216 bytes
    #: more per user and room, the online room holding every connected user), a set for more.
    users: dict[str, str | set[str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)


def _holds(held: str | set[str] | None, sid: str) -> bool:
    return held == sid if type(held) is str else held is not None and sid in held


class LocalPresence:
    """In-memory presence of this process's sockets."""

    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}

    async def join(self, room: str, user: Identity, sid: str) -> PresenceChange:
        entry = self._rooms.setdefault(room, _Room())
        held = entry.users.get(user.user_id)
        first = held is None
        if held is None:
            entry.users[user.user_id] = sid
        elif isinstance(held, str):
            if held != sid:
                entry.users[user.user_id] = {held, sid}
        else:
            held.add(sid)
        entry.names[user.user_id] = user.name
        return PresenceChange(first, len(entry.users))

    async def leave(self, room: str, user: Identity, sid: str) -> PresenceChange:
        entry = self._rooms.get(room)
        if entry is None or not _holds(entry.users.get(user.user_id), sid):
            return PresenceChange(False, len(entry.users) if entry else 0)
        held = entry.users[user.user_id]
        if isinstance(held, str):
            last = True
        else:
            held.discard(sid)
            last = not held
        if last:
            del entry.users[user.user_id]
            entry.names.pop(user.user_id, None)
        online = len(entry.users)
        if not online:
            del self._rooms[room]
        return PresenceChange(last, online)

    async def online(self, room: str) -> int:
        entry = self._rooms.get(room)
        return len(entry.users) if entry else 0

    async def members(self, room: str) -> list[dict[str, str]]:
        entry = self._rooms.get(room)
        if entry is None:
            return []
        return [{"id": uid, "name": entry.names[uid]} for uid in sorted(entry.users)]

    async def rooms(self) -> dict[str, int]:
        return {name: len(entry.users) for name, entry in self._rooms.items()}

    async def user_count(self) -> int:
        return len({uid for entry in self._rooms.values() for uid in entry.users})

    def room_count(self) -> int:
        """Rooms with a member (this process is all there is)."""
        return len(self._rooms)

    def local_room_count(self) -> int:
        """Rooms with a socket of this process."""
        return len(self._rooms)
