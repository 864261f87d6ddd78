"""The notification relay's state in :class:`~chatsvc.store.scylla.store.ScyllaStore`
(issue 24): which replica relays the outbox to the Kafka topic, and how far it got.

One row per relay scope (the topic) in ``notification_relay``, every change a lightweight
transaction on it, so of any number of replicas exactly one holds the lease:

* ``owner`` is written ``USING TTL`` (the lease): taking it is ``IF owner = null`` (true for
  a missing row and for a lapsed lease, whose cell has expired), renewing is ``IF owner =
  me``. The TTL runs on the node's clock, so replicas' clocks do not matter; a replica that
  dies without releasing is taken over once its lease lapses.
* ``position`` (no TTL: it outlives every lease) moves only ``IF owner = me``: a replica
  that lost its lease while it was producing cannot move it, whatever it believes.

Version 9 here (docs/scylla.md), self-contained so the lead can renumber it at merge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Final

from chatsvc.store.base import LeaseTaken

if TYPE_CHECKING:
    from chatsvc.store.scylla.driver import Row, ScyllaSession

MIGRATION: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS {ks}.notification_relay (
        scope text PRIMARY KEY,
        owner text,
        position bigint
    )""",
)

STATEMENTS: Final[dict[str, str]] = {
    "relay_start": "INSERT INTO {ks}.notification_relay (scope, position) VALUES (?, ?) IF NOT EXISTS",
    "relay_take": "UPDATE {ks}.notification_relay USING TTL ? SET owner = ? WHERE scope = ? IF owner = null",
    "relay_renew": "UPDATE {ks}.notification_relay USING TTL ? SET owner = ? WHERE scope = ? IF owner = ?",
    "relay_get": "SELECT position FROM {ks}.notification_relay WHERE scope = ?",
    "relay_record": "UPDATE {ks}.notification_relay SET position = ? WHERE scope = ? IF owner = ?",
    "relay_release": "DELETE owner FROM {ks}.notification_relay WHERE scope = ? IF owner = ?",
}
#: Conditional writes: a driver retry of one that applied would report "not applied".
NOT_IDEMPOTENT: Final = frozenset(STATEMENTS) - {"relay_get"}


class ScyllaRelay:
    """:class:`~chatsvc.store.base.NotificationRelayState` on CQL; mixed into ScyllaStore."""

    #: ScyllaStore's session.
    _db: ScyllaSession
    #: (scope, owner) leases this process took and has not seen lapse (replaced, never
    #: mutated: the class default is shared).
    _relay_mine: frozenset[tuple[str, str]] = frozenset()

    def _relay_cql(self, name: str, params: Sequence[object]) -> Awaitable[list[Row]]:
        return self._db.run(name, params)

    def _outbox_end(self) -> int:
        raise NotImplementedError  # ScyllaNotifications' (before this class in ScyllaStore)

    async def start_relay(self, scope: str) -> None:
        """Create the scope at the outbox's settled end unless it exists."""
        await self._relay_cql("relay_start", (scope, self._outbox_end()))

    async def take_relay(self, scope: str, owner: str, lease_seconds: int) -> LeaseTaken:
        """Renew (``IF owner = me``) when this process believes it holds the lease, else take
        a free or lapsed one (``IF owner = null``): one lightweight transaction per call in
        the steady state. A "not applied" that names us (a driver retry of one that applied)
        counts as taken."""
        key = (scope, owner)
        if key in self._relay_mine:
            rows = await self._relay_cql("relay_renew", (lease_seconds, owner, scope, owner))
            if rows and rows[0][0]:
                return "renewed"
            self._relay_mine -= {key}
        rows = await self._relay_cql("relay_take", (lease_seconds, owner, scope))
        if rows and (rows[0][0] or (len(rows[0]) > 1 and rows[0][1] == owner)):
            self._relay_mine |= {key}
            return "taken"
        return None

    async def relay_position(self, scope: str) -> int:
        """0 for a scope never started."""
        rows = await self._relay_cql("relay_get", (scope,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    async def record_relayed(self, scope: str, owner: str, position: int) -> bool:
        """Move the position if the lease is still ours."""
        rows = await self._relay_cql("relay_record", (position, scope, owner))
        return bool(rows and rows[0][0])

    async def release_relay(self, scope: str, owner: str) -> None:
        """Drop the lease if ours: the next replica takes over at once."""
        self._relay_mine -= {(scope, owner)}
        await self._relay_cql("relay_release", (scope, owner))
