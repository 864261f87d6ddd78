"""Replies and threads (issue 25).

A reply is a message like any other (it is in the room's stream and history) that carries
``reply_to {id, user, preview}``, copied from its parent when posted: the parent may be
edited or deleted later and the reply stays readable. The store keeps replies by parent
(:class:`~chatsvc.store.base.ThreadStore`); a parent's ``reply_count`` and
``last_reply_at`` are counted from those rows when messages are read, never kept as a
counter, so retries and replicas cannot make them drift. Each new reply also logs a
``thread`` room event, delivered live as ``message_updated {id, room, reply_count,
last_reply_at}`` with its own ``pos``, so ``join {since}`` and connection state recovery
replay count changes in order.

Cluster mode (issue 21): the reply's record is the order of truth for its parent's summary
(chatsvc.chat.changes): the sender writes no row and logs no ``thread`` record; every
replica counts the reply in stream order and delivers ``message_updated`` (without a
``pos``: the reply holds the position), and the history writer adds the reply's row when it
writes the reply. So a refused log leaves no summary change, a retried reply counts once,
and a CQL outage does not block replies (a parent the store cannot read is looked up in the
replica's tail).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from chatsvc.chat.changes import ChangeWindow, thread_update
from chatsvc.chat.service import ChatService
from chatsvc.errors import ChatError, NotFound, StoreUnavailable
from chatsvc.model.messages import Message, ReplyRef, ThreadSummary
from chatsvc.store.base import MessageStore

#: Characters of the parent's text a reply carries as its preview.
PREVIEW_CHARS = 120


class Threads:
    """Reply references, thread pages and the reply summaries of messages being read."""

    def __init__(self, service: ChatService, store: MessageStore) -> None:
        self._service = service
        self._store = store

    async def parent(self, room: str, parent_id: str) -> ReplyRef:
        """The reference a reply to ``parent_id`` carries; ``not_found`` for a missing or
        deleted parent (a reply to nothing would be a thread nobody can open)."""
        try:
            parent = await self._service.get(room, parent_id, field="reply_to")
        except StoreUnavailable:
            parent = self._service.recent(room, parent_id)  # cluster mode: the tail may have it
            if parent is None:
                raise
        if parent is None or parent.deleted:
            raise NotFound(f"no message {parent_id} in {room} to reply to")
        ref = ReplyRef(parent.id, parent.user_id, parent.user_name, parent.text[:PREVIEW_CHARS])
        window = self._service.changes
        return ref if window is None else replace(ref, base=await self._base(room, parent_id, window))

    async def _base(self, room: str, parent_id: str, window: ChangeWindow) -> int | None:
        """Cluster mode: the parent's reply count before this reply, as the stream set it or
        else as the store counts it; None when the store cannot say (readers whose window
        knows the count still deliver it)."""
        known = window.thread(room, parent_id)
        if known is not None:
            return known.count
        try:
            found = (await self._store.thread_summaries(room, [parent_id])).get(parent_id)
        except ChatError:
            return None
        return 0 if found is None else found.count

    async def replied(self, reply: Message, *, created: bool) -> None:
        """Record a stored reply under its parent (again on a retry: the row is idempotent,
        so a retry completes what a failed first attempt left), then tell the room. Cluster
        mode: nothing here, the reply's record did both (chatsvc.chat.changes)."""
        ref = reply.reply_to
        if ref is None or self._service.changes is not None:
            return
        await self._store.add_reply(reply.room, ref.id, reply.id)
        if not created:
            return
        summary = (await self._store.thread_summaries(reply.room, [ref.id])).get(ref.id)
        if summary is None:  # the row was just written: only a store that lost it
            return
        wire = thread_update(reply.room, ref.id, summary)
        await self._service.log_and_deliver("thread", "message_updated", reply.room, ref.id, wire)

    async def annotate(self, room: str, messages: list[Message]) -> list[Message]:
        """``messages`` with their reply summaries (one store query per page) and replies to
        a since deleted parent marked so; on a store failure, unannotated: the page is still
        worth showing."""
        if not messages:
            return messages
        messages = await self._deleted_parents(room, messages)
        found = await self._summaries(room, [m.id for m in messages])
        return [replace(m, thread=found[m.id]) if m.id in found else m for m in messages]

    async def implied(self, room: str, messages: list[Message]) -> list[dict[str, Any]]:
        """Cluster mode, for a ``join {since}`` page: no ``message_updated`` is stored (the
        replies imply them), so the current summary of each parent the page's replies name
        but do not show, as catch-up entries (``event: "message_updated"``, no ``pos``); the
        parents shown carry theirs already. None in the embedded default (stored)."""
        if self._service.changes is None:
            return []
        shown = {m.id for m in messages}
        named = (m.reply_to.id for m in messages if m.reply_to is not None)
        parents = list(dict.fromkeys(p for p in named if p not in shown))
        if not parents:
            return []
        found = await self._summaries(room, parents)
        return [
            {"event": "message_updated", **thread_update(room, parent, found[parent])}
            for parent in parents
            if parent in found
        ]

    async def _summaries(self, room: str, ids: list[str]) -> dict[str, ThreadSummary]:
        """The store's summaries (none on a store failure: a page is still worth showing),
        raised to the stream's where it is ahead (cluster mode: the history writer may not
        have written the newest replies)."""
        try:
            found = await self._store.thread_summaries(room, ids)
        except ChatError:
            found = {}
        window = self._service.changes
        if window is not None:
            for message_id in ids:
                recent = window.thread(room, message_id)
                if recent is not None and recent.count > (
                    found[message_id].count if message_id in found else 0
                ):
                    found[message_id] = recent
        return found

    async def page(
        self, room: str, parent_id: str, *, before: str | None, limit: int
    ) -> tuple[Message, list[Message], str | None]:
        """The parent (deleted ones too: their replies stay readable), up to ``limit`` of its
        replies newest first, and the cursor of the next (older) page."""
        parent = await self._service.get(room, parent_id, field="id")
        if parent is None:
            raise NotFound(f"no message {parent_id} in {room}")
        ids = await self._store.replies(room, parent_id, before=before, limit=limit + 1)
        more = len(ids) > limit
        ids = ids[:limit]
        replies = [m for m in [await self._service.get(room, i, field="id") for i in ids] if m is not None]
        annotated = await self.annotate(room, [parent, *replies])
        return annotated[0], annotated[1:], ids[-1] if more and ids else None

    async def _deleted_parents(self, room: str, messages: list[Message]) -> list[Message]:
        """Replies whose parent was deleted since they were posted: ``reply_to`` says
        ``deleted`` and loses its preview (issue 25: the deleted text must not live on).
        A parent on the page itself is known already; one read per other distinct parent
        (pages are bounded), concurrently; none without replies."""
        shown = {m.id: m for m in messages}
        parents = list(dict.fromkeys(m.reply_to.id for m in messages if m.reply_to is not None))
        if not parents:
            return messages
        gone = {p for p in parents if p in shown and shown[p].deleted}
        elsewhere = [p for p in parents if p not in shown]
        try:
            found = await asyncio.gather(*(self._store.get(room, p) for p in elsewhere))
        except ChatError:
            return messages
        gone.update(p for p, parent in zip(elsewhere, found, strict=True) if parent is None or parent.deleted)
        if not gone:
            return messages
        return [
            replace(m, reply_to=replace(m.reply_to, preview="", deleted=True))
            if m.reply_to is not None and m.reply_to.id in gone
            else m
            for m in messages
        ]
