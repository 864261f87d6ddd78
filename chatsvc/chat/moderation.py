"""Bans and mutes, and the cluster-wide actions that enforce them.

* Records live in the history store (``set_moderation``/``clear_moderation``/
  ``get_moderation``), so every replica — and a restarted one — sees the same bans.
* :class:`ModerationRecords` answers the namespace's ``is_banned`` (at connect) and
  ``is_muted`` (per message) from a per-replica cache (LRU, bounded). A change is written
  to the store, dropped from the local cache and announced as a ``moderation.changed``
  control message so every other replica drops its cached entry too. If that message is
  lost (bus down), cached entries still expire after ``ttl`` seconds: a replica is never
  stale for longer than that. While the store is down, an expired entry is still served
  (known users keep connecting, known bans keep holding); a user with no entry at all
  gets ``StoreUnavailable`` (the namespace refuses the connection with that code).
* :class:`Moderator` adds what needs the sockets: disconnecting a user and kicking a user
  from a room on every replica (:class:`~chatsvc.chat.cluster.ClusterActions`), and a ban
  that also closes the user's current sockets.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from chatsvc.chat.cluster import ClusterActions, ControlRouter, Reach
from chatsvc.errors import ChatError, Forbidden, StoreUnavailable
from chatsvc.model.messages import Moderation
from chatsvc.store.base import ModerationStore

log = logging.getLogger(__name__)

BAN = "ban"
MUTE = "mute"
#: The room of a ban: it applies to the whole service.
SERVICE_WIDE = ""

_Key = tuple[str, str, str]


class Disconnected(ChatError):
    """Why a socket was closed by an administrator (``session_end`` code ``disconnected``)."""

    code = "disconnected"
    default_message = "disconnected by an administrator"


class ModerationRecords:
    """Ban and mute records: the store is the truth, a short-lived cache makes checks cheap."""

    def __init__(
        self,
        store: ModerationStore,
        router: ControlRouter,
        *,
        ttl: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._router = router
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._monotonic = monotonic
        self._cache: OrderedDict[_Key, tuple[float, Moderation | None]] = OrderedDict()
        router.route("moderation.changed", self._on_changed)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def is_banned(self, user_id: str) -> bool:
        """Whether ``user_id`` is banned right now (the namespace refuses the connection)."""
        return await self.active(BAN, SERVICE_WIDE, user_id) is not None

    async def is_muted(self, room: str, user_id: str) -> bool:
        """Whether ``user_id`` may not post in ``room`` right now."""
        return await self.active(MUTE, room, user_id) is not None

    async def active(self, kind: str, room: str, user_id: str) -> Moderation | None:
        """The record for ``(kind, room, user_id)`` if it applies now; raises ``StoreUnavailable``."""
        key = (kind, room, user_id)
        cached = self._cache.get(key)
        if cached is not None and self._monotonic() - cached[0] < self._ttl:
            self._cache.move_to_end(key)
            record = cached[1]
        else:
            try:
                record = await self._store.get_moderation(kind, room, user_id)
            except StoreUnavailable:
                if cached is None:
                    raise  # nothing known: refuse rather than guess (the caller maps the error)
                # Serve the last known answer while the store is down: known users keep
                # connecting and a known ban keeps holding.
                return cached[1] if cached[1] is not None and cached[1].active(self._now_ms()) else None
            self._remember(key, record)
        return record if record is not None and record.active(self._now_ms()) else None

    def _remember(self, key: _Key, record: Moderation | None) -> None:
        self._cache[key] = (self._monotonic(), record)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)

    def invalidate(self, kind: str, room: str, user_id: str) -> None:
        """Forget the cached record (it changed elsewhere)."""
        self._cache.pop((kind, room, user_id), None)

    async def set(self, record: Moderation) -> None:
        """Store a ban or mute and tell every replica."""
        await self._store.set_moderation(record)
        await self._changed(record.kind, record.room, record.user_id)

    async def clear(self, kind: str, room: str, user_id: str) -> None:
        """Lift a ban or mute and tell every replica (no error if there was none)."""
        await self._store.clear_moderation(kind, room, user_id)
        await self._changed(kind, room, user_id)

    async def _changed(self, kind: str, room: str, user_id: str) -> None:
        self.invalidate(kind, room, user_id)
        try:
            await self._router.publish("moderation.changed", {"kind": kind, "room": room, "user_id": user_id})
        except ChatError as exc:
            # Stored already; the other replicas' caches expire within the TTL.
            log.warning(
                "%s of %s stored but not announced (%s); other replicas apply it within %.0fs",
                kind,
                user_id,
                exc.message,
                self._ttl,
            )

    async def _on_changed(self, message: dict[str, Any]) -> None:
        kind, room, user_id = (message.get(k) for k in ("kind", "room", "user_id"))
        if isinstance(kind, str) and isinstance(room, str) and isinstance(user_id, str):
            self.invalidate(kind, room, user_id)


class SocketControl(Protocol):
    """What the moderator needs from the Socket.IO namespace (this replica's sockets)."""

    async def disconnect_user(self, user_id: str, reason: ChatError) -> int:
        """End every local socket of ``user_id`` with ``session_end``; return how many."""
        ...

    async def kick(self, room: str, user_id: str, reason: str) -> int:
        """Take the user's local sockets out of ``room``; return how many."""
        ...


class Moderator:
    """Moderation actions that reach every replica's sockets."""

    def __init__(
        self,
        records: ModerationRecords,
        actions: ClusterActions,
        sockets: SocketControl,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._records = records
        self._actions = actions
        self._sockets = sockets
        self._clock = clock
        actions.register("disconnect", self._disconnect_here)
        actions.register("kick", self._kick_here)

    @property
    def records(self) -> ModerationRecords:
        """The ban/mute records and their cache."""
        return self._records

    def _until(self, duration_seconds: float | None) -> int | None:
        if not duration_seconds:
            return None
        return int(self._clock() * 1000 + duration_seconds * 1000)

    async def disconnect_user(self, user_id: str, reason: str) -> Reach:
        """Close every socket of ``user_id`` on every replica (``session_end`` ``disconnected``)."""
        return await self._actions.run(
            "disconnect", {"user_id": user_id, "code": Disconnected.code, "message": reason}
        )

    async def kick(self, room: str, user_id: str, reason: str) -> Reach:
        """Take ``user_id`` out of ``room`` on every replica (they may join again)."""
        return await self._actions.run("kick", {"room": room, "user_id": user_id, "reason": reason})

    async def mute(self, room: str, user_id: str, duration_seconds: float | None, reason: str) -> Moderation:
        """Refuse the user's messages in ``room`` until the duration ends (``None``: until unmuted)."""
        record = Moderation(MUTE, room, user_id, self._until(duration_seconds), reason)
        await self._records.set(record)
        return record

    async def unmute(self, room: str, user_id: str) -> None:
        """Lift a mute."""
        await self._records.clear(MUTE, room, user_id)

    async def ban(
        self, user_id: str, duration_seconds: float | None, reason: str
    ) -> tuple[Moderation, Reach]:
        """Refuse the user's connections, then close the sockets they have now."""
        record = Moderation(BAN, SERVICE_WIDE, user_id, self._until(duration_seconds), reason)
        await self._records.set(record)
        message = f"you are banned: {reason}" if reason else "you are banned"
        reach = await self._actions.run(
            "disconnect",
            {"user_id": user_id, "code": Forbidden.code, "message": message, "ban": True},
        )
        return record, reach

    async def unban(self, user_id: str) -> None:
        """Lift a ban."""
        await self._records.clear(BAN, SERVICE_WIDE, user_id)

    async def _disconnect_here(self, args: dict[str, Any]) -> int:
        user_id, code, message = args.get("user_id"), args.get("code"), args.get("message")
        if not isinstance(user_id, str) or not isinstance(message, str):
            return 0
        if args.get("ban"):
            # The ban announcement may arrive after this request: don't let a stale cache
            # entry readmit the user we are about to disconnect.
            self._records.invalidate(BAN, SERVICE_WIDE, user_id)
        reason: ChatError = Forbidden(message) if code == Forbidden.code else Disconnected(message)
        return await self._sockets.disconnect_user(user_id, reason)

    async def _kick_here(self, args: dict[str, Any]) -> int:
        room, user_id, reason = args.get("room"), args.get("user_id"), args.get("reason")
        if not isinstance(room, str) or not isinstance(user_id, str) or not isinstance(reason, str):
            return 0
        return await self._sockets.kick(room, user_id, reason)
