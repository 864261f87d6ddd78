"""Who may use which room from a socket: the room a payload names, checked against the
socket's joined rooms, its token's ``rooms`` claim, and (private and direct rooms, issue 24)
membership; and whom a user hides (chatsvc.chat.blocks). Shared by the namespace's handlers
(chatsvc.chat.room_events, chatsvc.chat.message_events, chatsvc.chat.modes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatsvc.chat import payloads
from chatsvc.chat.conversations import Conversations
from chatsvc.errors import Forbidden, NotInRoom
from chatsvc.model.rooms import members_only

if TYPE_CHECKING:
    from chatsvc.chat.namespace import Connection

#: Events on a private or direct room that only its members may send (issue 24).
MEMBERS_ONLY_EVENTS = frozenset(
    {
        "join",
        "leave",
        "message",
        "typing",
        "history",
        "read",
        "edit",
        "delete",
        "thread",
        "react",
        "unreact",
        "pin",
        "unpin",
        "pins",
        "set_slow_mode",
        "room_info",
    }
)


class RoomAccess:
    """The access rules of room events (``conversations``: private and direct rooms are on)."""

    def __init__(self, conversations: Conversations | None) -> None:
        self._conversations = conversations

    async def check(self, event: str, conn: Connection, payload: dict[str, Any]) -> None:
        """Only members use a private or direct room (``forbidden`` otherwise, the same
        whether it exists or not). A socket in the room passed this check at ``join``, and
        a removed member's sockets are taken out of it on every replica: no store read for
        a joined socket's messages, none at all for public rooms."""
        if self._conversations is None or event not in MEMBERS_ONLY_EVENTS:
            return
        room = payload.get("room")
        if type(room) is str and room in conn.rooms:
            return  # joined: checked at its join (the common case, one set lookup)
        if isinstance(room, str) and members_only(room):
            await self._conversations.check(room, conn.identity.user_id)

    def joined(self, conn: Connection, payload: dict[str, Any]) -> str:
        """The payload's room, which the socket must have joined (``not_in_room``)."""
        value = payload.get("room")
        if type(value) is str and value in conn.rooms:
            return value  # validated when it was joined: not again per message
        room = payloads.room(payload)
        # A member uses its private and direct rooms without a join (the access check
        # before the handler let only members through).
        if room not in conn.rooms and not (self._conversations is not None and members_only(room)):
            raise NotInRoom(f"join {room} first")
        return room

    def allowed(self, conn: Connection, payload: dict[str, Any]) -> str:
        """The payload's room, which the socket's token must allow (``forbidden``)."""
        room = payloads.room(payload)
        # Private and direct rooms: membership (checked before) is the permission.
        if not conn.identity.may_join(room) and not members_only(room):
            raise Forbidden(f"your token does not allow room {room}")
        return room

    async def hidden_from(self, conn: Connection) -> frozenset[str]:
        """Whom the socket's user blocks: its history leaves them out (chatsvc.chat.blocks)."""
        if self._conversations is None or self._conversations.blocks is None:
            return frozenset()
        return await self._conversations.blocks.hidden_from(conn.identity.user_id)
