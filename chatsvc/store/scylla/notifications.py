"""The offline-notification part of :class:`~chatsvc.store.scylla.store.ScyllaStore`
(issue 24): the outbox StreamNotifications reads, and the relay to ``CHATSVC_NOTIFY_TOPIC``
(:mod:`chatsvc.chat.notify_relay`) produces from, when the store is ScyllaDB.

Tables (``schema.NOTIFY_MIGRATION``, docs/scylla.md), one per query, no ALLOW FILTERING:

* ``notifications_by_user`` ((user, day), message): the claim. ``INSERT ... IF NOT
  EXISTS`` (a lightweight transaction, paid only for an offline recipient) lets exactly one
  of any number of replicas, retries and restarts notify a (user, message); the row keeps
  the position it was given, so a writer that lost the race deletes its own log row and
  rewrites the claimed one rather than leaving a second. The log row is written before
  the claim (:meth:`ScyllaNotifications.add_notification`), and a reader returns a row only
  if the claim names its position (a dead writer's row is not the one its message's re-run
  claimed), claiming an unclaimed row itself (:meth:`ScyllaNotifications._is_claimed`).
* ``notified_messages`` ((room, message)): the history writer finished the message's
  notifications (``NotifiedMessages``), so its re-runs skip it.
* ``notification_log`` ((hour, shard), position, user, message): the outbox in position
  order. An hour of the whole cluster's notifications is spread over ``SHARDS``
  partitions by user, so no partition grows with the cluster's rate alone; a page reads the
  hour's shards after the position and merges them.

Positions are ``(written ms << 22) | 22 bits of a hash of (user, message)``: increasing
with time, unique unless two pairs collide in the same millisecond (the clustering key
keeps both rows even then). Several replicas write with their own clocks, so a row can
land slightly after a later position was read: a page never returns positions newer than
``SETTLE_MS`` ago, which is what a stream waits for. Rows expire with the idempotency TTL
(7 days); a stream from 0 starts at the oldest hour still kept.
"""

from __future__ import annotations

import asyncio
import heapq
import time
import zlib
from collections.abc import Awaitable, Sequence

from chatsvc.model.ids import timestamp_ms
from chatsvc.model.rooms import Notification
from chatsvc.store.scylla.driver import Row, ScyllaSession
from chatsvc.store.scylla.schema import IDEMPOTENCY_TTL_SECONDS

#: Partitions per hour of the log.
SHARDS = 8
#: Positions written less than this long ago are not read yet (write latency, clock skew).
SETTLE_MS = 2_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
HASH_BITS = 22
_META_SCOPE = "notifications"
#: Above any hour: the first-hour cell is written USING TIMESTAMP BIG - hour (earliest wins).
_BIG = 1 << 50


def position_of(written_ms: int, user_id: str, message_id: str) -> int:
    """The log position of (user, message) written at ``written_ms``."""
    digest = zlib.crc32(f"{user_id}\0{message_id}".encode()) & ((1 << HASH_BITS) - 1)
    return (written_ms << HASH_BITS) | digest


def hour_of(position: int) -> int:
    """The log hour (partition) of a position."""
    return (position >> HASH_BITS) // HOUR_MS


def shard_of(user_id: str) -> int:
    """The log shard of a user's notifications."""
    return zlib.crc32(user_id.encode()) % SHARDS


def _now_ms() -> int:
    return int(time.time() * 1000)


def _day(message_id: str) -> int:
    return timestamp_ms(message_id) // DAY_MS


class ScyllaNotifications:
    """:class:`~chatsvc.store.base.NotificationOutbox` and the claim on CQL; mixed into ScyllaStore."""

    #: ScyllaStore's session.
    _db: ScyllaSession
    #: The earliest hour this process recorded in notification_meta.
    _notify_first_hour: int | None = None

    def _notify_cql(self, name: str, params: Sequence[object]) -> Awaitable[list[Row]]:
        return self._db.run(name, params)

    def _outbox_end(self) -> int:
        """The last position a page may return now (positions are time: now less the
        settle delay, so a write still settling lies after it)."""
        return (_now_ms() - SETTLE_MS) << HASH_BITS

    async def claim_notification(self, user_id: str, message_id: str, position: int = 0) -> bool:
        """Take (user, message) for this caller; False if any caller took it before."""
        rows = await self._notify_cql("notif_claim", (user_id, _day(message_id), message_id, position))
        return bool(rows and rows[0][0])

    async def add_notification(self, notification: Notification) -> bool:
        """Write the log row, then claim the pair under its position; True if this call
        notified. The row goes first so that a process dying between the two writes leaves
        the notification in the outbox rather than a claim without it (a notification nobody
        would read). A call that
        finds the pair claimed under another position deletes its own row (readers pass it
        over in any case: not the claimed position) and rewrites the claimed one (an upsert
        of the same row, completing a first writer that failed half-way)."""
        n = notification
        position = position_of(_now_ms(), n.user_id, n.message_id)
        await self._put_log(position, n)
        if await self.claim_notification(n.user_id, n.message_id, position):
            return True
        claimed = await self._claimed_position(n)
        if claimed == position:
            return False  # a writer in the same millisecond: the very same row, theirs (the
            # claim is never retried by the driver, so "not applied" is never our own)
        await self._notify_cql(
            "notif_log_delete", (hour_of(position), shard_of(n.user_id), position, n.user_id, n.message_id)
        )
        if claimed:  # else expired, or claimed by a version without the row (position 0)
            await self._put_log(claimed, n)
        return False

    async def notifications_done(self, room: str, message_id: str) -> bool:
        """NotifiedMessages: one partition read."""
        return bool(await self._notify_cql("notif_done_get", (room, message_id)))

    async def mark_notifications_done(self, room: str, message_id: str) -> None:
        """NotifiedMessages: an upsert (idempotent)."""
        await self._notify_cql("notif_done_put", (room, message_id))

    async def _put_log(self, position: int, n: Notification) -> None:
        hour = hour_of(position)
        if self._notify_first_hour is None or hour < self._notify_first_hour:
            await self._notify_cql("notif_first_put", (_BIG - hour, hour, _META_SCOPE))
            self._notify_first_hour = hour
        await self._notify_cql(
            "notif_log_put",
            (
                hour,
                shard_of(n.user_id),
                position,
                n.user_id,
                n.message_id,
                n.room,
                n.sender,
                n.preview,
                n.kind,
                n.created_at_ms,
            ),
        )

    async def notifications_after(self, position: int, limit: int) -> list[tuple[int, Notification]]:
        """Up to ``limit`` notifications after ``position`` and at least ``SETTLE_MS`` old,
        oldest first: hour by hour, each hour's shards merged; only the row each pair is
        claimed under (:meth:`_is_claimed`). A page may hold fewer than ``limit`` though
        more follow only when its last row is the newest readable one."""
        now = _now_ms()
        cutoff = (now - SETTLE_MS) << HASH_BITS
        hour = max(hour_of(position), (now - IDEMPOTENCY_TTL_SECONDS * 1000) // HOUR_MS)
        rows = await self._notify_cql("notif_first_get", (_META_SCOPE,))
        if not rows or rows[0][0] is None:
            return []  # nothing was ever notified
        hour = max(hour, int(rows[0][0]))  # no walk through hours before the first
        last = hour_of(cutoff)
        out: list[tuple[int, Notification]] = []
        while hour <= last and len(out) < limit:
            want = limit - len(out)
            slices = [
                await self._notify_cql("notif_log_after", (hour, shard, position, cutoff, want))
                for shard in range(SHARDS)
            ]
            page: list[tuple[int, Notification]] = []
            for row in heapq.merge(*slices, key=lambda row: (int(row[0]), str(row[1]), str(row[2]))):
                if len(page) >= want:
                    break
                p, user, message, room, sender, preview, kind, created = row
                page.append((int(p), Notification(user, room, message, sender, preview, kind, int(created))))
            claimed = await asyncio.gather(*(self._is_claimed(p, n) for p, n in page))
            out.extend(entry for entry, ok in zip(page, claimed, strict=True) if ok)
            if len(page) < want:
                hour += 1  # this hour is read to the cutoff
            else:  # rows passed over: the rest of the hour after the last one read
                position = page[-1][0]
        return out

    async def _is_claimed(self, position: int, n: Notification) -> bool:
        """Whether the row at ``position`` is the pair's notification: the one its claim
        names. A pair can have a second row: a writer that died between its row and its
        claim leaves one, which the history writer's re-run of the message does not know
        (it writes and claims its own), and a loser slower than ``SETTLE_MS`` deletes its
        row only after readers may see it. A row with no claim yet (its writer died, or its
        claim is still on the way) is claimed here, so whoever claims first, the reader or
        a writer, decides once for everyone."""
        claimed = await self._claimed_position(n)
        if claimed is None:
            if await self.claim_notification(n.user_id, n.message_id, position):
                return True
            claimed = await self._claimed_position(n)
        return claimed == position

    async def _claimed_position(self, n: Notification) -> int | None:
        """The position the pair's claim names (0: claimed by a version without log rows);
        None if it is not claimed (or the claim expired)."""
        found = await self._notify_cql("notif_claim_get", (n.user_id, _day(n.message_id), n.message_id))
        return int(found[0][0]) if found and found[0][0] is not None else None
