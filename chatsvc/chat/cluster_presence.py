"""Presence across replicas: who is online in which room, cluster-wide.

Design
------
Each replica keeps its own sockets in a :class:`~chatsvc.chat.presence.LocalPresence`
and shares a *view* of it — room → {user id: name} — over the bus's control channel
(:mod:`chatsvc.chat.cluster`). Every replica merges the live views of the others with
its own, so ``online``, ``members``, ``rooms`` and ``user_count`` (what the namespace's
``presence`` events, the admin API's Presence/ListRooms/GetRoom and Info report) are
cluster-wide.

Messages (all from one replica go through one ordered sender task, each numbered with a
per-replica ``seq``):

* ``presence.delta`` {seq, change: {room, user, action: join|leave}}: sent when a user's *first* socket
  on this replica joins a room or their *last* one leaves it.
* ``presence.heartbeat`` {seq, interval, connections, version}: every ``interval``
  seconds. A view not heard from for ``EXPIRY_HEARTBEATS`` intervals is dropped (a
  crashed replica's users disappear within ~3 heartbeats). A receiver whose view is
  behind the heartbeat's ``seq`` (a delta was lost) asks that replica for a snapshot.
* ``presence.snapshot`` {seq, part, parts, rooms}: the whole view, in parts of at most
  ``SNAPSHOT_PART_ENTRIES`` memberships so a large replica never exceeds the bus's
  message size; sent at startup, on request, and every ``SNAPSHOT_EVERY`` heartbeats as
  a safety net. A complete snapshot replaces the receiver's view of that replica.
* ``presence.sync`` {to?}: "send me your snapshot" (at startup: to everyone).
* ``presence.bye``: a replica stopping cleanly; receivers drop its view at once.

What is heard is kept in :mod:`chatsvc.chat.presence_views`, which also keeps the counts
that metrics and each room's ``online`` read in O(1) (issue 26).

A delta whose ``seq`` is not newer than the view's is stale (the snapshot that replaced
the view already reflects it) and is ignored, so reordering never resurrects a user.

``join``/``leave`` report ``changed`` only when the user's presence changes for the
*cluster* (their first socket anywhere joined, their last one anywhere left), so a room
sees one ``presence`` join for a user connected to two replicas.

With the in-process bus there are no peers and this behaves exactly like LocalPresence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from chatsvc.auth.identity import Identity
from chatsvc.chat.cluster import ControlRouter
from chatsvc.chat.presence import LocalPresence, PresenceChange
from chatsvc.chat.presence_views import EXPIRY_HEARTBEATS, PeerView, PeerViews, ReplicaView
from chatsvc.errors import ChatError

log = logging.getLogger(__name__)

__all__ = ["EXPIRY_HEARTBEATS", "ClusterPresence", "ReplicaView"]

SNAPSHOT_EVERY = 10
SNAPSHOT_PART_ENTRIES = 2000
OUTBOX_MAX = 10_000
#: First retry delay of a failed publish; retries then double up to one heartbeat interval.
#: A publish while the bus is known down fails at once, so retrying that often is cheap,
#: and it is what resyncs presence within an interval of the bus returning (issue 21: a
#: 30 s cap left it stale ~11 s after the broker came back).
FIRST_BACKOFF_SECONDS = 0.5
#: While publishing fails, how often the bus's health is polled (an in-memory flag).
BUS_POLL_SECONDS = 0.1


class ClusterPresence:
    """A :class:`~chatsvc.chat.presence.PresenceRegistry` merging every replica's view."""

    def __init__(
        self,
        router: ControlRouter,
        *,
        version: str,
        connections: Callable[[], int],
        heartbeat_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        channel: str = "presence",
        bus_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``channel`` prefixes the control types: a second registry on another channel
        (chatsvc.chat.online: who is connected at all) shares the machinery, not the state.
        ``bus_ready``: the bus's health check (raises while it is down); while publishing
        fails it is polled, so presence resyncs the moment the bus is back."""
        self._router = router
        self._channel = channel
        self._bus_ready = bus_ready
        self._version = version
        self._connections = connections
        self._interval = heartbeat_seconds
        self._clock = clock
        self._wall = wall_clock
        self._local = LocalPresence()
        self._peers = PeerViews(clock, wall_clock)
        self._seq = 0
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]] | None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._snapshot_due = True
        for type_, handler in (
            ("delta", self._on_delta),
            ("heartbeat", self._on_heartbeat),
            ("snapshot", self._on_snapshot),
            ("sync", self._on_sync),
            ("bye", self._on_bye),
        ):
            router.route(f"{channel}.{type_}", handler)

    @property
    def replica_id(self) -> str:
        """This replica's id."""
        return self._router.replica_id

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the sender and heartbeat loops; announce this replica and ask for the others."""
        if self._tasks:
            return
        self._outbox = asyncio.Queue(OUTBOX_MAX)
        self._enqueue("presence.sync", {})
        self._snapshot_due = True
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="presence-sender"),
            asyncio.create_task(self._heartbeat_loop(), name="presence-heartbeat"),
        ]

    async def aclose(self) -> None:
        """Say goodbye (best effort, bounded) and stop the loops; idempotent."""
        if not self._tasks:
            return
        heartbeat = self._tasks[1]
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        self._enqueue("presence.bye", {})
        if self._outbox is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(None)
        sender = self._tasks[0]
        try:
            async with asyncio.timeout(2.0):
                await asyncio.shield(sender)
        except TimeoutError:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        self._tasks = []
        self._outbox = None

    # -- PresenceRegistry ----------------------------------------------------------------

    async def join(self, room: str, user: Identity, sid: str) -> PresenceChange:
        change = await self._local.join(room, user, sid)
        if change.changed and change.online == 1:
            self._peers.count_room(room, 1)
        if change.changed:
            self._peers.count_user(room, user.user_id, 1)
        elsewhere = self._peers.elsewhere(room, user.user_id)
        if change.changed:
            self._delta(room, user, "join")
        return PresenceChange(change.changed and not elsewhere, await self.online(room))

    async def leave(self, room: str, user: Identity, sid: str) -> PresenceChange:
        change = await self._local.leave(room, user, sid)
        if change.changed and change.online == 0:
            self._peers.count_room(room, -1)
        if change.changed:
            self._peers.count_user(room, user.user_id, -1)
        elsewhere = self._peers.elsewhere(room, user.user_id)
        if change.changed:
            self._delta(room, user, "leave")
        return PresenceChange(change.changed and not elsewhere, await self.online(room))

    async def online(self, room: str) -> int:
        return self.online_now(room)

    def watch(self, changed: Callable[[str], None] | None) -> None:
        """Call ``changed(room)`` whenever a room's online count changes (a delta or
        snapshot from a peer included; chatsvc.chat.coalesce sends big rooms' counts then)."""
        self._peers.watch(changed)

    def online_now(self, room: str) -> int:
        """Users online in ``room`` on any live replica; O(replicas), not O(members)."""
        return self._peers.online(room)

    def has_user(self, room: str, user_id: str) -> bool:
        """Whether ``user_id`` is in ``room`` on any live replica; O(1)."""
        return self._peers.has_user(room, user_id)

    async def members(self, room: str) -> list[dict[str, str]]:
        merged = await self._members(room)
        return [{"id": uid, "name": merged[uid]} for uid in sorted(merged)]

    async def rooms(self) -> dict[str, int]:
        merged: dict[str, set[str]] = {}
        for room, users in await self._local_view():
            merged.setdefault(room, set()).update(users)
        for view in self._peers.live():
            for room, users in view.rooms.items():
                merged.setdefault(room, set()).update(users)
        return {room: len(users) for room, users in merged.items() if users}

    async def user_count(self) -> int:
        users: set[str] = set()
        for _, members in await self._local_view():
            users.update(members)
        for view in self._peers.live():
            for members in view.rooms.values():
                users.update(members)
        return len(users)

    def room_count(self) -> int:
        """Rooms with a member on any replica (peer views as last heard); O(1)."""
        return self._peers.room_count()

    def local_room_count(self) -> int:
        """Rooms with a socket on this replica; O(1)."""
        return self._local.local_room_count()

    # -- cluster -------------------------------------------------------------------------

    def peers(self) -> list[str]:
        """Ids of the other replicas heard from recently."""
        return sorted(rid for rid, _ in self._peers.live_items())

    async def replicas(self) -> list[ReplicaView]:
        """This replica first, then every live peer by id."""
        local_rooms = await self._local_view()
        users = {uid for _, members in local_rooms for uid in members}
        out = [
            ReplicaView(
                self.replica_id,
                self._version,
                self._connections(),
                len(local_rooms),
                len(users),
                self._wall(),
                local=True,
            )
        ]
        for rid, view in sorted(self._peers.live_items()):
            peer_users = {uid for members in view.rooms.values() for uid in members}
            out.append(
                ReplicaView(
                    rid, view.version, view.connections, len(view.rooms), len(peer_users), view.seen_wall
                )
            )
        return out

    # -- internals: local view -----------------------------------------------------------

    async def _members(self, room: str) -> dict[str, str]:
        merged = {m["id"]: m["name"] for m in await self._local.members(room)}
        for view in self._peers.live():
            for uid, name in view.rooms.get(room, {}).items():
                merged.setdefault(uid, name)
        return merged

    async def _local_view(self) -> list[tuple[str, dict[str, str]]]:
        out = []
        for room in sorted(await self._local.rooms()):
            out.append((room, {m["id"]: m["name"] for m in await self._local.members(room)}))
        return out

    # -- internals: sending --------------------------------------------------------------

    def _delta(self, room: str, user: Identity, action: str) -> None:
        self._seq += 1
        self._enqueue(
            "presence.delta",
            # Nested, not a top-level "room": the Kafka bus keys control records by a
            # top-level room, and one key (one partition) keeps this replica's deltas in order.
            {
                "seq": self._seq,
                "change": {"room": room, "user": user.public(), "action": action},
                **self._status(),
            },
        )

    def _enqueue(self, type_: str, body: dict[str, Any]) -> None:
        if self._outbox is None:
            return
        try:
            self._outbox.put_nowait((type_, body))
        except asyncio.QueueFull:
            # The bus is far behind: drop the delta; the next snapshot carries the state.
            self._snapshot_due = True

    async def _send_loop(self) -> None:
        assert self._outbox is not None
        outbox = self._outbox
        cap = max(self._interval, 0.01)
        backoff = first = min(FIRST_BACKOFF_SECONDS, cap)
        failing = False
        retry: tuple[str, dict[str, Any]] | None = None
        while True:
            item = retry if retry is not None else await outbox.get()
            retry = None
            if item is None:
                return
            type_, body = item
            try:
                if type_ == "presence.snapshot.request":
                    await self._send_snapshot()
                else:
                    await self._router.publish(type_.replace("presence", self._channel, 1), body)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    message = exc.message if isinstance(exc, ChatError) else repr(exc)
                    log.warning("presence: cannot publish to the bus (%s); retrying", message)
                    failing = True
                await self._bus_back(backoff)
                backoff = min(backoff * 2, cap)
                # Lost updates are repaired by a snapshot: the first thing sent once the bus is
                # back (issue 21), rather than the stale update that failed.
                retry = ("presence.snapshot.request", {}) if item[0] != "presence.bye" else item
                continue
            if failing:
                log.info("presence: bus reachable again; snapshot sent")
                failing = False
            backoff = first

    async def _bus_back(self, longest: float) -> None:
        """Sleep ``longest`` seconds, or less: until the bus says it is back."""
        if self._bus_ready is None:
            await asyncio.sleep(longest)
            return
        deadline = asyncio.get_running_loop().time() + longest
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            await asyncio.sleep(min(BUS_POLL_SECONDS, left))
            try:
                await self._bus_ready()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # still down: the bus logs why, once per outage
                log.debug("presence: bus still down (%r)", exc)
                continue
            return

    async def _send_snapshot(self) -> None:
        self._seq += 1
        seq = self._seq
        parts: list[dict[str, dict[str, str]]] = [{}]
        size = 0
        for room, users in await self._local_view():
            for uid, name in users.items():
                if size >= SNAPSHOT_PART_ENTRIES:
                    parts.append({})
                    size = 0
                parts[-1].setdefault(room, {})[uid] = name
                size += 1
        for index, rooms in enumerate(parts):
            await self._router.publish(
                f"{self._channel}.snapshot",
                {
                    "seq": seq,
                    "part": index,
                    "parts": len(parts),
                    "rooms": {room: sorted(users.items()) for room, users in rooms.items()},
                    **self._status(),
                },
            )

    def _status(self) -> dict[str, Any]:
        return {"interval": self._interval, "connections": self._connections(), "version": self._version}

    async def _heartbeat_loop(self) -> None:
        beats = 0
        while True:
            if self._snapshot_due or beats % SNAPSHOT_EVERY == 0:
                self._snapshot_due = False
                self._enqueue("presence.snapshot.request", {})
            else:
                self._enqueue("presence.heartbeat", {"seq": self._seq, **self._status()})
            self._peers.prune()
            beats += 1
            await asyncio.sleep(self._interval)

    # -- internals: receiving ------------------------------------------------------------

    async def _on_delta(self, message: dict[str, Any]) -> None:
        change = message.get("change")
        if not isinstance(change, dict):
            return
        seq = message.get("seq")
        room, user, action = (change.get(k) for k in ("room", "user", "action"))
        if not isinstance(seq, int) or not isinstance(room, str) or action not in {"join", "leave"}:
            return
        if not isinstance(user, dict) or not isinstance(uid := user.get("id"), str):
            return
        view = self._peers.heard(message)
        if seq <= view.seq:
            return
        if view.seq < 0 or seq > view.seq + 1:
            # A view built from deltas alone, or one that missed some: get the whole state.
            self._ask_snapshot(message["replica"], view)
        view.seq = seq
        self._peers.apply_delta(view, room, uid, str(user.get("name", uid)), action == "join")

    async def _on_heartbeat(self, message: dict[str, Any]) -> None:
        view = self._peers.heard(message)
        seq = message.get("seq")
        if isinstance(seq, int) and seq > view.seq:
            self._ask_snapshot(message["replica"], view)

    async def _on_snapshot(self, message: dict[str, Any]) -> None:
        seq, part, parts, rooms = (message.get(k) for k in ("seq", "part", "parts", "rooms"))
        if not (isinstance(seq, int) and isinstance(part, int) and isinstance(parts, int)):
            return
        if not isinstance(rooms, dict) or not 0 <= part < parts:
            return
        view = self._peers.heard(message)
        if seq <= view.seq:
            return
        if seq != view.parts_seq:
            view.parts, view.parts_seq = {}, seq
        view.parts[part] = {
            str(room): {str(uid): str(name) for uid, name in users}
            for room, users in rooms.items()
            if isinstance(users, list)
        }
        if len(view.parts) == parts:
            merged: dict[str, dict[str, str]] = {}
            for piece in view.parts.values():
                for room, users in piece.items():
                    merged.setdefault(room, {}).update(users)
            self._peers.replace(view, merged, seq)
            view.parts, view.parts_seq = {}, -1

    async def _on_sync(self, message: dict[str, Any]) -> None:
        self._peers.heard(message)
        target = message.get("to")
        if target is None or target == self.replica_id:
            self._enqueue("presence.snapshot.request", {})

    async def _on_bye(self, message: dict[str, Any]) -> None:
        if self._peers.drop(message["replica"]) is not None:
            log.info("replica %s left the cluster", message["replica"])

    def _ask_snapshot(self, rid: str, view: PeerView) -> None:
        now = self._clock()
        if now - view.sync_asked < view.interval:
            return
        view.sync_asked = now
        self._enqueue("presence.sync", {"to": rid})
