"""Room streams on ScyllaDB: positions assigned by this process, read back in order.

Without Kafka there is one writer per room (docs/delivery.md): this process numbers each
room's records from a counter seeded from the store the first time it writes to the room.
Two processes writing the same room through one keyspace would hand out the same numbers;
cluster mode takes positions from Kafka instead.

A record is written to ``room_stream`` (and the room's head) *before* its message row, which
carries the same position: a write that fails half way leaves a stream row whose message is
missing or carries another position (the retry got a new one), and readers skip it. So
positions may have gaps; nothing relies on them being contiguous.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from chatsvc.errors import StoreUnavailable
from chatsvc.model.messages import Message, RoomEvent, StreamSlice
from chatsvc.store.scylla.driver import UNSET, Row
from chatsvc.store.scylla.schema import SCHEMA_SCOPE, STREAM_CHUNK

#: Rooms whose counter this process holds. Evicting one re-seeds it from the store later,
#: which is safe once its writes have landed (a room idle long enough to be evicted).
HEAD_CACHE_SIZE: Final = 100_000

Run = Callable[[str, Sequence[object]], Awaitable[list[Row]]]
Fetch = Callable[[str, str], Awaitable[Message | None]]


class ScyllaStream:
    """Positions for one store: the per-room counters, the epoch and the ordered reads."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._heads: OrderedDict[str, int] = OrderedDict()
        self._epoch: str | None = None

    async def epoch(self) -> str:
        """The keyspace's epoch, created once (the one lightweight transaction besides
        sessions': replicas starting together must agree on it)."""
        if self._epoch is None:
            rows = await self._run("epoch_get", (SCHEMA_SCOPE,))
            if not rows or rows[0][0] is None:
                await self._run("epoch_put", (SCHEMA_SCOPE, secrets.token_hex(8)))
                rows = await self._run("epoch_get", (SCHEMA_SCOPE,))
            if not rows or rows[0][0] is None:
                raise StoreUnavailable("ScyllaDB stream epoch could not be read")
            self._epoch = str(rows[0][0])
        return self._epoch

    async def _stored_head(self, room: str) -> int:
        rows = await self._run("head_get", (room,))
        head = int(rows[0][0]) if rows and rows[0][0] is not None else 0
        # A write that reached room_stream but not room_heads: take the stream's word.
        later = await self._run("stream_after", (room, head // STREAM_CHUNK, head, STREAM_CHUNK))
        return max([head, *(int(r[0]) for r in later)])

    async def next_pos(self, room: str) -> int:
        """The room's next position (seeded from the store at first use)."""
        if room not in self._heads:
            seed = await self._stored_head(room)
            self._heads.setdefault(room, seed)  # a concurrent first use may have won
        pos = self._heads[room] + 1
        self._heads[room] = pos
        self._heads.move_to_end(room)
        while len(self._heads) > HEAD_CACHE_SIZE:
            self._heads.popitem(last=False)
        return pos

    def writes(
        self, room: str, pos: int, kind: str, ref: str, target: str = "", payload: str = ""
    ) -> list[Awaitable[list[Row]]]:
        """The stream row and the head for one record (to be awaited before the record's own row)."""
        return [
            self._run(
                "stream_put",
                (room, pos // STREAM_CHUNK, pos, kind, ref, target or UNSET, payload or UNSET),
            ),
            self._run("head_put", (pos, pos, room)),
        ]

    async def after(self, room: str, pos: int, limit: int, fetch: Fetch) -> StreamSlice:
        """Records after ``pos`` in position order; messages read by id (as they are now)."""
        head = max(self._heads.get(room, 0), await self._stored_head(room))
        if pos > head:
            return StreamSlice([], False, head, covered=False)
        want = max(0, limit) + 1
        rows: list[Row] = []
        chunk = pos // STREAM_CHUNK
        while len(rows) < want and chunk <= head // STREAM_CHUNK:
            rows.extend(await self._run("stream_after", (room, chunk, pos, want - len(rows))))
            chunk += 1
        more = len(rows) > limit
        rows = rows[: max(0, limit)]
        messages = iter(await asyncio.gather(*(fetch(room, str(r[2])) for r in rows if r[1] == "message")))
        records: list[Message | RoomEvent] = []
        for at, kind, ref, target, payload in rows:
            if kind == "message":
                message = next(messages)
                if message is not None and message.pos == int(at):  # else a half-written record
                    records.append(message)
            else:
                event = RoomEvent(str(ref), room, str(kind), str(target), json.loads(str(payload)), int(at))
                records.append(event)
        # Complete up to the last row looked at, even if it was a skipped one: paging moves on.
        return StreamSlice(records, more, head, upto=int(rows[-1][0]) if rows else None)
