"""Who has a socket anywhere in the cluster (issue 24's offline detection).

Room presence (:mod:`chatsvc.chat.cluster_presence`) only knows sockets that joined a
room, yet a DM reaches a socket that only connected. So every socket is also entered, at
connect, in one pseudo-room of a *second* :class:`ClusterPresence` on the control channel
``online``: the same deltas, heartbeats, snapshots and expiry, with its own state, so
nothing of it shows in room presence, ``ListRooms`` or the room metrics.

Staleness (README, "Offline notifications"): a connect or disconnect on another replica
is known here one bus hop later (a delta on the Kafka topic); a lost delta is repaired by
the next heartbeat's snapshot request (``CHATSVC_CLUSTER_HEARTBEAT``, 2 s); a replica that
dies without its goodbye keeps its users online here for up to three heartbeats (6 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from chatsvc.auth.identity import Identity
from chatsvc.chat.cluster import ControlRouter
from chatsvc.chat.cluster_presence import ClusterPresence

#: The control channel, and the one pseudo-room every connected user is in.
CHANNEL = "online"
CONNECTED = "connected"


class OnlineUsers:
    """Connected users, cluster-wide."""

    def __init__(self, router: ControlRouter, *, version: str, heartbeat_seconds: float) -> None:
        self._registry = ClusterPresence(
            router,
            version=version,
            connections=lambda: 0,
            heartbeat_seconds=heartbeat_seconds,
            channel=CHANNEL,
        )
        #: This replica's own sockets, without waiting for the registry (set at assembly).
        self.local: Callable[[str], bool] = lambda _user: False
        self._heartbeat = heartbeat_seconds
        self._settled_at: float | None = None

    async def start(self) -> None:
        """Announce this replica and ask the others for their users."""
        await self._registry.start()
        # The others answer within a bus hop; a heartbeat is the bound README gives.
        self._settled_at = time.monotonic() + self._heartbeat

    async def settled(self) -> None:
        """Return once the registry has had a heartbeat since :meth:`start` to hear every
        replica's users (before that, users elsewhere would look offline); at once if it
        was never started (nothing would come)."""
        if self._settled_at is not None:
            wait = self._settled_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

    async def aclose(self) -> None:
        """Say goodbye (the others forget this replica's users at once) and stop."""
        await self._registry.aclose()

    async def connected(self, user: Identity, sid: str) -> None:
        """A socket of ``user`` connected here."""
        await self._registry.join(CONNECTED, user, sid)

    async def disconnected(self, user: Identity, sid: str) -> None:
        """A socket of ``user`` is gone from here."""
        await self._registry.leave(CONNECTED, user, sid)

    def anywhere(self, user_id: str) -> bool:
        """Whether ``user_id`` has a socket on this or any live replica."""
        return self.local(user_id) or self._registry.has_user(CONNECTED, user_id)
