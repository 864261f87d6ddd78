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
