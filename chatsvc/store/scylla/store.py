"""The store interfaces on ScyllaDB: rooms walked bucket by bucket, one-way cells written
at timestamps derived from their values (see the package docstring and docs/scylla.md)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import replace
from typing import Final

from chatsvc.errors import NotFound
from chatsvc.model.ids import lowest_id_at
from chatsvc.model.messages import HistoryPage, Message, Moderation, RoomInfo, StreamSlice
from chatsvc.settings import ScyllaSettings
from chatsvc.store.base import BUCKET_MS, bucket_of, encode_mentions, encode_reply, marks_pending
from chatsvc.store.scylla.cleanup import ScyllaCleanup
from chatsvc.store.scylla.conversations import ScyllaConversations
from chatsvc.store.scylla.driver import UNSET, Row, ScyllaSession
from chatsvc.store.scylla.flagged import ScyllaFlags
from chatsvc.store.scylla.modes import ScyllaModes
from chatsvc.store.scylla.notifications import ScyllaNotifications
from chatsvc.store.scylla.pending import PendingTracker, ScyllaPending
from chatsvc.store.scylla.reactions import ScyllaReactions
from chatsvc.store.scylla.recovery import ScyllaRecovery
from chatsvc.store.scylla.relay import ScyllaRelay
from chatsvc.store.scylla.rows import (
    SCAN_CHUNK,
    checked_id,
    id_write_time,
    message_bucket,
    message_from_row,
    messages_from_rows,
)
from chatsvc.store.scylla.stream import ScyllaStream
from chatsvc.store.scylla.threads import ScyllaThreads

#: A history call that meets this many consecutive empty buckets returns what it has with a
#: cursor at the last bucket it looked at; the client pages on from there. This bounds the
#: work of one call (a quiet room is mostly empty buckets) without ever hiding older history.
EMPTY_BUCKET_LIMIT: Final = 8
#: Rooms whose creation this process has written (skips rewriting it on every send).
ROOM_CACHE_SIZE: Final = 10_000
#: Stored for "until lifted" instead of a null.
PERMANENT_UNTIL_MS: Final = 2**63 - 1
#: Sorts after every id character (Crockford base32 is digits and upper case).
_ID_CEILING: Final = "~"
#: ``created_at``/``first_bucket`` are written USING TIMESTAMP (this - created ms), so the
#: earliest creation wins last-write-wins; the result stays a valid past timestamp.
_CREATION_TS_BASE: Final = 1 << 44


class ScyllaStore(
    ScyllaCleanup,
    ScyllaFlags,
    ScyllaModes,
    ScyllaReactions,
    ScyllaThreads,
    ScyllaConversations,
    ScyllaNotifications,
    ScyllaPending,
    ScyllaRelay,
    ScyllaRecovery,
):
    """:class:`~chatsvc.store.base.MessageStore` on a ScyllaDB (or Cassandra) cluster."""

    def __init__(self, settings: ScyllaSettings, *, positions: bool = True) -> None:
        """``positions``: number room streams (one writer per room, docs/delivery.md). Off
        when several replicas write (Kafka): their counters would hand out the same
        positions; records then come with their offset in the Kafka events topic as position
        (chatsvc.chat.streams), and this store keeps it."""
        self._db = ScyllaSession(settings)
        self._positions = positions
        self._run = self._db.run
        self._gather = self._db.gather
        self._rooms_written: OrderedDict[str, int] = OrderedDict()  # room -> earliest created ms
        self._stream = ScyllaStream(self._run)
        self._marks = PendingTracker()

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect to the cluster."""
        await self._db.open()

    async def aclose(self) -> None:
        """Shut the driver down; idempotent."""
        await self._db.aclose()

    async def migrate(self) -> None:
        """Create the keyspace and tables up to the current schema version; safe to repeat."""
        await self._db.migrate()

    async def ping(self) -> None:
        """A trivial query (and the statements prepared): readiness."""
        await self._db.ping()

    # -- messages -------------------------------------------------------------------------

    async def _room_state(self, room: str) -> tuple[int, int, str | None] | None:
        """(created ms, first bucket, last message id) or None for a room never written."""
        rows = await self._run("room_get", (room,))
        if not rows or rows[0][0] is None or rows[0][1] is None:
            return None
        created, first_bucket, last_id = rows[0]
        return int(created), int(first_bucket), None if last_id is None else str(last_id)

    def _room_writes(self, message: Message) -> list[Awaitable[list[Row]]]:
        writes: list[Awaitable[list[Row]]] = [
            self._run("room_last", (id_write_time(message.id), message.id, message.room))
        ]
        created = message.created_at_ms
        # Rewritten only for a message older than any this process wrote to the room (the
        # write is idempotent and earliest-wins; skipping it is just fewer writes).
        if created < self._rooms_written.get(message.room, created + 1):
            writes.append(
                self._run(
                    "room_create",
                    (_CREATION_TS_BASE - created, created, message_bucket(message.id), message.room),
                )
            )
            writes.append(self._run("room_name_put", (message.room,)))
        return writes

    def _remember_room(self, room: str, created_ms: int) -> None:
        self._rooms_written[room] = min(created_ms, self._rooms_written.get(room, created_ms))
        self._rooms_written.move_to_end(room)
        while len(self._rooms_written) > ROOM_CACHE_SIZE:
            self._rooms_written.popitem(last=False)

    async def _write(self, message: Message) -> Message:
        # Order matters. The room (first bucket, last id) and the idempotency key are written
        # before the message: once a message exists, paging can reach it and a retry finds it.
        # A failure in between leaves at most an empty bucket, a last id ahead of the newest
        # message, or a key without its message, which the retry completes (see append).
        writes = []
        marked = marks_pending(message)  # before numbering: one from the events log has its pos
        if self._positions:
            message = replace(message, pos=await self._stream.next_pos(message.room))
        if message.pos is not None:  # numbered here, or by the Kafka events topic (cluster mode)
            writes.extend(self._stream.writes(message.room, message.pos, "message", message.id))
        writes.extend(self._room_writes(message))
        if message.client_msg_id is not None:
            writes.append(
                self._run(
                    "key_put",
                    (
                        message.room,
                        message.user_id,
                        message.client_msg_id,
                        message.id,
                        message.created_at_ms,
                    ),
                )
            )
        if marked:  # before the message row: never a message without its mark (pending.py)
            self._marks.start(message.id)
            writes.append(self._mark_pending(message))
        try:
            await self._gather(*writes)
            await self._insert(message)
        finally:
            if marked:
                self._marks.done(message.id)
        self._remember_room(message.room, message.created_at_ms)
        return message

    async def _insert(self, message: Message) -> None:
        await self._run(
            "msg_insert",
            (
                message.room,
                message_bucket(message.id),
                message.id,
                message.user_id,
                message.user_name,
                message.text,
                message.created_at_ms,
                UNSET if message.client_msg_id is None else message.client_msg_id,
                UNSET if message.edited_at_ms is None else message.edited_at_ms,
                True if message.deleted else UNSET,
                message.kind,
                UNSET if message.pos is None else message.pos,
                UNSET if message.reply_to is None else encode_reply(message.reply_to),
                UNSET if not message.mentions else encode_mentions(message.mentions),
                UNSET if not message.tickers else encode_mentions(message.tickers),
                UNSET if message.sentiment is None else message.sentiment,
            ),
        )

    async def append(self, message: Message) -> tuple[Message, bool]:
        """Store ``message`` unless its ``(room, user_id, client_msg_id)`` was stored before.

        Check-then-write without a lightweight transaction: two sends of the same client
        message *at the same moment* (both past the check before either writes its key) are
        both stored. A client retries only after its ack timed out, so that window is a
        retry racing its own still-running original: rare, and the cost is one visible
        duplicate, never a lost message. An LWT (``INSERT ... IF NOT EXISTS``) would close
        it at the price of a Paxos round (4 round trips) on every send.
        """
        if message.client_msg_id is not None:
            keys = await self._run("key_get", (message.room, message.user_id, message.client_msg_id))
            if keys:
                original_id, created = str(keys[0][0]), int(keys[0][1])
                found = await self._get(message.room, original_id)
                if found is not None:
                    return message_from_row(message.room, found[0]), False
                # An earlier attempt wrote the key and failed before the message: finish it
                # under the original id, so every attempt converges on one message.
                message = replace(message, id=original_id, created_at_ms=created)
        return await self._write(message), True

    async def _get(self, room: str, message_id: str) -> tuple[Row, int] | None:
        rows = await self._run("msg_get", (room, message_bucket(message_id), message_id))
        if not rows or rows[0][1] is None:
            return None
        row = rows[0]
        return row[:14], int(row[14] or 0)

    async def get(self, room: str, message_id: str) -> Message | None:
        """One message by id (its bucket comes from the id)."""
        found = await self._get(room, message_id)
        return None if found is None else message_from_row(room, found[0])

    async def history(self, room: str, *, before: str | None, limit: int) -> HistoryPage:
        """Newest first, strictly older than ``before``, walking buckets backwards.

        Stops when the page is full, at the room's first bucket, or after
        :data:`EMPTY_BUCKET_LIMIT` consecutive empty buckets; in the last case the page may be
        short (even empty) and ``next_before`` points below the last bucket looked at.
        """
        if limit <= 0:
            return HistoryPage([], None)
        start = before if before is not None else _ID_CEILING
        want = limit + 1
        first = min(SCAN_CHUNK, want)
        # The bucket the page most likely starts in: the cursor's (the room's last id is never
        # below a cursor taken from its pages), else the current one (buckets span 10 days).
        guess = message_bucket(before) if before is not None else bucket_of(int(time.time() * 1000))
        state: tuple[int, int, str | None] | None
        if before is not None:
            # Paging on: a page found whole in the cursor's bucket needs no other read; the
            # room's state is read only to walk on to older buckets.
            guessed = await self._run("msg_before", (room, guess, start, first))
            whole = messages_from_rows(room, guessed)
            if len(whole) >= want:
                return self._page(whole, limit)
            state = await self._room_state(room)
        else:
            # The first page: the room's state and the likely bucket in one round trip; the
            # guess is used when the state confirms it.
            state, guessed = await self._state_and(room, self._run("msg_before", (room, guess, start, first)))
        if state is None:
            return HistoryPage([], None)
        _created, first_bucket, last_id = state
        top = message_bucket(last_id) if last_id is not None else bucket_of(int(time.time() * 1000))
        bucket = top if before is None else min(top, message_bucket(before))
        prefetched = guessed if bucket == guess else None
        found: list[Message] = []
        empty_run = 0
        while bucket >= first_bucket:
            in_bucket, ceiling = 0, start
            while len(found) < want:  # by chunks, so no result ever exceeds one driver page
                chunk = min(SCAN_CHUNK, want - len(found))
                if prefetched is not None:
                    rows, prefetched = prefetched, None
                else:
                    rows = await self._run("msg_before", (room, bucket, ceiling, chunk))
                in_bucket += len(rows)
                found.extend(messages_from_rows(room, rows))
                if len(rows) < chunk:
                    break
                ceiling = str(rows[-1][0])
            if len(found) >= want:
                break
            empty_run = 0 if in_bucket else empty_run + 1
            if empty_run >= EMPTY_BUCKET_LIMIT and bucket > first_bucket:
                return HistoryPage(found, lowest_id_at(bucket * BUCKET_MS))
            bucket -= 1
        return self._page(found, limit)

    async def _state_and(
        self, room: str, read: Awaitable[list[Row]]
    ) -> tuple[tuple[int, int, str | None] | None, list[Row]]:
        """The room's state and ``read``'s rows, read concurrently (both finish before the
        first failure is raised)."""
        state, rows = await asyncio.gather(self._room_state(room), read, return_exceptions=True)
        if isinstance(state, BaseException):
            raise state
        if isinstance(rows, BaseException):
            raise rows
        return state, rows

    @staticmethod
    def _page(found: list[Message], limit: int) -> HistoryPage:
        """The first ``limit`` of ``found`` (newest first), with a cursor when there is more."""
        page = found[:limit]
        return HistoryPage(page, page[-1].id if len(found) > limit else None)

    async def after(self, room: str, after_id: str, limit: int) -> list[Message]:
        """Oldest first, strictly newer than ``after_id``: buckets walked forwards up to the
        bucket of the room's last message (no early stop: a short answer means "no more")."""
        state = await self._room_state(room)
        if state is None or limit <= 0:
            return []
        _created, first_bucket, last_id = state
        last = message_bucket(last_id) if last_id is not None else bucket_of(int(time.time() * 1000))
        bucket = max(first_bucket, message_bucket(after_id))
        floor = after_id
        found: list[Message] = []
        while bucket <= last and len(found) < limit:
            chunk = min(SCAN_CHUNK, limit - len(found))
            rows = await self._run("msg_after", (room, bucket, floor, chunk))
            found.extend(messages_from_rows(room, rows))
            if len(rows) == chunk:
                floor = str(rows[-1][0])  # more in this bucket: page on by clustering key
            else:
                bucket += 1
        return found[:limit]

    async def edit(
        self, room: str, message_id: str, text: str, at_ms: int, *, tickers: tuple[str, ...] | None = None
    ) -> Message:
        """Replace the text (and the cashtags, when given) of a live message.

        An edit racing a delete must not bring text back. Our delete is an update (never a
        row delete), so no partial row can appear; and both sides write, then read back
        (at the configured consistency one of the two sees the other's write): if the
        message turned out deleted, the edit scrubs the text again and reports NotFound.
        """
        bucket = message_bucket(message_id)
        current = await self.get(room, message_id)
        if current is None or current.deleted:
            raise NotFound(f"no message {message_id} in {room}")
        if tickers is None:
            await self._run("msg_edit", (text, at_ms, room, bucket, message_id))
        else:
            await self._run(
                "msg_edit_tickers", (text, at_ms, encode_mentions(tickers) or "[]", room, bucket, message_id)
            )
        after = await self._get(room, message_id)
        if after is None:
            raise NotFound(f"no message {message_id} in {room}")
        row, written_at = after
        if row[7]:
            await self._scrub(room, bucket, message_id, row, written_at)
            raise NotFound(f"no message {message_id} in {room}")
        return message_from_row(room, row)

    async def delete(self, room: str, message_id: str, at_ms: int) -> Message:
        """Clear the text and set ``deleted`` (an update: the message stays as a placeholder)."""
        bucket = message_bucket(message_id)
        if await self._get(room, message_id) is None:
            raise NotFound(f"no message {message_id} in {room}")
        await self._run("msg_delete", (at_ms, room, bucket, message_id))
        after = await self._get(room, message_id)
        if after is None:
            raise NotFound(f"no message {message_id} in {room}")
        row, written_at = after
        await self._scrub(room, bucket, message_id, row, written_at)
        return message_from_row(room, row)

    async def _scrub(self, room: str, bucket: int, message_id: str, row: Row, written_at: int) -> None:
        """An edit that landed after the delete (by write time) left text: overwrite it."""
        if row[3]:
            await self._run("msg_scrub", (written_at + 1, room, bucket, message_id))

    # -- read markers ---------------------------------------------------------------------

    async def mark_read(self, room: str, user_id: str, message_id: str) -> None:
        """Written at a timestamp derived from the id, so the marker never moves back."""
        checked_id(message_id)
        # An id from the future (a crafted one) would pin the marker: cap its write time.
        written_at = min(id_write_time(message_id), int(time.time() * 1_000_000) + 60_000_000)
        await self._run("marker_put", (written_at, message_id, room, user_id))

    async def unread_count(self, room: str, user_id: str, cap: int) -> int:
        """Messages by others after the marker, newest buckets first, counted up to ``cap``."""
        if cap <= 0:
            return 0
        state, markers = await asyncio.gather(
            self._room_state(room), self._run("marker_get", (room, user_id))
        )
        if state is None:
            return 0
        _created, first_bucket, last_id = state
        marker = str(markers[0][0]) if markers and markers[0][0] is not None else ""
        bottom = max(first_bucket, message_bucket(marker)) if marker else first_bucket
        bucket = message_bucket(last_id) if last_id is not None else bucket_of(int(time.time() * 1000))
        count = 0
        while bucket >= bottom and count < cap:
            ceiling = _ID_CEILING
            while count < cap:
                rows = await self._run("msg_between", (room, bucket, marker, ceiling, SCAN_CHUNK))
                count += sum(1 for r in rows if r[1] is not None and r[1] != user_id and not r[2])
                if len(rows) < SCAN_CHUNK:
                    break
                ceiling = str(rows[-1][0])
            bucket -= 1
        return min(count, cap)

    # -- rooms ----------------------------------------------------------------------------

    async def list_rooms(self, *, after: str | None, limit: int) -> list[RoomInfo]:
        """Names from the room directory in order, then each room's state (concurrently)."""
        if limit <= 0:
            return []
        rows = await self._run("room_names", (after or "", limit))
        names = [str(r[0]) for r in rows]
        states = await self._gather(*(self._room_state(n) for n in names))
        rooms = []
        for name, state in zip(names, states, strict=True):
            if state is not None:
                created, _first, last_id = state
                rooms.append(RoomInfo(name, created, last_id))
        return rooms

    async def get_room(self, room: str) -> RoomInfo | None:
        """One room, or None if nothing was ever posted there."""
        state = await self._room_state(room)
        if state is None:
            return None
        created, _first, last_id = state
        return RoomInfo(room, created, last_id)

    # -- moderation -----------------------------------------------------------------------

    async def set_moderation(self, record: Moderation) -> None:
        """Upsert (a permanent record stores a far-future instant, not a null)."""
        until = PERMANENT_UNTIL_MS if record.until_ms is None else record.until_ms
        await self._run("mod_put", (record.kind, record.room, record.user_id, until, record.reason))

    async def clear_moderation(self, kind: str, room: str, user_id: str) -> None:
        """Delete the record (a rare single-row delete: one small tombstone)."""
        await self._run("mod_delete", (kind, room, user_id))

    async def get_moderation(self, kind: str, room: str, user_id: str) -> Moderation | None:
        """The record, if any."""
        rows = await self._run("mod_get", (kind, room, user_id))
        if not rows:
            return None
        until, reason = rows[0]
        until_ms = None if until is None or int(until) == PERMANENT_UNTIL_MS else int(until)
        return Moderation(kind, room, user_id, until_ms, str(reason or ""))

    # -- room streams -----------------------------------------------------------------------

    async def stream_epoch(self) -> str:
        """The keyspace's epoch (created at first use)."""
        return await self._stream.epoch()

    async def stream_after(self, room: str, pos: int, limit: int) -> StreamSlice:
        """Records after ``pos`` in position order (see chatsvc.store.scylla.stream), numbered
        here or (cluster mode) by the Kafka events topic."""
        return await self._stream.after(room, pos, limit, self.get)
