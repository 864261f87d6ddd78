"""Reading a room's stream: history pages, ``join {since}`` catch-up by id or by position,
and the records after a position (chatsvc.chat.recovery_pos). Kept out of
chatsvc.chat.service, which delegates to it: the store's answer and, in cluster mode, what
this replica applied from the events log that the history writer has not written yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from chatsvc.chat.streams import RoomStreams
from chatsvc.chat.wire import position
from chatsvc.errors import InvalidMessageId, InvalidPayload
from chatsvc.metrics import Metrics
from chatsvc.model.ids import lowest_id_at, timestamp_ms
from chatsvc.model.messages import HistoryPage, Message, RoomEvent, StreamSlice
from chatsvc.settings import Limits
from chatsvc.store.base import MessageStore


@contextlib.contextmanager
def client_id(field: str) -> Iterator[None]:
    """The store's ``InvalidMessageId`` for an id a client sent is that client's bad payload.

    Callers validate ids first (chatsvc.chat.payloads, the admin servicer); this keeps the
    store's own check from reaching a client as anything but ``invalid_payload``.
    """
    try:
        yield
    except InvalidMessageId:
        raise InvalidPayload(f"'{field}' must be a message id") from None


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The answer to ``join {since: position}``.

    ``messages`` and ``events`` are the records after the position, in stream order;
    ``last`` is the position the answer is complete up to (the client's next ``since``).
    ``reset``: the position could not be answered from (another epoch, older than the
    store keeps, beyond its head): ``messages`` is then the newest page instead, and the
    client reloads rather than trusting what it holds.
    """

    messages: list[Message]
    events: list[RoomEvent]
    more: bool
    reset: bool
    last: str


class StreamReads:
    """The read side of chatsvc.chat.service.ChatService (which delegates to it)."""

    def __init__(
        self,
        store: MessageStore,
        metrics: Metrics,
        limits: Limits,
        streams: RoomStreams | None,
        epoch: Callable[[], Awaitable[str]],
    ) -> None:
        """``streams``: cluster mode, this replica's tail of the events log; ``epoch``: the
        service's stream epoch (read once, there)."""
        self._store = store
        self._metrics = metrics
        self._limits = limits
        self._streams = streams
        self._epoch = epoch

    async def history(self, room: str, before: str | None, limit: int) -> HistoryPage:
        """One page, newest first."""
        await self._epoch()
        with client_id("before"):
            async with self._metrics.timed_store("history"):
                page = await self._store.history(room, before=before, limit=limit)
        if self._streams is None or before is not None:
            return page
        # Cluster mode: the newest page also shows what the history writer has not written
        # yet, from this replica's tail (as sent: an edit not written yet shows live only).
        have = {m.id for m in page.messages}
        floor = page.messages[-1].id if page.next_before is not None and page.messages else ""
        extra = [m for m in self._streams.newest(room) if m.id not in have and m.id > floor]
        if not extra:
            return page
        merged = sorted([*page.messages, *extra], key=lambda m: m.id, reverse=True)
        kept = merged[:limit]
        cut = len(merged) > limit
        return HistoryPage(kept, kept[-1].id if (cut or page.next_before is not None) and kept else None)

    async def catch_up(self, room: str, since: str) -> tuple[list[Message], bool]:
        """Messages after ``since``, oldest first, at most ``catchup_max``; and whether more exist.

        Ids are minted by whichever replica stored the message, while live delivery follows
        the bus's order, so a client may have seen a message before an older-id one from
        another replica arrived. The answer therefore starts with the messages stored in the
        ``catchup_overlap_ms`` before ``since`` (the newest ``history_page_max`` of them),
        which the client may already have; clients drop repeats by id (they must anyway: a
        message stored while they rejoin comes both live and in the catch-up). ``has_more``
        counts only what is after ``since``, so paging on the last id always progresses.
        """
        limit = self._limits.catchup_max
        await self._epoch()
        with client_id("since"):
            async with self._metrics.timed_store("after"):
                after = await self._store.after(room, since, limit + 1)
            overlap = await self._overlap(room, since) if self._limits.catchup_overlap_ms else []
        if self._streams is not None and len(after) <= limit:
            # Cluster mode: what the history writer has not written yet, from this replica's
            # tail (a client rejoining right after a replica drained lost exactly those).
            floor = lowest_id_at(max(0, timestamp_ms(since) - self._limits.catchup_overlap_ms))
            have = {m.id for m in (*overlap, *after)}
            extra = [m for m in self._streams.newest(room) if m.id > floor and m.id not in have]
            if extra:
                merged = sorted([*overlap, *after, *extra], key=lambda m: m.id)
                newer = [m for m in merged if m.id > since]
                return [m for m in merged if m.id < since] + newer[:limit], len(newer) > limit
        return overlap + after[:limit], len(after) > limit

    async def catch_up_from(self, room: str, epoch: str, pos: int) -> CatchUp:
        """Everything in ``room``'s stream after position ``pos`` of ``epoch``, in stream
        order, at most ``catchup_max`` records (``more``: page on from ``last``); or a reset
        with the newest page when that position cannot be answered from."""
        mine = await self._epoch()
        limit = self._limits.catchup_max
        if epoch == mine:
            found = await self.stream_after(room, pos, limit)
            if found.covered:
                messages = [r for r in found.records if isinstance(r, Message)]
                events = [r for r in found.records if isinstance(r, RoomEvent)]
                last = (
                    found.upto
                    if found.upto is not None
                    else (found.records[-1].pos if found.records else None)
                )
                # Nothing after pos: complete up to pos (the head may be ahead only by
                # half-written records a reader skips).
                return CatchUp(messages, events, found.more, False, position(mine, last or pos))
            head = found.head
        else:
            async with self._metrics.timed_store("stream_after"):
                head = (await self._store.stream_after(room, 0, 0)).head
        async with self._metrics.timed_store("history"):
            page = await self._store.history(room, before=None, limit=self._limits.history_page_default)
        newest = list(reversed(page.messages))
        last = max([head, *(m.pos or 0 for m in newest)])
        return CatchUp(newest, [], False, True, position(mine, last))

    async def stream_after(self, room: str, pos: int, limit: int) -> StreamSlice:
        """``room``'s records after ``pos`` (of this epoch) in stream order, at most ``limit``.
        Cluster mode: the store may lag the log (the history writer), so what this replica
        applied after the store's answer comes from its tail; not ``covered`` when neither
        reaches back to ``pos``."""
        async with self._metrics.timed_store("stream_after"):
            found = await self._store.stream_after(room, pos, limit)
        if self._streams is None:
            return found
        if not found.covered:
            tail = self._streams.tail_after(room, pos)
            if tail is None:
                return found
            return StreamSlice(tail[:limit], len(tail) > limit, found.head)
        return found if found.more else self._fill_from_tail(room, pos, found, limit)

    async def stream_head(self, room: str) -> int:
        """Where ``room``'s stream is for this replica's sockets: a record after it reaches
        them live. Cluster mode: the last record this replica applied (the store may be
        behind or, with a lagging consumer here, ahead of it), else the store's head."""
        if self._streams is not None:
            applied = self._streams.head(room)
            if applied is not None:
                return applied
        async with self._metrics.timed_store("stream_after"):
            return (await self._store.stream_after(room, 0, 0)).head

    def _fill_from_tail(self, room: str, pos: int, found: StreamSlice, limit: int) -> StreamSlice:
        """The store's complete answer, extended with what this replica applied after it
        (records the store does not hold yet, or failed to write), when the tail reaches."""
        assert self._streams is not None
        upto = found.upto if found.upto is not None else (found.records[-1].pos if found.records else None)
        tail = self._streams.tail_after(room, upto or pos)
        if not tail:
            return found
        room_left = max(0, limit - len(found.records))
        records = [*found.records, *tail[:room_left]]
        return StreamSlice(records, len(tail) > room_left, found.head)

    async def _overlap(self, room: str, since: str) -> list[Message]:
        """The newest ``history_page_max`` messages stored in the overlap window before ``since``."""
        floor = max(0, timestamp_ms(since) - self._limits.catchup_overlap_ms)
        cap = self._limits.history_page_max
        async with self._metrics.timed_store("after"):
            # Forwards from the window's start: touches only the window's bucket(s).
            window = [m for m in await self._store.after(room, lowest_id_at(floor), cap) if m.id < since]
        if len(window) < cap:
            return window
        # A busy window: take its newest messages instead, the likeliest to have been missed.
        async with self._metrics.timed_store("history"):
            page = await self._store.history(room, before=since, limit=cap)
        return [m for m in reversed(page.messages) if timestamp_ms(m.id) >= floor]
