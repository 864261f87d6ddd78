"""The notification relay's state in :class:`~chatsvc.store.memory.MemoryStore` (issue 24):
one process, so the lease only has to outlive nothing; kept for the same contract."""

from __future__ import annotations

import time
from dataclasses import dataclass

from chatsvc.model.rooms import Notification
from chatsvc.store.base import LeaseTaken


@dataclass
class _Relay:
    position: int
    owner: str | None = None
    until: float = 0.0


class MemoryRelay:
    """:class:`~chatsvc.store.base.NotificationRelayState` in a dict; mixed into MemoryStore."""

    #: MemoryConversations' outbox (its length is its end position).
    _outbox: list[Notification]

    def __init__(self) -> None:
        super().__init__()
        self._relays: dict[str, _Relay] = {}

    def _check(self) -> None:
        raise NotImplementedError  # MemoryStore's

    async def start_relay(self, scope: str) -> None:
        """Start at the outbox's end unless started."""
        self._check()
        self._relays.setdefault(scope, _Relay(len(self._outbox)))

    async def take_relay(self, scope: str, owner: str, lease_seconds: int) -> LeaseTaken:
        """Renew one's own lease, or take a free or lapsed one."""
        self._check()
        relay = self._relays.setdefault(scope, _Relay(0))
        now = time.monotonic()
        if relay.owner not in (None, owner) and relay.until > now:
            return None
        renewed = relay.owner == owner
        relay.owner, relay.until = owner, now + lease_seconds
        return "renewed" if renewed else "taken"

    async def relay_position(self, scope: str) -> int:
        """0 for a scope never started."""
        self._check()
        relay = self._relays.get(scope)
        return 0 if relay is None else relay.position

    async def record_relayed(self, scope: str, owner: str, position: int) -> bool:
        """Only the lease's owner moves the position."""
        self._check()
        relay = self._relays.get(scope)
        if relay is None or relay.owner != owner or relay.until <= time.monotonic():
            return False
        relay.position = position
        return True

    async def release_relay(self, scope: str, owner: str) -> None:
        """Free the lease if held by ``owner``."""
        self._check()
        relay = self._relays.get(scope)
        if relay is not None and relay.owner == owner:
            relay.owner = None
