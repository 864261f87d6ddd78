"""Pins (issue 25): ``pin`` / ``unpin {room, id}``, ``pins {room}``.

Who may pin: in a private or direct room its owners and moderators, in a public room the
``admin`` role. A room holds at most ``CHATSVC_MAX_PINS`` pins (``pin_limit``; replicas
pinning at the same instant may overshoot by one each). Each change is a room-stream record
(``pinned`` / ``unpinned {room, id, by}`` with ``event_id`` and ``pos``), replayed by ``join
{since}`` and connection state recovery. A deleted message drops out of ``pins``.

Cluster mode: the events log is the order of truth (chatsvc.chat.changes): a change is
logged first and its row written by the history writer from the log, so a refused log
leaves nothing behind and a repeat (a retry, two replicas at once) changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from chatsvc.auth.identity import Identity
from chatsvc.chat.changes import ChangeWindow, pin_change
from chatsvc.chat.service import ChatService
from chatsvc.errors import Forbidden, NotFound, PinLimit
from chatsvc.model.rooms import members_only
from chatsvc.store.base import MessageStore

#: Whether a user moderates a members-only room (chatsvc.chat.conversations).
Moderates = Callable[[str, str], Awaitable[bool]]


class Pins:
    """Pins and unpins messages, lists a room's pins."""

    def __init__(
        self, service: ChatService, store: MessageStore, maximum: int, moderates: Moderates | None
    ) -> None:
        self._service = service
        self._store = store
        self._max = maximum
        self._moderates = moderates

    async def _may_pin(self, room: str, actor: Identity) -> None:
        if members_only(room):
            if self._moderates is not None and await self._moderates(room, actor.user_id):
                return
            raise Forbidden("only the room's owners and moderators may pin")
        if not actor.is_admin:
            raise Forbidden("only admins may pin in a public room")

    async def change(self, room: str, message_id: str, actor: Identity, *, pin: bool) -> dict[str, Any]:
        """Pin or unpin; the ack's fields ``{id, changed}``."""
        await self._may_pin(room, actor)
        message = await self._service.get(room, message_id, field="id")
        if pin and (message is None or message.deleted):
            raise NotFound(f"no message {message_id} in {room}")
        window = self._service.changes
        if window is not None:
            return await self._logged(room, message_id, actor, pin, window)
        if pin:
            if len(await self._store.list_pins(room, self._max + 1)) >= self._max:
                raise PinLimit(f"a room holds at most {self._max} pins")
            changed = await self._store.put_pin(room, message_id, actor.user_id, self._service.now_ms())
        else:
            changed = await self._store.delete_pin(room, message_id)
        if changed:
            kind = "pinned" if pin else "unpinned"
            wire = {"room": room, "id": message_id, "by": actor.public()}
            await self._service.log_and_deliver(kind, kind, room, message_id, wire)
        return {"id": message_id, "changed": changed}

    async def _logged(
        self, room: str, message_id: str, actor: Identity, pin: bool, window: ChangeWindow
    ) -> dict[str, Any]:
        """Cluster mode: log the change; the history writer writes the row."""
        current = await self._current(room)
        if any(found == message_id for found, _, _ in current) == pin:
            return {"id": message_id, "changed": False}
        if pin and len(current) >= self._max:
            raise PinLimit(f"a room holds at most {self._max} pins")
        kind = "pinned" if pin else "unpinned"
        wire = {"room": room, "id": message_id, "by": actor.public()}
        change = pin_change(add=pin, by=actor.user_id, at_ms=self._service.now_ms())
        _, changed = await self._service.log_change(kind, kind, room, message_id, wire, change)
        return {"id": message_id, "changed": changed}

    async def _current(self, room: str) -> list[tuple[str, str, int]]:
        """The room's pins ``(message id, by, at ms)``, newest message first: the store's,
        with what the stream changed since (cluster mode: the writer may lag)."""
        stored = await self._store.list_pins(room, self._max + 1)
        window = self._service.changes
        if window is None:
            return stored
        recent = window.pins(room)
        kept = [p for p in stored if recent.get(p[0]) is not False]
        have = {p[0] for p in kept}
        for message_id, state in recent.items():
            if isinstance(state, tuple) and message_id not in have:
                kept.append((message_id, state[0], state[1]))
        return sorted(kept, key=lambda p: p[0], reverse=True)[: self._max + 1]

    async def list(self, room: str) -> list[dict[str, Any]]:
        """The room's pins, newest message first, each ``{message, by, pinned_at}``."""
        found = []
        for message_id, by, at_ms in await self._current(room):
            message = await self._service.get(room, message_id, field="id")
            if message is not None and not message.deleted:
                found.append({"message": self._service.wire(message), "by": by, "pinned_at_ms": at_ms})
        return found
