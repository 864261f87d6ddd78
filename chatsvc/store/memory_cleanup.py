"""The edit/delete consistency part of :class:`~chatsvc.store.memory.MemoryStore` (issue 25)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chatsvc.model.messages import Message


class MemoryCleanup:
    """:class:`~chatsvc.store.base.MessageCleanup` on MemoryStore's dicts; mixed into it."""

    _reactions: dict[tuple[str, str], set[tuple[str, str]]]
    _mentions: dict[tuple[str, str], set[str]]

    def _check(self) -> None:
        raise NotImplementedError  # MemoryStore's

    def _existing(self, room: str, message_id: str) -> tuple[Any, Message]:
        raise NotImplementedError  # MemoryStore's

    async def set_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """Replace them on the held message."""
        self._check()
        entry, message = self._existing(room, message_id)
        entry.messages[message_id] = replace(message, mentions=user_ids)

    async def remove_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """Discard each."""
        self._check()
        for user_id in user_ids:
            self._mentions.get((user_id, room), set()).discard(message_id)

    async def clear_reactions(self, room: str, message_id: str) -> None:
        """Drop the message's set."""
        self._check()
        self._reactions.pop((room, message_id), None)
