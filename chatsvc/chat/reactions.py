"""Reactions (issue 25): ``react`` / ``unreact {room, id, emoji}``.

Stored one row per (room, message, emoji, user) (:class:`~chatsvc.store.base.ReactionStore`),
so a retried react changes nothing and counts are counted rows, exact across replicas. A
change is logged in the room's stream as a ``reaction`` event ``{room, id, emoji, count,
user, action}`` (with ``event_id`` and ``pos``), delivered live and replayed by ``join
{since}`` and connection state recovery; a call that changed nothing (a retry) logs
nothing. Messages read by a user carry ``reactions {emoji: count}`` and ``own_reactions``.
A deleted message shows no reactions.

Cluster mode: the events log is the order of truth (chatsvc.chat.changes). A change is
logged first and its row written by the history writer from the log; whether it changed
anything and the count are decided in stream order, so a refused log leaves nothing behind
and a retry, or the same react on two replicas at once, changes the count once.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import replace
from typing import Any

from chatsvc.auth.identity import Identity
from chatsvc.chat.changes import ChangeWindow, reaction_change
from chatsvc.chat.service import ChatService
from chatsvc.errors import ChatError, InvalidPayload, NotFound, ReactionLimit
from chatsvc.model.messages import Message
from chatsvc.store.base import MessageStore

#: ``:name:`` shortcodes.
SHORTCODE = re.compile(r":[a-z0-9_+\-]{1,30}:")
#: Code points of one emoji at most (a family with skin tones and joiners is about 11).
EMOJI_MAX_CHARS = 16


def emoji(payload: dict[str, Any]) -> str:
    """The ``emoji`` field: a ``:name:`` shortcode, or one emoji: up to 16 code points of
    symbols, skin tones, flags, joiners and variation selectors, with no letters, digits,
    spaces or controls (keycaps like 1️⃣ are not accepted: use a shortcode)."""
    value = payload.get("emoji")
    if not isinstance(value, str) or not value:
        raise InvalidPayload("'emoji' must be one emoji or a :name: shortcode")
    if SHORTCODE.fullmatch(value):
        return value
    if len(value) > EMOJI_MAX_CHARS or not all(_emoji_char(c) for c in value):
        raise InvalidPayload("'emoji' must be one emoji or a :name: shortcode")
    return value


def _emoji_char(char: str) -> bool:
    if char in "\u200d\ufe0f\u20e3":  # joiner, emoji presentation, keycap
        return True
    code = ord(char)
    # So: pictographs and symbols; then skin tones, regional indicators (flags) and the tag
    # characters of subdivision flags. No ASCII: letters, digits and punctuation are text.
    return code > 0x7F and (
        unicodedata.category(char) == "So"
        or 0x1F3FB <= code <= 0x1F3FF
        or 0x1F1E6 <= code <= 0x1F1FF
        or 0xE0020 <= code <= 0xE007F
    )


class Reactions:
    """Adds and removes reactions; adds them to messages being read."""

    def __init__(self, service: ChatService, store: MessageStore, kinds_max: int) -> None:
        self._service = service
        self._store = store
        self._kinds_max = kinds_max

    async def change(
        self, room: str, message_id: str, value: str, actor: Identity, *, add: bool
    ) -> dict[str, Any]:
        """React or unreact; the ack's fields: ``{id, emoji, count, changed}``."""
        message = await self._service.get(room, message_id, field="id")
        if message is None or message.deleted:
            raise NotFound(f"no message {message_id} in {room}")
        window = self._service.changes
        if window is not None:
            return await self._logged(room, message_id, value, actor, add, window)
        if add:
            counts = (await self._store.reaction_counts(room, [message_id])).get(message_id, {})
            if value not in counts and len(counts) >= self._kinds_max:
                raise ReactionLimit(f"a message carries at most {self._kinds_max} different reactions")
            changed = await self._store.put_reaction(room, message_id, value, actor.user_id)
        else:
            changed = await self._store.delete_reaction(room, message_id, value, actor.user_id)
        count = (await self._store.reaction_counts(room, [message_id])).get(message_id, {}).get(value, 0)
        if changed:
            wire = {
                "room": room,
                "id": message_id,
                "emoji": value,
                "count": count,
                "user": actor.public(),
                "action": "add" if add else "remove",
            }
            await self._service.log_and_deliver("reaction", "reaction", room, message_id, wire)
        return {"id": message_id, "emoji": value, "count": count, "changed": changed}

    async def _logged(
        self, room: str, message_id: str, value: str, actor: Identity, add: bool, window: ChangeWindow
    ) -> dict[str, Any]:
        """Cluster mode: log the change; the history writer writes the row."""
        counts = await self._counts(room, [message_id], window)
        current = counts.get(message_id, {})
        had = window.reacted(room, message_id, value, actor.user_id)
        if had is None:  # older than the window: the store knows
            mine = await self._store.reactions_of(room, [message_id], actor.user_id)
            had = value in mine.get(message_id, [])
        base = current.get(value, 0)
        if had == add:
            return {"id": message_id, "emoji": value, "count": base, "changed": False}
        if add and value not in current and len(current) >= self._kinds_max:
            raise ReactionLimit(f"a message carries at most {self._kinds_max} different reactions")
        wire = {
            "room": room,
            "id": message_id,
            "emoji": value,
            "count": max(0, base + (1 if add else -1)),  # set again in stream order
            "user": actor.public(),
            "action": "add" if add else "remove",
        }
        change = reaction_change(value, actor.user_id, add=add, base=base)
        payload, changed = await self._service.log_change(
            "reaction", "reaction", room, message_id, wire, change
        )
        count = payload["count"] if changed else window.count(room, message_id, value)
        count = base if count is None else count
        return {"id": message_id, "emoji": value, "count": count, "changed": changed}

    async def _counts(
        self, room: str, ids: list[str], window: ChangeWindow | None
    ) -> dict[str, dict[str, int]]:
        """The store's counts, with those the stream set since (cluster mode: the history
        writer may not have written them yet); emoji counted 0 left out."""
        counts = await self._store.reaction_counts(room, ids)
        if window is None:
            return counts
        recent, _ = window.reactions(room, ids, "")
        merged = {}
        for message_id in {*counts, *recent}:
            both = {**counts.get(message_id, {}), **recent.get(message_id, {})}
            kept = {emoji: n for emoji, n in both.items() if n > 0}
            if kept:
                merged[message_id] = kept
        return merged

    async def annotate(self, room: str, messages: list[Message], reader: str) -> list[Message]:
        """``messages`` with their reactions and ``reader``'s own (two store queries per
        page, at once); on a store failure, unannotated: the page is still worth showing."""
        ids = [m.id for m in messages if not m.deleted]
        if not ids:
            return messages
        window = self._service.changes
        try:
            # At once rather than the reader's only when there are counts: on ScyllaDB a
            # round trip is what a page waits for (bench/history_store_reads.py), and a page
            # without reactions pays one cheap partition read more for it.
            counts, mine = await asyncio.gather(
                self._counts(room, ids, window), self._store.reactions_of(room, ids, reader)
            )
        except ChatError:
            return messages
        if window is not None and counts:
            _, recent = window.reactions(room, ids, reader)
            for message_id, states in recent.items():
                own = set(mine.get(message_id, []))
                own |= {emoji for emoji, on in states.items() if on}
                own -= {emoji for emoji, on in states.items() if not on}
                mine[message_id] = sorted(own)
        return [
            replace(m, reactions=counts[m.id], own_reactions=mine.get(m.id, [])) if m.id in counts else m
            for m in messages
        ]
