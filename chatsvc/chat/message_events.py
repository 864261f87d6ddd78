"""The client events of issue 25 that act on one message: ``thread``, ``react``/``unreact``,
``pin``/``unpin``/``pins``; and the annotation of messages being read (reply summaries,
reactions with the reader's own). Kept out of chatsvc.chat.namespace, which hands in how it
resolves a payload's room for a socket (joined, or allowed) and whom a user hides."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from chatsvc.chat import payloads
from chatsvc.chat.pins import Pins
from chatsvc.chat.reactions import Reactions, emoji
from chatsvc.chat.service import ChatService
from chatsvc.chat.threads import Threads
from chatsvc.errors import Forbidden
from chatsvc.model.messages import Message
from chatsvc.settings import Limits

Ack = dict[str, Any]


#: The namespace's room resolution: the payload's room for this connection, or an error.
RoomOf = Callable[[Any, dict[str, Any]], str]
Handler = Callable[[str, Any, dict[str, Any]], Awaitable[Ack]]


class MessageEvents:
    """Handlers of the per-message events, and reading annotations."""

    def __init__(
        self,
        service: ChatService,
        limits: Limits,
        *,
        threads: Threads,
        reactions: Reactions,
        pins: Pins,
        joined: RoomOf,
        allowed: RoomOf,
        hidden_from: Callable[[Any], Awaitable[frozenset[str]]],
        is_muted: Callable[[str, str], Awaitable[bool]] | None,
    ) -> None:
        self._service = service
        self._limits = limits
        self._threads = threads
        self._reactions = reactions
        self._pins = pins
        self._joined = joined
        self._allowed = allowed
        self._hidden_from = hidden_from
        self._is_muted = is_muted

    def handlers(self) -> dict[str, Handler]:
        """The client events, by name."""
        return {
            "thread": self.thread,
            "react": self.react,
            "unreact": self.unreact,
            "pin": self.pin,
            "unpin": self.unpin,
            "pins": self.pins_of,
        }

    async def annotate(self, room: str, messages: list[Message], reader: str) -> list[Message]:
        """Reply summaries and reactions (with the reader's own) of messages being read.

        The two are read at the same time (a history page waits for the slower, not for
        both in turn); each keeps the page's order, so their results are zipped."""
        threaded, reacted = await asyncio.gather(
            self._threads.annotate(room, messages), self._reactions.annotate(room, messages, reader)
        )
        return [
            t if r.reactions is None else replace(t, reactions=r.reactions, own_reactions=r.own_reactions)
            for t, r in zip(threaded, reacted, strict=True)
        ]

    async def pin(self, sid: str, conn: Any, payload: dict[str, Any]) -> Ack:
        """``pin {room, id}`` (room owners/moderators; public rooms: ``admin``)."""
        return await self._pinning(conn, payload, pin=True)

    async def unpin(self, sid: str, conn: Any, payload: dict[str, Any]) -> Ack:
        """``unpin {room, id}``, as ``pin``."""
        return await self._pinning(conn, payload, pin=False)

    async def _pinning(self, conn: Any, payload: dict[str, Any], *, pin: bool) -> Ack:
        room = self._allowed(conn, payload)
        message_id = payloads.message_id(payload, "id", required=True)
        assert message_id is not None
        await self._service.epoch()
        return {"ok": True, "room": room, **await self._pins.change(room, message_id, conn.identity, pin=pin)}

    async def pins_of(self, sid: str, conn: Any, payload: dict[str, Any]) -> Ack:
        """``pins {room}``: the room's pinned messages, newest first."""
        room = self._allowed(conn, payload)
        await self._service.epoch()
        return {"ok": True, "room": room, "pins": await self._pins.list(room)}

    async def react(self, sid: str, conn: Any, payload: dict[str, Any]) -> Ack:
        """``react {room, id, emoji}``: idempotent per (user, message, emoji)."""
        return await self._reaction(conn, payload, add=True)

    async def unreact(self, sid: str, conn: Any, payload: dict[str, Any]) -> Ack:
        """``unreact {room, id, emoji}``: idempotent too."""
        return await self._reaction(conn, payload, add=False)

    async def _reaction(self, conn: Any, payload: dict[str, Any], *, add: bool) -> Ack:
        room = self._joined(conn, payload)
        message_id = payloads.message_id(payload, "id", required=True)
        value = emoji(payload)
        assert message_id is not None
        await self._service.epoch()
        if add and self._is_muted is not None and await self._is_muted(room, conn.identity.user_id):
            raise Forbidden(f"you are muted in {room}")
        changed = await self._reactions.change(room, message_id, value, conn.identity, add=add)
        return {"ok": True, "room": room, **changed}

    async def thread(self, sid: str, conn: Any, payload: dict[str, Any]) -> Ack:
        """``thread {room, id, before?, limit?}``: a message and a page of its replies."""
        room = self._allowed(conn, payload)
        parent_id = payloads.message_id(payload, "id", required=True)
        before = payloads.message_id(payload, "before", required=False)
        limit = payloads.page_limit(payload, self._limits.history_page_default, self._limits.history_page_max)
        assert parent_id is not None
        await self._service.epoch()
        parent, replies, next_before = await self._threads.page(room, parent_id, before=before, limit=limit)
        parent, *replies = await self._reactions.annotate(room, [parent, *replies], conn.identity.user_id)
        hidden = await self._hidden_from(conn)
        return {
            "ok": True,
            "room": room,
            "message": self._service.wire(parent),
            "replies": [self._service.wire(m) for m in replies if m.user_id not in hidden],
            "next_before": next_before,
        }
