"""Which partitions of the events topic a replica reads under interest-based routing.

With ``KAFKA_EVENTS_ROUTING`` (docs/scaling.md, *Interest-based routing*) a replica reads a
partition only while it is *wanted*: a room of it has a local member (the rooms callback,
polled), or the replica followed one of its rooms (a join, a send) less than
``release_after`` seconds ago. A partition stays wanted ``release_after`` seconds after the
last time it was seen wanted, so join/leave churn does not start and stop reading it.

This module knows nothing of Kafka: a room's partition comes from the ``partition_of``
callback (the producer's partitioner, chatsvc.bus.kafka_log).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: Rooms whose partition is remembered (a room name is hashed once).
ROOMS_CACHED = 100_000


class PartitionInterest:
    """Tracks the partitions this replica wants to read (see the module docstring)."""

    def __init__(
        self,
        partition_of: Callable[[str], int],
        rooms: Callable[[], Iterable[str]],
        release_after: float,
    ) -> None:
        self._partition_of = partition_of
        self._rooms = rooms
        self._release_after = release_after
        self._until: dict[int, float] = {}
        self._cache: dict[str, int] = {}

    def partition_of(self, room: str) -> int:
        """The partition ``room``'s records are on."""
        found = self._cache.get(room)
        if found is None:
            if len(self._cache) >= ROOMS_CACHED:
                self._cache.clear()
            found = self._cache[room] = self._partition_of(room)
        return found

    def hold(self, partition: int, now: float) -> None:
        """Keep ``partition`` wanted until ``release_after`` seconds after ``now``."""
        self._until[partition] = max(self._until.get(partition, 0.0), now + self._release_after)

    def wanted(self, now: float) -> set[int]:
        """The partitions to read at ``now``: those of rooms with a local member, and those
        held (followed, or last seen wanted, less than ``release_after`` ago)."""
        for room in self._rooms():
            self.hold(self.partition_of(room), now)
        expired = [p for p, until in self._until.items() if until <= now]
        for partition in expired:
            del self._until[partition]
        return set(self._until)


class MemberRooms:
    """The private and direct rooms of the users with a socket on this replica (routing).

    Their members receive those rooms' events through their user room, without joining
    (chatsvc.chat.conversations), so the rooms a local socket is *in* do not show them: the
    app registers a user's member rooms when her socket connects (:meth:`set`) and a room
    she is added to while connected (:meth:`add`); :meth:`rooms` yields them as interest
    while ``present(user)`` says she still has a socket here, and forgets a user once she
    has had none for ``grace`` seconds (her partitions are then released like any other:
    ``release_after`` later). At most ``per_user`` rooms are kept per user.
    """

    def __init__(self, per_user: int, grace: float = 30.0) -> None:
        self._per_user = per_user
        self._grace = grace
        self._rooms: dict[str, set[str]] = {}
        self._seen: dict[str, float] = {}

    def set(self, user: str, rooms: Iterable[str], now: float) -> None:
        """``user``'s member rooms, as read at connect (replacing what was known)."""
        kept: set[str] = set()
        for room in rooms:
            if len(kept) >= self._per_user:
                break
            kept.add(room)
        self._rooms[user] = kept
        self._seen[user] = now

    def add(self, user: str, room: str, now: float) -> None:
        """``user`` (connected here) was added to ``room``."""
        rooms = self._rooms.setdefault(user, set())
        if len(rooms) < self._per_user:
            rooms.add(room)
        self._seen[user] = now

    def discard(self, user: str, room: str) -> None:
        """``user`` left or was removed from ``room``."""
        rooms = self._rooms.get(user)
        if rooms is not None:
            rooms.discard(room)

    def __len__(self) -> int:
        return len(self._rooms)

    def rooms(self, present: Callable[[str], bool], now: float) -> Iterable[str]:
        """The member rooms of every user ``present`` here; users gone longer than the
        grace are forgotten (the grace covers a socket registered just before it connects)."""
        found: list[str] = []
        for user in list(self._rooms):
            if present(user):
                self._seen[user] = now
                found.extend(self._rooms[user])
            elif now - self._seen.get(user, now) >= self._grace:
                del self._rooms[user]
                self._seen.pop(user, None)
        return found
