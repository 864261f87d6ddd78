"""Marks of messages whose offline notifications are not written yet, in
:class:`~chatsvc.store.scylla.store.ScyllaStore` (issue 24, ``PendingNotifications``): the
embedded mode's crash safety on ScyllaDB without Kafka (one replica; with Kafka the events
log is the record and nothing is marked, ``base.marks_pending``).

CQL has no transaction spanning the message's partition and a mark's, so ``append`` writes
the mark *before* the message row (with the room and idempotency-key writes it already
waits for: no extra round trip on the path, and only for a message that may notify). A
message never exists without its mark; a mark without its message (the append failed after
it) is harmless: the sweep finds no message and drops the mark, once it is older than
:data:`MARGIN_MS` and not being written by this process (a message write still on the way).

Tables (``MIGRATION``, docs/scylla.md), no ALLOW FILTERING:

* ``notify_pending`` ((hour of the message id), message id, room): the marks, cleared by a
  row delete once the notifications are written (normally milliseconds after the mark). A
  mark that outlives the outbox is pointless, so rows expire with the idempotency TTL.
* ``notify_pending_floor`` (one row): every mark below this id is cleared. The partitions
  fill with the tombstones of cleared marks; a read that started at the table's beginning
  would step over all of them (until compaction purges them, hours later). So a read starts
  at the floor, a clustering bound the node seeks to, and walks the hours from there to
  now: normally one partition, and only the last minute's tombstones.

The floor moves up after a read to the lowest of: the marks it found, the marks this
process is writing or started since the read began (:class:`PendingTracker`), and now less
:data:`MARGIN_MS`. A mark older than that written later (a retry completing an earlier
attempt under its original id) lowers the floor itself before it is written. One process
marks (no Kafka: one replica); a new process's first read also starts at the lowest mark
it wrote before it (a clock behind the previous process's).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Final

from chatsvc.model.ids import lowest_id_at, timestamp_ms
from chatsvc.model.messages import Message

if TYPE_CHECKING:
    from chatsvc.store.scylla.driver import Row, ScyllaSession

#: Marks expire with the outbox (the idempotency TTL: schema.IDEMPOTENCY_TTL_SECONDS).
TTL_SECONDS: Final = 7 * 24 * 3600
HOUR_MS: Final = 3_600_000
#: How long a message write may still be on the way after its id was taken: the floor
#: stays this far behind now, and a mark without its message this young is kept.
MARGIN_MS: Final = 60_000
#: Marks read per round trip.
CHUNK: Final = 100
_SCOPE: Final = "pending"

MIGRATION: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS {ks}.notify_pending (
        hour int,
        message_id text,
        room text,
        PRIMARY KEY ((hour), message_id, room)
    ) WITH CLUSTERING ORDER BY (message_id ASC, room ASC)
      AND default_time_to_live = """
    + str(TTL_SECONDS)
    + """
      AND gc_grace_seconds = 10800""",
    """CREATE TABLE IF NOT EXISTS {ks}.notify_pending_floor (
        scope text PRIMARY KEY,
        floor text
    )""",
)

STATEMENTS: Final[dict[str, str]] = {
    "pend_put": "INSERT INTO {ks}.notify_pending (hour, message_id, room) VALUES (?, ?, ?)",
    "pend_after": (
        "SELECT message_id, room FROM {ks}.notify_pending"
        " WHERE hour = ? AND (message_id, room) > (?, ?) LIMIT ?"
    ),
    "pend_delete": "DELETE FROM {ks}.notify_pending WHERE hour = ? AND message_id = ? AND room = ?",
    "pend_floor_get": "SELECT floor FROM {ks}.notify_pending_floor WHERE scope = ?",
    "pend_floor_put": "UPDATE {ks}.notify_pending_floor SET floor = ? WHERE scope = ?",
}


def hour_of(message_id: str) -> int:
    """A mark's partition: the hour of its message's id."""
    return timestamp_ms(message_id) // HOUR_MS


def _now_ms() -> int:
    return int(time.time() * 1000)


class PendingTracker:
    """What this process is marking, so a read never moves the floor above a mark it could
    not see yet (written after the read passed its partition)."""

    def __init__(self) -> None:
        #: Ids of marks being written, with their message (until the append returns).
        self.writing: dict[str, int] = {}
        #: One list per read in progress: the ids of marks started since it began.
        self.watches: list[list[str]] = []
        #: The lowest id marked before this process's first read completed.
        self.before_first: str | None = None
        self.swept = False

    def start(self, message_id: str) -> None:
        self.writing[message_id] = self.writing.get(message_id, 0) + 1
        for watch in self.watches:
            watch.append(message_id)
        if not self.swept and (self.before_first is None or message_id < self.before_first):
            self.before_first = message_id

    def done(self, message_id: str) -> None:
        left = self.writing.pop(message_id, 1) - 1
        if left:
            self.writing[message_id] = left


class ScyllaPending:
    """:class:`~chatsvc.store.base.PendingNotifications` on CQL; mixed into ScyllaStore."""

    #: ScyllaStore's session and tracker.
    _db: ScyllaSession
    _marks: PendingTracker

    if TYPE_CHECKING:

        async def get(self, room: str, message_id: str) -> Message | None: ...

    def _pending_cql(self, name: str, params: Sequence[object]) -> Awaitable[list[Row]]:
        return self._db.run(name, params)

    async def _mark_pending(self, message: Message) -> list[Row]:
        """Append's mark, before the message row; the caller has called
        ``self._marks.start(message.id)`` already and calls ``done`` after the message."""
        if message.id < lowest_id_at(_now_ms() - MARGIN_MS):
            # An old id (a retry completing its first attempt): a read may have moved the
            # floor above it already. Lower it first; a read under way sees this mark in its
            # watch and will not move it above again.
            floor = await self._pending_floor()
            if floor is not None and message.id < floor:
                await self._pending_cql("pend_floor_put", (message.id, _SCOPE))
        return await self._pending_cql("pend_put", (hour_of(message.id), message.id, message.room))

    async def _pending_floor(self) -> str | None:
        rows = await self._pending_cql("pend_floor_get", (_SCOPE,))
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    async def pending_notifications(self, limit: int) -> list[Message]:
        """Up to ``limit`` marked messages, oldest first: the hours from the floor to now,
        each a slice of one partition. A mark whose message is not there (its append
        failed after the mark) is dropped once older than :data:`MARGIN_MS`."""
        marks = self._marks
        watch = list(marks.writing)
        marks.watches.append(watch)
        try:
            return await self._pending_read(limit, watch)
        finally:
            marks.watches.remove(watch)

    async def _pending_read(self, limit: int, watch: list[str]) -> list[Message]:
        if limit <= 0:
            return []
        now = _now_ms()
        stored = await self._pending_floor()
        start = stored if stored is not None else lowest_id_at(now - TTL_SECONDS * 1000)
        first_read = not self._marks.swept
        if first_read and self._marks.before_first is not None:
            start = min(start, self._marks.before_first)
        young = lowest_id_at(now - MARGIN_MS)
        found: list[Message] = []
        kept: list[str] = []  # marks left in place: their message may still be on the way
        hour, last = hour_of(start), now // HOUR_MS + 1  # + 1: an id a little ahead of this clock
        after: tuple[str, str] = (start, "")  # (message id, room): "" sorts below every room
        while len(found) < limit and hour <= last:
            rows = await self._pending_cql("pend_after", (hour, after[0], after[1], CHUNK))
            if rows:
                after = (str(rows[-1][0]), str(rows[-1][1]))
            if len(rows) < CHUNK:
                hour, after = hour + 1, ("", "")  # read to its end (unless the page fills first)
            messages = await self._db.gather(*(self.get(str(room), str(id_)) for id_, room in rows))
            for (id_, room), message in zip(rows, messages, strict=True):
                if len(found) >= limit:
                    break  # the rest is read again next time (the floor stays below it)
                if message is not None:
                    found.append(message)
                elif str(id_) >= young or str(id_) in self._marks.writing:
                    kept.append(str(id_))
                else:
                    await self._pending_cql("pend_delete", (hour_of(str(id_)), str(id_), str(room)))
        # Every mark below the new floor is cleared: the walk saw none it did not return or
        # keep, and a mark it could not see yet is in the watch.
        lows = [m.id for m in found] + kept + watch
        if len(found) < limit:  # the walk reached now
            lows.append(young)
        floor = min(lows) if lows else start
        if floor != stored:
            await self._pending_cql("pend_floor_put", (floor, _SCOPE))
        if first_read:
            self._marks.swept = True
        return found

    async def clear_pending_notification(self, room: str, message_id: str) -> None:
        """Its notifications are written: delete the mark (a missing one: no error)."""
        await self._pending_cql("pend_delete", (hour_of(message_id), message_id, room))
