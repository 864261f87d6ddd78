"""The conversation RPCs of the admin API (issue 24): CreateRoom, AddMember, RemoveMember,
SetRole, ListMembers, ListUserRooms.

Mixed into :class:`~chatsvc.admin.servicer.AdminServicer`; the caller acts as an internal
service (``actor=None`` in :mod:`chatsvc.chat.conversations`): it may manage any private
room, within the same bounds and the last-owner rule. Errors are mapped by the guard.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import timestamp_pb2

from chatsvc.admin.guard import caller
from chatsvc.admin.v1 import admin_pb2
from chatsvc.chat import payloads
from chatsvc.chat.conversations import Conversations
from chatsvc.errors import Forbidden, InvalidPayload, Unavailable
from chatsvc.model.rooms import MEMBER, ROLES, Member, kind_of_name

log = logging.getLogger(__name__)

USER_ID_MAX = 128
TITLE_MAX = 100
MEMBERS_PAGE_DEFAULT = 100
MEMBERS_PAGE_MAX = 500


def _user(value: str, field: str = "user_id") -> str:
    if not value or len(value) > USER_ID_MAX or not value.isprintable():
        raise InvalidPayload(f"'{field}' must be 1..{USER_ID_MAX} printable characters")
    return value


def _room(value: str) -> str:
    if not payloads.ROOM_PATTERN.fullmatch(value):
        raise InvalidPayload("'room' must be 1..64 characters of letters, digits, _ - . :")
    who = caller()
    if who is not None and not who.may_join(value):
        raise Forbidden(f"your token does not allow room {value}")
    return value


def _role(value: str, *, default: str | None = None) -> str:
    if not value and default is not None:
        return default
    if value not in ROLES:
        raise InvalidPayload(f"'role' must be one of {', '.join(ROLES)}")
    return value


def _every_room() -> None:
    who = caller()
    if who is not None and who.room_patterns is not None:
        raise Forbidden("a token with a 'rooms' claim cannot create rooms or list a user's rooms")


def _member_pb(member: Member) -> admin_pb2.Member:
    added = timestamp_pb2.Timestamp()
    added.FromMilliseconds(member.added_at_ms)
    return admin_pb2.Member(user_id=member.user_id, role=member.role, added_at=added)


class ConversationRpcs:
    """The conversation RPCs; needs ``_conversations`` (None: UNAVAILABLE)."""

    async def StreamNotifications(
        self, request: admin_pb2.StreamNotificationsRequest, context: Any
    ) -> AsyncIterator[admin_pb2.Notification]:
        _every_room()
        notifier = self._rules().notifier
        if notifier is None:
            raise Unavailable("offline notifications need a store with an outbox (SQLite or ScyllaDB)")
        if request.after_position < 0:
            raise InvalidPayload("'after_position' must be 0 or a position seen before")
        async for position, n in notifier.stream(request.after_position):
            created = timestamp_pb2.Timestamp()
            created.FromMilliseconds(n.created_at_ms)
            yield admin_pb2.Notification(
                position=position,
                user_id=n.user_id,
                room=n.room,
                message_id=n.message_id,
                sender=n.sender,
                preview=n.preview,
                kind=n.kind,
                created_at=created,
            )

    _conversations: Conversations | None

    def _rules(self) -> Conversations:
        if self._conversations is None:
            raise Unavailable("conversations are not configured on this server")
        return self._conversations

    async def CreateRoom(
        self, request: admin_pb2.CreateRoomRequest, context: Any
    ) -> admin_pb2.ConversationRoom:
        _every_room()
        owner = _user(request.owner_id, "owner_id")
        title = request.title.strip()
        if not title or len(title) > TITLE_MAX:
            raise InvalidPayload(f"'title' must be 1..{TITLE_MAX} characters")
        members = [_user(m, "member_ids") for m in request.member_ids]
        room = await self._rules().create_room(owner, title, members)
        log.info("admin: created %s for %s", room["room"], owner)
        return admin_pb2.ConversationRoom(
            room=room["room"],
            kind=room["kind"],
            title=room["title"],
            members=room["members"],
            created_by=owner,
        )

    async def AddMember(self, request: admin_pb2.AddMemberRequest, context: Any) -> admin_pb2.MemberResponse:
        room, user = _room(request.room), _user(request.user_id)
        role = _role(request.role, default=MEMBER)
        member = await self._rules().add_member(None, room, user)
        if role != member.role:
            member = await self._rules().set_role(None, room, user, role)
        return admin_pb2.MemberResponse(room=room, member=_member_pb(member))

    async def RemoveMember(
        self, request: admin_pb2.RemoveMemberRequest, context: Any
    ) -> admin_pb2.RemoveMemberResponse:
        room, user = _room(request.room), _user(request.user_id)
        await self._rules().remove_member(None, room, user)
        return admin_pb2.RemoveMemberResponse()

    async def SetRole(self, request: admin_pb2.SetRoleRequest, context: Any) -> admin_pb2.MemberResponse:
        room, user = _room(request.room), _user(request.user_id)
        member = await self._rules().set_role(None, room, user, _role(request.role))
        return admin_pb2.MemberResponse(room=room, member=_member_pb(member))

    async def ListMembers(
        self, request: admin_pb2.ListMembersRequest, context: Any
    ) -> admin_pb2.ListMembersResponse:
        room = _room(request.room)
        size = request.page_size or MEMBERS_PAGE_DEFAULT
        if not 1 <= size <= MEMBERS_PAGE_MAX:
            raise InvalidPayload(f"'page_size' must be in 1..{MEMBERS_PAGE_MAX}")
        after = _user(request.page_token, "page_token") if request.page_token else None
        await self._rules().managed_room(room)
        page = await self._rules().list_members(room, after, size)
        token = page[-1].user_id if len(page) == size else ""
        return admin_pb2.ListMembersResponse(members=[_member_pb(m) for m in page], next_page_token=token)

    async def ListUserRooms(
        self, request: admin_pb2.ListUserRoomsRequest, context: Any
    ) -> admin_pb2.ListUserRoomsResponse:
        _every_room()
        user = _user(request.user_id)
        rooms = await self._rules().rooms_of(user)
        return admin_pb2.ListUserRoomsResponse(
            rooms=[admin_pb2.UserRoom(room=m.room, kind=kind_of_name(m.room), role=m.role) for m in rooms]
        )
