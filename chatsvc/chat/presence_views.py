"""The other replicas' presence as last heard, and the cluster-wide counts it feeds.

:class:`~chatsvc.chat.cluster_presence.ClusterPresence` speaks the protocol (deltas,
heartbeats, snapshots); this module keeps what it learns: one :class:`PeerView` per
replica heard from, expired after ``EXPIRY_HEARTBEATS`` of its heartbeat intervals.

Counts that metrics read on every scrape are kept incrementally: for each room, how many
sources (this replica, each peer view) have a member there. A join, leave, delta or
snapshot adjusts them by what changed, so :meth:`PeerViews.room_count` is O(1) instead of
a merge of every view. Likewise, for each room, how many sources have each user there, so
a room's online count is O(1) (it was a merge of every view per join and leave: quadratic
in a join storm, issue 26). A peer that falls silent counts until the views are pruned
(the heartbeat loop prunes them: at most one heartbeat after it expired).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

EXPIRY_HEARTBEATS = 3


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What Info reports about one replica."""

    replica_id: str
    version: str
    connections: int
    rooms: int
    users: int
    last_seen: float  # Unix seconds
    local: bool = False


@dataclass
class PeerView:
    """The last known state of another replica."""

    rooms: dict[str, dict[str, str]] = field(default_factory=dict)
    seq: int = -1
    interval: float = 2.0
    connections: int = 0
    version: str = ""
    seen: float = 0.0  # monotonic
    seen_wall: float = 0.0
    parts: dict[int, dict[str, dict[str, str]]] = field(default_factory=dict)
    parts_seq: int = -1
    sync_asked: float = -1e9  # monotonic

    def apply(self, room: str, user_id: str, name: str, join: bool) -> int:
        """Apply a delta; +1 if ``room`` gained its first member here, -1 if it lost its last."""
        if join:
            users = self.rooms.get(room)
            if users is None:
                self.rooms[room] = {user_id: name}
                return 1
            users[user_id] = name
            return 0
        users = self.rooms.get(room)
        if users is not None:
            users.pop(user_id, None)
            if not users:
                del self.rooms[room]
                return -1
        return 0


class PeerViews:
    """Every other replica's view, and per room how many sources have a member (and each
    user) there; this replica's own joins and leaves are counted in through :meth:`count_room`
    and :meth:`count_user`."""

    def __init__(self, clock: Callable[[], float], wall_clock: Callable[[], float]) -> None:
        self._clock = clock
        self._wall = wall_clock
        self._views: dict[str, PeerView] = {}
        #: room -> how many sources (this replica, each view in ``_views``) have a member there.
        self._room_sources: dict[str, int] = {}
        #: room -> user id -> how many sources have that user there (the room's online count).
        self._room_users: dict[str, dict[str, int]] = {}
        self._watcher: Callable[[str], None] | None = None
        self._pruning = False

    def watch(self, changed: Callable[[str], None] | None) -> None:
        """Call ``changed(room)`` whenever a room's online count changes."""
        self._watcher = changed

    # -- reading -------------------------------------------------------------------------

    def live_items(self) -> Iterator[tuple[str, PeerView]]:
        """(replica id, view) of every replica heard from within its expiry."""
        now = self._clock()
        for rid, view in self._views.items():
            if now - view.seen <= EXPIRY_HEARTBEATS * view.interval:
                yield rid, view

    def live(self) -> Iterator[PeerView]:
        """The views of :meth:`live_items`."""
        return (view for _, view in self.live_items())

    def elsewhere(self, room: str, user_id: str) -> bool:
        """Whether a live peer has ``user_id`` in ``room``."""
        return any(user_id in v.rooms.get(room, ()) for v in self.live())

    def online(self, room: str) -> int:
        """Users in ``room`` on any source; O(replicas), not O(members)."""
        if not self._pruning:  # asked by the watcher while a view is being dropped
            self.prune()
        users = self._room_users.get(room)
        return len(users) if users else 0

    def has_user(self, room: str, user_id: str) -> bool:
        """Whether ``user_id`` is in ``room`` on any source; O(1)."""
        if not self._pruning:
            self.prune()
        return user_id in self._room_users.get(room, ())

    def room_count(self) -> int:
        """Rooms with a member on any source (peer views as last heard); O(1)."""
        return len(self._room_sources)

    # -- changing ------------------------------------------------------------------------

    def heard(self, message: dict[str, Any]) -> PeerView:
        """The view of the replica that sent ``message`` (created if new), marked seen now
        and updated with the status fields the message carries."""
        rid = message["replica"]
        view = self._views.get(rid)
        if view is None:
            view = self._views[rid] = PeerView()
            log.info("replica %s joined the cluster", rid)
        view.seen = self._clock()
        view.seen_wall = self._wall()
        interval = message.get("interval")
        if isinstance(interval, int | float) and 0 < interval <= 3600:
            view.interval = float(interval)
        connections = message.get("connections")
        if isinstance(connections, int):
            view.connections = connections
        version = message.get("version")
        if isinstance(version, str):
            view.version = version[:64]
        return view

    def apply_delta(self, view: PeerView, room: str, user_id: str, name: str, join: bool) -> None:
        """Apply one join or leave to ``view`` and the counts."""
        had = user_id in view.rooms.get(room, ())
        if moved := view.apply(room, user_id, name, join):
            self.count_room(room, moved)
        if had != (user_id in view.rooms.get(room, ())):
            self.count_user(room, user_id, -1 if had else 1)

    def replace(self, view: PeerView, rooms: dict[str, dict[str, str]], seq: int) -> None:
        """Replace ``view``'s rooms by a complete snapshot's, adjusting the counts by the difference."""
        merged = {room: users for room, users in rooms.items() if users}  # counts need no empties
        for gone in view.rooms.keys() - merged.keys():
            self.count_room(gone, -1)
        for new in merged.keys() - view.rooms.keys():
            self.count_room(new, 1)
        for room in merged.keys() | view.rooms.keys():
            old, now = view.rooms.get(room, {}), merged.get(room, {})
            for uid in old.keys() - now.keys():
                self.count_user(room, uid, -1)
            for uid in now.keys() - old.keys():
                self.count_user(room, uid, 1)
        view.rooms, view.seq = merged, seq

    def prune(self) -> None:
        """Drop the views of replicas not heard from within their expiry."""
        now = self._clock()
        self._pruning = True
        try:
            for rid in [
                rid for rid, v in self._views.items() if now - v.seen > EXPIRY_HEARTBEATS * v.interval
            ]:
                log.info("replica %s expired from presence (no heartbeat)", rid)
                self.drop(rid)
        finally:
            self._pruning = False

    def drop(self, rid: str) -> PeerView | None:
        """Forget replica ``rid``'s view and its part of the counts; the view, if there was one."""
        view = self._views.pop(rid, None)
        if view is not None:
            for room, users in view.rooms.items():
                self.count_room(room, -1)
                for uid in users:
                    self.count_user(room, uid, -1)
        return view

    def count_room(self, room: str, delta: int) -> None:
        """One source more (+1) or fewer (-1) with a member in ``room``."""
        sources = self._room_sources.get(room, 0) + delta
        if sources > 0:
            self._room_sources[room] = sources
        else:
            self._room_sources.pop(room, None)

    def count_user(self, room: str, user_id: str, delta: int) -> None:
        """One source more (+1) or fewer (-1) with ``user_id`` in ``room``."""
        users = self._room_users.setdefault(room, {})
        sources = users.get(user_id, 0) + delta
        if sources > 0:
            users[user_id] = sources
        else:
            users.pop(user_id, None)
            if not users:
                del self._room_users[room]
        if (sources <= 0 or sources == delta > 0) and self._watcher is not None:
            self._watcher(room)  # the user arrived in or left the room for the cluster
