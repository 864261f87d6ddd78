"""ListFlagged (issue 25): the messages the spam filters caught, for moderators.

Mixed into :class:`~chatsvc.admin.servicer.AdminServicer`; reads the store's flags
(:class:`~chatsvc.store.base.FlagStore`). A token's ``rooms`` claim binds it like the other
RPCs: a room it excludes is PERMISSION_DENIED, and listing every room needs a token
without the claim. Errors are mapped by the guard.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2

from chatsvc.admin.guard import caller
from chatsvc.admin.v1 import admin_pb2
from chatsvc.chat import payloads
from chatsvc.chat.service import ChatService
from chatsvc.errors import Forbidden, InvalidPayload
from chatsvc.model.ids import is_message_id
from chatsvc.model.messages import Flag

FLAGGED_PAGE_DEFAULT = 50
FLAGGED_PAGE_MAX = 100


def _scope(room: str) -> str | None:
    """The room to list (None: every room) the caller may see."""
    who = caller()
    if not room:
        if who is not None and who.room_patterns is not None:
            raise Forbidden("a token with a 'rooms' claim must name a room")
        return None
    if not payloads.ROOM_PATTERN.fullmatch(room):
        raise InvalidPayload("'room' must be 1..64 characters of letters, digits, _ - . :")
    if who is not None and not who.may_join(room):
        raise Forbidden(f"your token does not allow room {room}")
    return room


def flag_pb(flag: Flag) -> admin_pb2.FlaggedMessage:
    """The protobuf form of a flag."""
    at = timestamp_pb2.Timestamp()
    at.FromMilliseconds(flag.at_ms)
    return admin_pb2.FlaggedMessage(
        id=flag.id,
        room=flag.room,
        user_id=flag.user_id,
        user_name=flag.user_name,
        rule=flag.rule,
        action=flag.action,
        text=flag.text,
        message_id=flag.message_id,
        flagged_at=at,
    )


class FlaggedRpcs:
    """ListFlagged; needs the servicer's ``_service``."""

    _service: ChatService

    async def ListFlagged(
        self, request: admin_pb2.ListFlaggedRequest, context: Any
    ) -> admin_pb2.ListFlaggedResponse:
        room = _scope(request.room)
        size = request.page_size or FLAGGED_PAGE_DEFAULT
        if not 1 <= size <= FLAGGED_PAGE_MAX:
            raise InvalidPayload(f"'page_size' must be in 1..{FLAGGED_PAGE_MAX}")
        before = request.page_token or None
        if before is not None and not is_message_id(before):
            raise InvalidPayload("'page_token' must be the next_page_token of a previous page")
        found = await self._service.message_store.list_flags(room, before=before, limit=size + 1)
        page = found[:size]
        token = page[-1].id if len(found) > size else ""
        return admin_pb2.ListFlaggedResponse(messages=[flag_pb(f) for f in page], next_page_token=token)
