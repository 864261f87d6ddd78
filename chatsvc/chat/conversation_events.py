"""The client events of conversations (issue 24): ``create_room``, ``open_dm``,
``add_member``, ``remove_member``, ``set_role``, ``members``.

Each handler takes ``(sid, conn, payload)`` like the namespace's own and answers the ack;
validation errors name the field (``invalid_payload``), rules answer their own codes
(:mod:`chatsvc.chat.conversations`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from chatsvc.auth.identity import Identity
from chatsvc.chat import payloads
from chatsvc.chat.blocks import Blocks
from chatsvc.chat.conversations import Conversations
from chatsvc.errors import InvalidPayload
from chatsvc.model.rooms import ROLES
from chatsvc.settings import Limits

#: Longest room title (characters).
TITLE_MAX = 100
#: Longest user id (the token verifier's bound on ``sub``).
USER_ID_MAX = 128
#: Members listed per ``members`` page at most.
MEMBERS_PAGE_MAX = 500
#: Rooms per ``my_rooms`` page at most, and the longest cursor it hands out.
MY_ROOMS_PAGE_MAX = 100
CURSOR_MAX = 100


class HasIdentity(Protocol):
    """The part of a namespace connection the handlers read."""

    identity: Identity


Ack = dict[str, Any]
Handler = Callable[[str, Any, dict[str, Any]], Awaitable[Ack]]


def user_id(payload: dict[str, Any], field: str = "user") -> str:
    """A user id field: 1..128 characters."""
    value = payload.get(field)
    if not isinstance(value, str) or not value or len(value) > USER_ID_MAX:
        raise InvalidPayload(f"'{field}' must be a user id of 1..{USER_ID_MAX} characters")
    _unicode(value, field)
    return value


def _unicode(value: str, field: str) -> None:
    """A lone surrogate cannot be stored or logged: ``invalid_payload`` naming the field."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidPayload(f"'{field}' is not valid Unicode (a lone surrogate)") from None


def title(payload: dict[str, Any]) -> str:
    """The ``title``: 1..100 characters."""
    value = payload.get("title")
    if not isinstance(value, str) or not value.strip() or len(value) > TITLE_MAX:
        raise InvalidPayload(f"'title' must be 1..{TITLE_MAX} characters")
    _unicode(value, "title")
    return value.strip()


def user_ids(payload: dict[str, Any], cap: int) -> list[str]:
    """The optional ``members`` list: at most ``cap`` user ids."""
    value = payload.get("members", [])
    if not isinstance(value, list) or len(value) > cap:
        raise InvalidPayload(f"'members' must be a list of at most {cap} user ids")
    return [user_id({"members": item}, "members") for item in value]


def handlers(conversations: Conversations, limits: Limits) -> dict[str, Handler]:
    """The client events, by name."""

    async def create_room(sid: str, conn: HasIdentity, payload: dict[str, Any]) -> Ack:
        kind = payload.get("kind", "private")
        if kind != "private":
            raise InvalidPayload("'kind' must be \"private\" (open_dm makes direct rooms)")
        members = user_ids(payload, limits.members_per_room)
        room = await conversations.create_room(conn.identity.user_id, title(payload), members)
        return {"ok": True, **room}

    async def open_dm(sid: str, conn: HasIdentity, payload: dict[str, Any]) -> Ack:
        room = await conversations.open_dm(conn.identity.user_id, user_id(payload))
        return {"ok": True, **room}

    async def add_member(sid: str, conn: HasIdentity, payload: dict[str, Any]) -> Ack:
        room, user = payloads.room(payload), user_id(payload)
        member = await conversations.add_member(conn.identity.user_id, room, user)
        return {"ok": True, "room": member.room, "user": member.user_id, "role": member.role}

    async def remove_member(sid: str, conn: HasIdentity, payload: dict[str, Any]) -> Ack:
        room, user = payloads.room(payload), user_id(payload)
        await conversations.remove_member(conn.identity.user_id, room, user)
        return {"ok": True, "room": room, "user": user}

    async def set_role(sid: str, conn: HasIdentity, payload: dict[str, Any]) -> Ack:
        role = payload.get("role")
        if role not in ROLES:
            raise InvalidPayload(f"'role' must be one of {', '.join(ROLES)}")
        member = await conversations.set_role(
            conn.identity.user_id, payloads.room(payload), user_id(payload), str(role)
        )
        return {"ok": True, "room": member.room, "user": member.user_id, "role": member.role}

    async def members(sid: str, conn: HasIdentity, payload: dict[str, Any]) -> Ack:
        room = payloads.room(payload)
        await conversations.check(room, conn.identity.user_id)
        after = user_id(payload, "after") if payload.get("after") is not None else None
        limit = payloads.page_limit(payload, 100, MEMBERS_PAGE_MAX)
        page = await conversations.list_members(room, after, limit)
        return {
            "ok": True,
            "room": room,
            "members": [{"user": m.user_id, "role": m.role} for m in page],
            "next_after": page[-1].user_id if len(page) == limit else None,
        }

    async def my_rooms(sid: str, conn: HasIdentity, payload: dict[str, Any]) -> Ack:
        directory = conversations.directory
        if directory is None:
            raise InvalidPayload("the directory is not available")
        before = payload.get("before")
        if before is not None and (not isinstance(before, str) or not 0 < len(before) <= CURSOR_MAX):
            raise InvalidPayload("'before' must be the next_before of a previous answer")
        limit = payloads.page_limit(payload, 20, MY_ROOMS_PAGE_MAX)
        rooms, next_before = await directory.my_rooms(conn.identity.user_id, before, limit)
        return {"ok": True, "rooms": rooms, "next_before": next_before}

    def blocks() -> Blocks:
        if conversations.blocks is None:
            raise InvalidPayload("blocking is not available")
        return conversations.blocks

    async def block(sid: str, conn: HasIdentity, payload: dict[str, Any]) -> Ack:
        other = user_id(payload)
        await blocks().block(conn.identity.user_id, other)
        return {"ok": True, "user": other}

    async def unblock(sid: str, conn: HasIdentity, payload: dict[str, Any]) -> Ack:
        other = user_id(payload)
        await blocks().unblock(conn.identity.user_id, other)
        return {"ok": True, "user": other}

    async def blocked(sid: str, conn: HasIdentity, payload: dict[str, Any]) -> Ack:
        return {"ok": True, "users": await blocks().blocked(conn.identity.user_id)}

    return {
        "my_rooms": my_rooms,
        "block": block,
        "unblock": unblock,
        "blocked": blocked,
        "create_room": create_room,
        "open_dm": open_dm,
        "add_member": add_member,
        "remove_member": remove_member,
        "set_role": set_role,
        "members": members,
    }
