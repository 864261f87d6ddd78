"""The history writer's store side (cluster mode): one record of the events log written to
the history store at its position. chatsvc.bus's history writer group calls it through
``RoomLog.on_history``; every write is idempotent, so a redelivered record is harmless.

A message record's offline notifications are derived here too (``on_message``, issue 24:
chatsvc.chat.notify), after its row: the writer resumes from committed offsets, so a
replica that dies before they are written leaves the record to the partition's next
writer, and the outbox keeps each (user, message) once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from chatsvc.bus.log import LogRecord
from chatsvc.chat.changes import ChangeWriter
from chatsvc.chat.conversations import USER_ROOM_PREFIX
from chatsvc.chat.streams import record_of
from chatsvc.errors import InvalidMessageId, NotFound
from chatsvc.metrics import Metrics
from chatsvc.model.messages import Message
from chatsvc.store.base import MessageStore


class HistoryWriter:
    """Writes the events log's records to the history store."""

    def __init__(self, store: MessageStore, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self._changes = ChangeWriter(store)
        #: Called with each message written (the original, for a late duplicate) and its
        #: room's members as the sender resolved them (None: the record does not say); may
        #: raise ``StoreUnavailable`` to have the record retried.
        self.on_message: Callable[[Message, list[str] | None], Awaitable[object]] | None = None

    async def write(self, record: LogRecord) -> None:
        """The history writer: store one record of the events log at its position (raises
        ``StoreUnavailable`` to be retried; every write is idempotent). A message whose
        ``(room, user, client_msg_id)`` was written before is not written again: records are
        written in stream order, so the first record wins here as on every consumer."""
        try:
            found = record_of(record)
        except (KeyError, TypeError, ValueError, IndexError):
            return  # not a room event; the consumers log it once
        if isinstance(found, Message):
            async with self._metrics.timed_store("append"):
                stored, _ = await self._store.append(found)
                await self._changes.replied(stored)  # a reply's row (chatsvc.chat.changes)
            if self.on_message is not None:  # not only when new: a re-run finishes them
                await self.on_message(stored, _members(record.body.get("to")))
            return
        change = record.body.get("change")
        if isinstance(change, dict) and ("reaction" in change or "pin" in change):
            async with self._metrics.timed_store("change"):
                written = await self._changes.write(found, change)
            if written is None:
                return  # a repeat: no consumer delivered it either
            found = written
        elif isinstance(change, dict):
            with contextlib.suppress(NotFound, InvalidMessageId):  # a message history never had
                at_ms = int(change.get("at_ms") or 0)
                if found.kind == "edited":
                    async with self._metrics.timed_store("edit"):
                        tickers = change.get("tickers")
                        await self._store.edit(
                            found.room,
                            found.message_id,
                            str(change.get("text", "")),
                            at_ms,
                            tickers=tuple(str(t) for t in tickers) if isinstance(tickers, list) else None,
                        )
                        mentions = change.get("mentions")
                        if isinstance(mentions, list):  # an edit that changed them (issue 25)
                            await self._store.set_mentions(
                                found.room, found.message_id, tuple(str(m) for m in mentions)
                            )
                elif found.kind == "deleted":
                    async with self._metrics.timed_store("delete"):
                        await self._store.delete(found.room, found.message_id, at_ms)
                        # Here, in stream order, not by the deleter: every earlier react's
                        # row is written by now (chatsvc.chat.changes).
                        await self._store.clear_reactions(found.room, found.message_id)
        async with self._metrics.timed_store("append_event"):
            await self._store.append_event(found)


def _members(audience: object) -> list[str] | None:
    """The members a private room's record was addressed to (its ``to``: the room and each
    member's user room, read by the sender), so notifying needs no members read here."""
    if not isinstance(audience, list):
        return None
    return [
        r[len(USER_ROOM_PREFIX) :] for r in audience if isinstance(r, str) and r.startswith(USER_ROOM_PREFIX)
    ]
