"""Edits and deletes keep a message's issue-25 annotations consistent.

* ``edit {room, id, text, mentions?, reply_to?}``: with ``mentions`` the list is validated
  and filtered exactly as on ``message`` (bounded, repeats and the author dropped, in a
  private or direct room non-members too) and replaces the stored one; only users newly
  mentioned get a ``mention`` event (and count as unread mentions); users no longer
  mentioned stop counting it. Without ``mentions`` they stay as they were. ``reply_to``
  cannot change: an edit naming another parent (or a parent for a message that is not a
  reply) is ``invalid_payload``; the stored reference is kept.
* A deleted message's pins go (``unpinned {room, id, by}`` in the room's stream, so pin
  lists and replays follow), its reactions go, and its mentions stop counting as unread.
  Its replies stay readable (``thread`` shows the parent as deleted).
"""

from __future__ import annotations

from typing import Any

from chatsvc.auth.identity import Identity
from chatsvc.chat import payloads
from chatsvc.chat.changes import pin_change
from chatsvc.chat.mentions import Mentions, mentions
from chatsvc.chat.service import ChatService
from chatsvc.errors import InvalidPayload, NotFound
from chatsvc.model.messages import Message
from chatsvc.settings import Limits
from chatsvc.store.base import MessageStore

#: Who removed the pins of a message the admin API deleted.
ADMIN = {"id": "admin", "name": "admin"}


class Edits:
    """The ``edit`` event's issue-25 part, and the cleanup after every delete."""

    def __init__(
        self, service: ChatService, store: MessageStore, mentioned: Mentions, limits: Limits
    ) -> None:
        self._service = service
        self._store = store
        self._mentions = mentioned
        self._limits = limits
        service.on_delete(self.deleted)

    async def edit(
        self,
        room: str,
        message_id: str,
        text: str,
        actor: Identity,
        payload: dict[str, Any],
        *,
        tickers: tuple[str, ...] | None = None,
    ) -> Message:
        """Validate the edit's ``mentions`` and ``reply_to``, edit (with the text's cashtags,
        ``tickers``, when given), tell the newly mentioned."""
        wanted = mentions(payload, self._limits.mentions_per_message) if "mentions" in payload else None
        parent = payloads.message_id(payload, "reply_to", required=False)
        current = await self._service.get(room, message_id, field="id")
        if current is None or current.deleted:
            raise NotFound(f"no message {message_id} in {room}")
        if parent is not None and (current.reply_to is None or current.reply_to.id != parent):
            raise InvalidPayload("an edit cannot change 'reply_to'")
        kept = None if wanted is None else await self._mentions.readable(room, current.user_id, wanted)
        updated = await self._service.edit(room, message_id, text, actor, mentions=kept, tickers=tickers)
        if kept is not None:
            await self._mentions.changed(current.mentions, updated)
        return updated

    async def deleted(self, message: Message, actor: Identity | None) -> None:
        """Pins, reactions and mention rows of a deleted message go."""
        room, message_id = message.room, message.id
        by = actor.public() if actor is not None else ADMIN
        wire = {"room": room, "id": message_id, "by": by}
        window = self._service.changes
        if window is not None:
            # Cluster mode: rows follow the log (chatsvc.chat.changes); the history writer
            # clears the reactions where it applies the delete.
            pinned = window.pinned(room, message_id)
            if pinned is None:
                pins = await self._store.list_pins(room, self._limits.pins_per_room + 1)
                pinned = any(found == message_id for found, _, _ in pins)
            if pinned:
                change = pin_change(add=False, by=str(by["id"]), at_ms=self._service.now_ms())
                await self._service.log_change("unpinned", "unpinned", room, message_id, wire, change)
        else:
            if await self._store.delete_pin(room, message_id):
                await self._service.log_and_deliver("unpinned", "unpinned", room, message_id, wire)
            await self._store.clear_reactions(room, message_id)
        if message.mentions:
            await self._store.remove_mentions(room, message_id, message.mentions)
