"""Mentions (issue 25): ``message {..., mentions: [user ids]}``.

The list is validated and bounded before anything is stored; in a private or direct room
only members are kept (a mention must not tell a non-member about the room); the rest is
stored on the message and each mentioned user (not the author) gets ``mention {room,
message}`` on every socket it has, joined or not (its user room, chatsvc.chat.conversations).
"""

from __future__ import annotations

from typing import Any

from chatsvc.chat.conversations import user_room
from chatsvc.chat.service import ChatService
from chatsvc.errors import InvalidPayload
from chatsvc.model.messages import Message
from chatsvc.model.rooms import members_only
from chatsvc.store.base import MessageStore

#: Longest user id a mention may name (JWT ``sub``s are short).
USER_ID_MAX = 128


def mentions(payload: dict[str, Any], maximum: int) -> tuple[str, ...]:
    """The optional ``mentions`` field: at most ``maximum`` distinct user ids, in order."""
    value = payload.get("mentions")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > maximum:
        raise InvalidPayload(f"'mentions' must be a list of at most {maximum} user ids")
    for user_id in value:
        if not isinstance(user_id, str) or not 1 <= len(user_id) <= USER_ID_MAX or not user_id.isprintable():
            raise InvalidPayload(f"'mentions' must hold user ids (1..{USER_ID_MAX} printable characters)")
    return tuple(dict.fromkeys(value))


class Mentions:
    """Keeps the mentions readers of the room may get, and tells them."""

    def __init__(self, service: ChatService, store: MessageStore) -> None:
        self._service = service
        self._store = store

    async def readable(self, room: str, author: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
        """``wanted`` without the author and, in a members-only room, without non-members."""
        kept = tuple(u for u in wanted if u != author)
        if not kept or not members_only(room):
            return kept
        return tuple([u for u in kept if await self._store.get_member(room, u) is not None])

    async def notify(self, message: Message) -> None:
        """``mention {room, message}`` to every socket of each mentioned user."""
        if not message.mentions:
            return
        await self._store.add_mentions(message.room, message.id, message.mentions)
        data = {"room": message.room, "message": self._service.wire(message)}
        await self._service.send_to("mention", data, [user_room(u) for u in message.mentions])

    async def changed(self, before: tuple[str, ...], message: Message) -> None:
        """An edit changed the mentions from ``before`` to ``message.mentions``: users no
        longer mentioned stop counting it; only the newly mentioned get ``mention``."""
        removed = tuple(u for u in before if u not in message.mentions)
        if removed:
            await self._store.remove_mentions(message.room, message.id, removed)
        added = tuple(u for u in message.mentions if u not in before)
        if not added:
            return
        await self._store.add_mentions(message.room, message.id, added)
        data = {"room": message.room, "message": self._service.wire(message)}
        await self._service.send_to("mention", data, [user_room(u) for u in added])
