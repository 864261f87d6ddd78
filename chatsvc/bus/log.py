"""The room streams' log (issue 21, docs/delivery.md): what the chat layer needs from it.

In cluster mode every room event (message, edit, delete, reaction, pin...) is one record of
a log partitioned by room; a record's offset in its partition (plus one, so 0 is "before
every record") is its position in the room's stream. Every replica reads every partition in
order and applies each record (dedup, live delivery to its own sockets); the replica that
appended a record waits for its own consumer to apply it before acking. This module knows
nothing of Kafka (chatsvc.bus.kafka_log).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record read back from the log.

    ``replay``: read again at startup only to rebuild the consumers' windows (dedup keys,
    the in-memory tail); it was delivered before this process started, so it is not
    delivered again.
    """

    room: str
    #: The record's position in its room stream (chatsvc.bus.kafka_log: partition offset + 1).
    offset: int
    body: dict[str, Any]
    replay: bool = False


RecordHandler = Callable[[LogRecord], Awaitable[None]]
#: Asked before the history writer commits what it wrote: raising means the store may have
#: lost writes it acked (a node that went down), so they are written again.
StoreCheck = Callable[[], Awaitable[None]]
#: Called with ``owns(room)`` when the replica stops reading some rooms' records.
ReleaseHandler = Callable[[Callable[[str], bool]], None]


class RoomLog(Protocol):
    """An ordered, durable log of room events, partitioned by room."""

    @property
    def partitions(self) -> int:
        """How many partitions the log has (part of the positions' epoch: a changed count
        maps rooms to other partitions, whose offsets mean nothing to old positions)."""

    async def start(self) -> None:
        """Connect; raise ``chatsvc.errors.StartupError`` when it cannot."""

    async def check(self) -> None:
        """Raise ``chatsvc.errors.BusUnavailable`` while the log cannot be appended to."""

    async def aclose(self) -> None:
        """Stop reading and close; idempotent."""

    def on_record(self, handler: RecordHandler) -> None:
        """Call ``handler`` with every record, per partition in offset order (one handler)."""

    def on_history(self, writer: RecordHandler, *, settled: StoreCheck | None = None) -> None:
        """Also write every record to history with ``writer``: once per record among all
        replicas (a consumer group), in stream order per room (different rooms may be
        written concurrently), resuming after the last record written; ``writer`` raising
        means "not written": the same record is retried (with capped backoff) until it
        succeeds, nothing after it in its room is written before. ``settled``: asked before
        what was written is counted durable; raising has it written again."""

    async def follow(self, room: str) -> None:
        """Make sure this replica reads ``room``'s records: returns once every record of the
        room appended from now on will be handed to the record handler, and the records
        before now (a bounded replay, as at startup) were handed over to rebuild its window
        and tail. A no-op while every partition is read; ``BusUnavailable`` when it cannot."""

    def on_release(self, handler: ReleaseHandler) -> None:
        """Call ``handler(owns)`` when this replica stops reading the rooms ``owns`` says
        (interest-based routing): what it kept of them is stale from then on."""

    async def append(self, room: str, body: dict[str, Any]) -> int:
        """Append a JSON-able record to ``room``'s partition once the log holds it durably;
        its position. ``BusUnavailable`` when the log cannot take it in time (the record may
        still land later: readers deduplicate)."""
