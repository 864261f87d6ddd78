"""Pins (issue 25): ``pin`` / ``unpin {room, id}``, ``pins {room}``.

Who may pin: in a private or direct room its owners and moderators, in a public room the
``admin`` role. A room holds at most ``CHATSVC_MAX_PINS`` pins (``pin_limit``; replicas
pinning at the same instant may overshoot by one each). Each change is a room-stream record
(``pinned`` / ``unpinned {room, id, by}`` with ``event_id`` and ``pos``), replayed by ``join
{since}`` and connection state recovery. A deleted message drops out of ``pins``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from chatsvc.auth.identity import Identity
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

    async def list(self, room: str) -> list[dict[str, Any]]:
        """The room's pins, newest message first, each ``{message, by, pinned_at}``."""
        found = []
        for message_id, by, at_ms in await self._store.list_pins(room, self._max + 1):
            message = await self._service.get(room, message_id, field="id")
            if message is not None and not message.deleted:
                found.append({"message": self._service.wire(message), "by": by, "pinned_at_ms": at_ms})
        return found
