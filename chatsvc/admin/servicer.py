"""The ``chatsvc.admin.v1.AdminService`` implementation: validate, act, convert.

Each method checks its arguments (``InvalidPayload`` naming the field), calls the chat
service, cluster presence or moderator, and converts the result to protobuf. Errors are
never mapped here: :mod:`chatsvc.admin.guard` does that for every method.

An admin token's ``rooms`` claim binds the admin API as it binds sockets: a method on a
room the claim excludes is ``Forbidden`` (PERMISSION_DENIED), ListRooms shows only the
rooms it allows, and the user-wide actions (DisconnectUser, BanUser, UnbanUser), which
reach every room, need a token without a ``rooms`` claim (or a client certificate).
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from chatsvc.admin.conversation_rpcs import ConversationRpcs
from chatsvc.admin.flagged_rpcs import FlaggedRpcs
from chatsvc.admin.guard import caller
from chatsvc.admin.v1 import admin_pb2, admin_pb2_grpc
from chatsvc.auth.identity import Identity
from chatsvc.chat import payloads
from chatsvc.chat.cluster import Reach
from chatsvc.chat.cluster_presence import ClusterPresence
from chatsvc.chat.conversations import Conversations
from chatsvc.chat.moderation import Disconnected, Moderator
from chatsvc.chat.modes import RoomModes
from chatsvc.chat.service import ChatService, Draft
from chatsvc.errors import Forbidden, InvalidPayload, NotFound, TooLarge
from chatsvc.model.ids import is_message_id
from chatsvc.model.messages import Message, Moderation, RoomInfo
from chatsvc.settings import Limits

log = logging.getLogger(__name__)

ROOMS_PAGE_DEFAULT = 50
ROOMS_PAGE_MAX = 500
BROADCAST_MAX_ROOMS = 100
USER_ID_MAX = 128
NAME_MAX = 64
REASON_MAX = 256
MAX_DURATION_SECONDS = 10 * 365 * 24 * 3600
SYSTEM_SENDER = ("system", "System")
DEFAULT_DISCONNECT_REASON = Disconnected.default_message
DEFAULT_KICK_REASON = "removed from the room by an administrator"


# -- argument checks (each names its field) ----------------------------------------------


def _room(value: str, field: str = "room") -> str:
    if not payloads.ROOM_PATTERN.fullmatch(value):
        raise InvalidPayload(f"'{field}' must be 1..64 characters of letters, digits, _ - . :")
    return value


def _scoped_room(value: str, field: str = "room") -> str:
    """A valid room name the caller's token may act on (its ``rooms`` claim, if any)."""
    room = _room(value, field)
    who = caller()
    if who is not None and not who.may_join(room):
        raise Forbidden(f"your token does not allow room {room}")
    return room


def _every_room() -> None:
    """Refuse a user-wide action to a token restricted to some rooms."""
    who = caller()
    if who is not None and who.room_patterns is not None:
        raise Forbidden("a token with a 'rooms' claim cannot act on users across every room")


def _user_id(value: str, field: str = "user_id") -> str:
    if not value or len(value) > USER_ID_MAX or not value.isprintable():
        raise InvalidPayload(f"'{field}' must be 1..{USER_ID_MAX} printable characters")
    return value


def _text(value: str, max_bytes: int) -> str:
    if not value.strip():
        raise InvalidPayload("'text' must be a non-empty string")
    if len(value.encode()) > max_bytes:
        raise TooLarge(f"'text' is larger than {max_bytes} bytes")
    return value


def _reason(value: str, default: str) -> str:
    if len(value) > REASON_MAX:
        raise InvalidPayload(f"'reason' must be at most {REASON_MAX} characters")
    return value.strip() or default


def _client_msg_id(value: str) -> str | None:
    if not value:
        return None
    if len(value) > payloads.CLIENT_MSG_ID_MAX:
        raise InvalidPayload(f"'client_msg_id' must be at most {payloads.CLIENT_MSG_ID_MAX} characters")
    return value


def _page_size(value: int, default: int, maximum: int) -> int:
    if value == 0:
        return default
    if not 1 <= value <= maximum:
        raise InvalidPayload(f"'page_size' must be 0 (default {default}) or 1..{maximum}")
    return value


def _duration(request: Any) -> float | None:
    if not request.HasField("duration"):
        return None
    d: duration_pb2.Duration = request.duration
    seconds = d.seconds + d.nanos / 1e9
    if seconds < 0 or seconds > MAX_DURATION_SECONDS:
        raise InvalidPayload("'duration' must be between 0 (until lifted) and 10 years")
    return seconds or None


def _sender(request: Any) -> Identity:
    user_id, name = SYSTEM_SENDER
    if request.HasField("sender"):
        user_id = _user_id(request.sender.id, "sender.id") if request.sender.id else user_id
        if len(request.sender.name) > NAME_MAX:
            raise InvalidPayload(f"'sender.name' must be at most {NAME_MAX} characters")
        name = request.sender.name or (user_id if request.sender.id else name)
    return Identity(user_id=user_id, name=name, roles=frozenset({"system"}))


# -- conversions ----------------------------------------------------------------------------


def _timestamp(ms: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def message_pb(message: Message) -> admin_pb2.Message:
    """A stored message as protobuf."""
    out = admin_pb2.Message(
        id=message.id,
        room=message.room,
        user=admin_pb2.User(id=message.user_id, name=message.user_name),
        text=message.text,
        client_msg_id=message.client_msg_id or "",
        created_at=_timestamp(message.created_at_ms),
        deleted=message.deleted,
        kind=message.kind,
    )
    if message.edited_at_ms is not None:
        out.edited_at.CopyFrom(_timestamp(message.edited_at_ms))
    return out


def _room_pb(name: str, info: RoomInfo | None, online: int) -> admin_pb2.Room:
    room = admin_pb2.Room(name=name, online=online)
    if info is not None:
        room.created_at.CopyFrom(_timestamp(info.created_at_ms))
        room.last_message_id = info.last_message_id or ""
    return room


def _moderation_pb(record: Moderation) -> admin_pb2.Moderation:
    out = admin_pb2.Moderation(
        kind=record.kind, room=record.room, user_id=record.user_id, reason=record.reason
    )
    if record.until_ms is not None:
        out.until.CopyFrom(_timestamp(record.until_ms))
    return out


def _reach_pb(reach: Reach) -> admin_pb2.Reach:
    return admin_pb2.Reach(
        sockets=reach.sockets, replicas=reach.replicas, unanswered_replicas=list(reach.unanswered)
    )


def _audit(action: str, **details: object) -> None:
    who = caller()
    log.info(
        "admin %s by %s: %s",
        action,
        who.user_id if who else "?",
        " ".join(f"{k}={v!r}" for k, v in details.items()),
    )


class AdminServicer(FlaggedRpcs, ConversationRpcs, admin_pb2_grpc.AdminServiceServicer):
    """Every admin RPC; each acts on the whole cluster."""

    def __init__(
        self,
        service: ChatService,
        presence: ClusterPresence,
        moderator: Moderator,
        limits: Limits,
        *,
        version: str,
        conversations: Conversations | None = None,
        modes: RoomModes | None = None,
    ) -> None:
        self._conversations = conversations
        self._modes = modes
        self._service = service
        self._store = service.store
        self._presence = presence
        self._moderator = moderator
        self._limits = limits
        self._version = version

    async def _known_room(self, room: str) -> RoomInfo | None:
        """The room's stored info; ``NotFound`` if it has neither history nor members online."""
        info = await self._store.get_room(room)
        if info is None and await self._presence.online(room) == 0:
            raise NotFound(f"no room {room}")
        return info

    # -- messages -------------------------------------------------------------------------

    async def Publish(self, request: admin_pb2.PublishRequest, context: Any) -> admin_pb2.PublishResponse:
        room = _scoped_room(request.room)
        text = _text(request.text, self._limits.message_bytes)
        sender = _sender(request)
        client_msg_id = _client_msg_id(request.client_msg_id)
        message, created = await self._service.post(Draft(room, sender, text, client_msg_id, kind="system"))
        if created:
            _audit("publish", room=room, id=message.id, sender=sender.user_id)
        return admin_pb2.PublishResponse(message=message_pb(message), duplicate=not created)

    async def Broadcast(
        self, request: admin_pb2.BroadcastRequest, context: Any
    ) -> admin_pb2.BroadcastResponse:
        if not request.rooms:
            raise InvalidPayload("'rooms' must name at least one room")
        if len(request.rooms) > BROADCAST_MAX_ROOMS:
            raise InvalidPayload(f"'rooms' may name at most {BROADCAST_MAX_ROOMS} rooms")
        rooms = [_scoped_room(r, "rooms") for r in request.rooms]
        if len(set(rooms)) != len(rooms):
            raise InvalidPayload("'rooms' must not repeat a room")
        text = _text(request.text, self._limits.message_bytes)
        sender = _sender(request)
        client_msg_id = _client_msg_id(request.client_msg_id)
        messages = []
        for room in rooms:
            message, _ = await self._service.post(Draft(room, sender, text, client_msg_id, kind="system"))
            messages.append(message_pb(message))
        _audit("broadcast", rooms=len(rooms), sender=sender.user_id)
        return admin_pb2.BroadcastResponse(messages=messages)

    async def GetHistory(
        self, request: admin_pb2.GetHistoryRequest, context: Any
    ) -> admin_pb2.GetHistoryResponse:
        room = _scoped_room(request.room)
        limit = _page_size(
            request.page_size, self._limits.history_page_default, self._limits.history_page_max
        )
        before = request.page_token or None
        if before is not None and not is_message_id(before):
            raise InvalidPayload("'page_token' must be the next_page_token of a previous page")
        await self._known_room(room)
        page = await self._service.history(room, before, limit)
        return admin_pb2.GetHistoryResponse(
            messages=[message_pb(m) for m in page.messages], next_page_token=page.next_before or ""
        )

    async def DeleteMessage(
        self, request: admin_pb2.DeleteMessageRequest, context: Any
    ) -> admin_pb2.DeleteMessageResponse:
        room = _scoped_room(request.room)
        if not is_message_id(request.message_id):
            raise InvalidPayload("'message_id' must be a message id (26 characters)")
        deleted = await self._service.delete(room, request.message_id, None)
        _audit("delete", room=room, id=request.message_id)
        return admin_pb2.DeleteMessageResponse(message=message_pb(deleted))

    # -- rooms and presence ---------------------------------------------------------------

    async def ListRooms(
        self, request: admin_pb2.ListRoomsRequest, context: Any
    ) -> admin_pb2.ListRoomsResponse:
        size = _page_size(request.page_size, ROOMS_PAGE_DEFAULT, ROOMS_PAGE_MAX)
        after = request.page_token or ""
        if after:
            _room(after, "page_token")
        online = await self._presence.rooms()
        live = sorted(r for r in online if r > after)
        if request.online_only:
            names = live[: size + 1]
            infos = {n: await self._store.get_room(n) for n in names[:size]}
        else:
            # The first size+1 stored rooms after the cursor, merged with the rooms online:
            # every stored room up to the merged page's last name is among those fetched.
            stored = await self._store.list_rooms(after=after or None, limit=size + 1)
            infos = {info.name: info for info in stored}
            names = sorted(set(infos) | set(live))[: size + 1]
        page = names[:size]
        who = caller()
        shown = [n for n in page if who is None or who.may_join(n)]
        return admin_pb2.ListRoomsResponse(
            rooms=[_room_pb(n, infos.get(n), online.get(n, 0)) for n in shown],
            next_page_token=page[-1] if len(names) > size else "",
        )

    async def GetRoom(self, request: admin_pb2.GetRoomRequest, context: Any) -> admin_pb2.Room:
        room = _scoped_room(request.room)
        info = await self._known_room(room)
        return _room_pb(room, info, await self._presence.online(room))

    async def SetSlowMode(
        self, request: admin_pb2.SetSlowModeRequest, context: Any
    ) -> admin_pb2.SetSlowModeResponse:
        room = _scoped_room(request.room)
        if self._modes is None:
            raise NotFound("slow mode is not served here")
        await self._service.epoch()
        done = await self._modes.set_slow_mode(room, request.seconds, "admin")
        _audit("set_slow_mode", room=room, seconds=request.seconds)
        return admin_pb2.SetSlowModeResponse(
            room=room, slow_mode_seconds=done["slow_mode_seconds"], surge=done["surge"]
        )

    async def Presence(self, request: admin_pb2.PresenceRequest, context: Any) -> admin_pb2.PresenceResponse:
        room = _scoped_room(request.room)
        members = await self._presence.members(room)
        if not members:
            await self._known_room(room)
        return admin_pb2.PresenceResponse(
            room=room,
            online=len(members),
            users=[admin_pb2.User(id=m["id"], name=m["name"]) for m in members],
        )

    # -- moderation -----------------------------------------------------------------------

    async def DisconnectUser(
        self, request: admin_pb2.DisconnectUserRequest, context: Any
    ) -> admin_pb2.DisconnectUserResponse:
        _every_room()
        user_id = _user_id(request.user_id)
        reason = _reason(request.reason, DEFAULT_DISCONNECT_REASON)
        reach = await self._moderator.disconnect_user(user_id, reason)
        _audit("disconnect", user=user_id, sockets=reach.sockets)
        return admin_pb2.DisconnectUserResponse(reach=_reach_pb(reach))

    async def KickFromRoom(
        self, request: admin_pb2.KickFromRoomRequest, context: Any
    ) -> admin_pb2.KickFromRoomResponse:
        room = _scoped_room(request.room)
        user_id = _user_id(request.user_id)
        reason = _reason(request.reason, DEFAULT_KICK_REASON)
        reach = await self._moderator.kick(room, user_id, reason)
        _audit("kick", room=room, user=user_id, sockets=reach.sockets)
        return admin_pb2.KickFromRoomResponse(reach=_reach_pb(reach))

    async def MuteUser(self, request: admin_pb2.MuteUserRequest, context: Any) -> admin_pb2.MuteUserResponse:
        room = _scoped_room(request.room)
        user_id = _user_id(request.user_id)
        duration = _duration(request)
        record = await self._moderator.mute(room, user_id, duration, _reason(request.reason, ""))
        _audit("mute", room=room, user=user_id, seconds=duration)
        return admin_pb2.MuteUserResponse(mute=_moderation_pb(record))

    async def UnmuteUser(
        self, request: admin_pb2.UnmuteUserRequest, context: Any
    ) -> admin_pb2.UnmuteUserResponse:
        room = _scoped_room(request.room)
        user_id = _user_id(request.user_id)
        await self._moderator.unmute(room, user_id)
        _audit("unmute", room=room, user=user_id)
        return admin_pb2.UnmuteUserResponse()

    async def BanUser(self, request: admin_pb2.BanUserRequest, context: Any) -> admin_pb2.BanUserResponse:
        _every_room()
        user_id = _user_id(request.user_id)
        duration = _duration(request)
        record, reach = await self._moderator.ban(user_id, duration, _reason(request.reason, ""))
        _audit("ban", user=user_id, seconds=duration, sockets=reach.sockets)
        return admin_pb2.BanUserResponse(ban=_moderation_pb(record), reach=_reach_pb(reach))

    async def UnbanUser(
        self, request: admin_pb2.UnbanUserRequest, context: Any
    ) -> admin_pb2.UnbanUserResponse:
        _every_room()
        user_id = _user_id(request.user_id)
        await self._moderator.unban(user_id)
        _audit("unban", user=user_id)
        return admin_pb2.UnbanUserResponse()

    # -- cluster --------------------------------------------------------------------------

    async def Info(self, request: admin_pb2.InfoRequest, context: Any) -> admin_pb2.InfoResponse:
        replicas = await self._presence.replicas()
        return admin_pb2.InfoResponse(
            version=self._version,
            replica_id=self._presence.replica_id,
            replicas=[
                admin_pb2.Replica(
                    id=r.replica_id,
                    version=r.version,
                    connections=r.connections,
                    rooms=r.rooms,
                    users=r.users,
                    last_seen=_timestamp(int(r.last_seen * 1000)),
                )
                for r in replicas
            ],
            connections=sum(r.connections for r in replicas),
            rooms=len(await self._presence.rooms()),
            users=await self._presence.user_count(),
        )
