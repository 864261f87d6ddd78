"""The connection state recovery part of :class:`~chatsvc.store.scylla.store.ScyllaStore`:
room events (``RoomEventLog``: one row per event in its (room, bucket) partition, expiring
with the table's TTL, plus the room's stream) and recovery sessions (``SessionStore``)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from chatsvc.model.messages import RoomEvent, SessionRecord
from chatsvc.store.base import bucket_of, event_of_row
from chatsvc.store.scylla.driver import UNSET
from chatsvc.store.scylla.rows import SCAN_CHUNK, message_bucket

if TYPE_CHECKING:
    from chatsvc.store.scylla.driver import Row, ScyllaSession
    from chatsvc.store.scylla.stream import ScyllaStream


class ScyllaRecovery:
    """:class:`~chatsvc.store.base.RoomEventLog` and :class:`~chatsvc.store.base.SessionStore`
    on CQL; mixed into ScyllaStore."""

    #: ScyllaStore's session, whether it numbers room streams, and its room streams.
    _db: ScyllaSession
    _positions: bool
    _stream: ScyllaStream

    def _recovery_cql(self, name: str, params: Sequence[object]) -> Awaitable[list[Row]]:
        return self._db.run(name, params)

    async def append_event(self, event: RoomEvent) -> RoomEvent:
        """One row in the event's (room, bucket) partition (expiring with the table's TTL)
        and one in the room's stream (kept, like messages); a repeated id keeps its position."""
        bucket = message_bucket(event.id)
        payload = json.dumps(event.payload)
        if not self._positions:  # an upsert: a repeat is harmless
            if event.pos is not None:  # its offset in the Kafka events topic (cluster mode)
                await self._db.gather(
                    *self._stream.writes(
                        event.room, event.pos, event.kind, event.id, event.message_id, payload
                    )
                )
            pos = UNSET if event.pos is None else event.pos
            await self._recovery_cql(
                "ev_insert", (event.room, bucket, event.id, event.kind, event.message_id, payload, pos)
            )
            return event
        seen = await self._recovery_cql("ev_get", (event.room, bucket, event.id))
        if seen and seen[0][4] is not None:
            return event_of_row(event.room, seen[0])
        pos = await self._stream.next_pos(event.room)
        await self._db.gather(
            *self._stream.writes(event.room, pos, event.kind, event.id, event.message_id, payload)
        )
        await self._recovery_cql(
            "ev_insert", (event.room, bucket, event.id, event.kind, event.message_id, payload, pos)
        )
        return replace(event, pos=pos)

    async def events_after(self, room: str, after_id: str, limit: int) -> list[RoomEvent]:
        """Buckets walked forwards from ``after_id``'s to now's (events are at most days old)."""
        if limit <= 0:
            return []
        bucket, last = message_bucket(after_id), bucket_of(int(time.time() * 1000))
        floor = after_id
        found: list[RoomEvent] = []
        while bucket <= last and len(found) < limit:
            chunk = min(SCAN_CHUNK, limit - len(found))
            rows = await self._recovery_cql("ev_after", (room, bucket, floor, chunk))
            found.extend(event_of_row(room, r) for r in rows)
            if len(rows) == chunk:
                floor = str(rows[-1][0])
            else:
                bucket += 1
        return found[:limit]

    # -- sessions -------------------------------------------------------------------------

    async def save_session(self, record: SessionRecord) -> None:
        """Written ``USING TTL`` until its expiry: the cluster forgets it by itself."""
        ttl = max(1, -(-(record.expires_at_ms - int(time.time() * 1000)) // 1000))
        await self._recovery_cql(
            "sess_put", (record.pid, record.user_id, record.data, record.expires_at_ms, ttl)
        )

    async def get_session(self, pid: str) -> SessionRecord | None:
        """The row while unexpired (TTL rounds up to a second, so the expiry is checked too)."""
        rows = await self._recovery_cql("sess_get", (pid,))
        if not rows or rows[0][0] is None:
            return None
        user_id, data, expires_at = rows[0]
        if int(expires_at) <= int(time.time() * 1000):
            return None
        return SessionRecord(pid, str(user_id), str(data), int(expires_at))

    async def delete_session(self, pid: str) -> bool:
        """A lightweight transaction (``IF expires_at > now``): of two concurrent claims one
        wins. Rare (once per recovery), so the Paxos round is worth a strictly one-use session."""
        rows = await self._recovery_cql("sess_take", (pid, int(time.time() * 1000)))
        return bool(rows and rows[0][0])
