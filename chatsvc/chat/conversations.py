"""The rules of private and direct rooms (issue 24): who may create, open, join, manage.

* ``private`` rooms: created by a user (its ``owner``), members added by owners and
  moderators; only an owner grants or removes ``moderator``/``owner``; anyone may remove
  itself, except the last owner. ``direct`` rooms: exactly two members, the same room for
  the same pair whoever opens it, no member management.
* Names are server-generated (:data:`~chatsvc.model.rooms.PRIVATE_PREFIX` /
  :data:`~chatsvc.model.rooms.DIRECT_PREFIX` + 128 random bits): a name says nothing and
  cannot be guessed; the prefix tells the namespace a room needs a membership check
  without a store read for every public room.
* Access: :meth:`Conversations.check` answers ``forbidden`` with the same message whether
  the room exists or not, so a non-member learns nothing.
* Changes reach every member's sockets (``member_added``/``member_removed``/
  ``role_changed``, sent to the room and to the affected user's sockets); a removed
  member's sockets are taken out of the room on every replica by the ``kick`` cluster
  action (:class:`~chatsvc.chat.moderation.Moderator`), so it stops receiving at once.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from chatsvc.chat.blocks import Blocks
from chatsvc.chat.directory import Directory
from chatsvc.chat.notify import Notifier
from chatsvc.errors import (
    ChatError,
    DmRateLimited,
    Forbidden,
    InvalidPayload,
    LastOwner,
    NotFound,
    RoomFull,
    UserRoomLimit,
)
from chatsvc.model.rooms import (
    DIRECT,
    DIRECT_PREFIX,
    MEMBER,
    MODERATOR,
    OWNER,
    PRIVATE,
    PRIVATE_PREFIX,
    Conversation,
    Member,
    dm_pair,
    members_only,
)
from chatsvc.settings import Limits
from chatsvc.store.base import ConversationStore

log = logging.getLogger(__name__)

#: The Socket.IO room every socket of a user is in (chatsvc.chat.namespace enters it at
#: connect). ``@`` is not allowed in client room names, so no client can join it.
USER_ROOM_PREFIX = "@u:"
#: Refusal for a room the user is not a member of, whether it exists or not.
NOT_A_MEMBER = "you are not a member of this room"
MANAGERS = frozenset({OWNER, MODERATOR})
#: Who an owner-only change is: granting or taking away these roles.
OWNER_ONLY = frozenset({OWNER, MODERATOR})

Kick = Callable[[str, str, str], Awaitable[object]]
#: ``(room, users)``: make every replica with a socket of ``users`` read ``room`` (routing).
Follow = Callable[[str, list[str]], Awaitable[object]]


class Emitter(Protocol):
    """The part of ``socketio.AsyncServer`` used to announce membership changes."""

    async def emit(self, event: str, data: Any = None, room: str | list[str] | None = None) -> None: ...


def user_room(user_id: str) -> str:
    """The Socket.IO room of every socket of ``user_id``."""
    return USER_ROOM_PREFIX + user_id


def new_room_name(kind: str) -> str:
    """An unguessable name: the kind's prefix and 128 random bits (within the 64-character
    room name bound)."""
    return (PRIVATE_PREFIX if kind == PRIVATE else DIRECT_PREFIX) + secrets.token_hex(16)


class Conversations:
    """Creates private and direct rooms and manages their members; answers access checks."""

    def __init__(
        self,
        store: ConversationStore,
        emitter: Emitter,
        limits: Limits,
        *,
        kick: Kick | None = None,
        blocks: Blocks | None = None,
        directory: Directory | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.blocks = blocks
        self.directory = directory
        self.notifier = notifier
        self._store = store
        self._emitter = emitter
        self._limits = limits
        self._kick = kick
        self._follow: Follow | None = None
        self._clock = clock
        self._monotonic = monotonic
        # DMs opened per user in the last minute (this replica), pruned as it is read.
        self._dm_opens: dict[str, deque[float]] = {}

    def use_kick(self, kick: Kick) -> None:
        """Take removed members out of the room on every replica with ``kick`` (the
        moderator's cluster action, built after this)."""
        self._kick = kick

    def use_follow(self, follow: Follow) -> None:
        """With ``KAFKA_EVENTS_ROUTING``: before a create, a new DM or an add is answered, have
        the replicas of the users added read the room (chatsvc.chat.routed_members)."""
        self._follow = follow

    async def _followed(self, room: str, users: list[str]) -> None:
        if self._follow is not None:
            await self._follow(room, users)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- access ---------------------------------------------------------------------------

    async def check(self, room: str, user_id: str) -> Member | None:
        """None for a public room; the membership for a private/direct one, else ``forbidden``."""
        if not members_only(room):
            return None
        member = await self._store.get_member(room, user_id)
        if member is None:
            raise Forbidden(NOT_A_MEMBER)
        return member

    async def audience(self, room: str) -> list[str]:
        """Where a private or direct room's events go: the room (sockets that joined) and
        the user room of every member (every socket of theirs, joined or not). Read from
        the store each time: a member removed on any replica stops receiving at once."""
        members = await self._store.list_members(room, after=None, limit=self._limits.members_per_room)
        return [room, *(user_room(m.user_id) for m in members)]

    async def moderates(self, room: str, user_id: str) -> bool:
        """Whether ``user_id`` is an owner or moderator of ``room`` (public rooms: nobody)."""
        if not members_only(room):
            return False
        member = await self._store.get_member(room, user_id)
        return member is not None and member.role in MANAGERS

    async def describe(self, room: str, user_id: str) -> dict[str, Any]:
        """A member's view of a room: ``{room, kind, title, role, members}`` (a DM's title
        is the other user)."""
        member = await self.check(room, user_id)
        conversation = await self._store.get_conversation(room)
        if member is None or conversation is None:
            raise Forbidden(NOT_A_MEMBER)
        return await self._wire(conversation, member)

    async def _wire(self, conversation: Conversation, member: Member) -> dict[str, Any]:
        title = conversation.title
        if conversation.kind == DIRECT:
            others = [
                m.user_id
                for m in await self._store.list_members(conversation.name, after=None, limit=2)
                if m.user_id != member.user_id
            ]
            title = others[0] if others else member.user_id
        return {
            "room": conversation.name,
            "kind": conversation.kind,
            "title": title,
            "role": member.role,
            "members": await self._store.count_members(conversation.name),
        }

    # -- creating ---------------------------------------------------------------------------

    async def create_room(self, creator: str, title: str, members: list[str]) -> dict[str, Any]:
        """A private room owned by ``creator`` with ``members``; the creator's view of it."""
        others = sorted(set(members) - {creator})
        if len(others) + 1 > self._limits.members_per_room:
            raise RoomFull(f"a room has at most {self._limits.members_per_room} members")
        for user_id in others:
            await self._not_blocked(user_id, creator)
        for user_id in (creator, *others):
            await self._room_for(user_id)
        now = self._now_ms()
        conversation = Conversation(new_room_name(PRIVATE), PRIVATE, title, creator, now)
        owner = Member(conversation.name, creator, OWNER, now)
        added = [Member(conversation.name, u, MEMBER, now) for u in others]
        await self._store.create_conversation(conversation, [owner, *added])
        await self._followed(conversation.name, [creator, *others])
        for member in added:
            await self._tell("member_added", conversation.name, member.user_id, creator, MEMBER)
        return await self._wire(conversation, owner)

    async def open_dm(self, opener: str, other: str) -> dict[str, Any]:
        """The direct room of ``opener`` and ``other``, created on first open; idempotent."""
        if other == opener:
            raise InvalidPayload("'user' must be another user")
        await self._not_blocked(other, opener)
        pair = dm_pair(opener, other)
        name = await self._store.find_dm(pair)
        if name is None:
            self._count_dm_open(opener)
            for user_id in (opener, other):
                await self._room_for(user_id)
            candidate = new_room_name(DIRECT)
            name = await self._store.claim_dm(pair, candidate)
            if name == candidate:
                await self._create_dm(name, opener, other)
                await self._followed(name, [opener, other])
                await self._tell("member_added", name, other, opener, MEMBER)
        conversation = await self._store.get_conversation(name)
        member = await self._store.get_member(name, opener)
        if conversation is None or member is None:
            # The pair's first opener claimed it but did not finish writing the room (it
            # failed in between): finish it, the same room either way.
            conversation, member = await self._create_dm(name, opener, other)
        return await self._wire(conversation, member)

    async def _create_dm(self, name: str, opener: str, other: str) -> tuple[Conversation, Member]:
        now = self._now_ms()
        conversation = Conversation(name, DIRECT, "", opener, now)
        member = Member(name, opener, MEMBER, now)
        await self._store.create_conversation(conversation, [member, Member(name, other, MEMBER, now)])
        return conversation, member

    async def _not_blocked(self, user_id: str, by: str) -> None:
        """``forbidden`` if ``user_id`` blocks ``by`` (who wants to message or add it)."""
        if self.blocks is not None and await self.blocks.is_blocked(user_id, by):
            raise Forbidden(f"{user_id} does not accept this from you")

    def _count_dm_open(self, opener: str) -> None:
        now = self._monotonic()
        opens = self._dm_opens.setdefault(opener, deque())
        while opens and now - opens[0] >= 60.0:
            opens.popleft()
        if len(opens) >= self._limits.dms_per_minute:
            raise DmRateLimited(f"at most {self._limits.dms_per_minute} new direct messages a minute")
        opens.append(now)
        if len(self._dm_opens) > 100_000:  # bounded: forget the stalest user
            del self._dm_opens[next(iter(self._dm_opens))]

    async def _room_for(self, user_id: str) -> None:
        """Refuse if ``user_id`` is in as many private/direct rooms as allowed."""
        cap = self._limits.rooms_per_user
        if len(await self._store.rooms_of(user_id, limit=cap)) >= cap:
            raise UserRoomLimit(f"a user is in at most {cap} private and direct rooms")

    # -- managing members -------------------------------------------------------------------

    async def _managed(self, room: str, actor: str | None) -> tuple[Conversation, Member | None]:
        """The room (private: DMs are not managed) and the actor's membership (None for an
        internal caller, which may do anything)."""
        if not members_only(room):
            raise InvalidPayload("only private rooms have members")
        acting = await self.check(room, actor) if actor is not None else None
        conversation = await self._store.get_conversation(room)
        if conversation is None:
            if actor is None:
                raise NotFound(f"no room {room}")
            raise Forbidden(NOT_A_MEMBER)
        if conversation.kind == DIRECT:
            raise Forbidden("a direct room always has exactly its two users")
        return conversation, acting

    async def add_member(self, actor: str | None, room: str, user_id: str) -> Member:
        """Add ``user_id`` as a ``member`` (owners and moderators may); idempotent."""
        _, acting = await self._managed(room, actor)
        if acting is not None and acting.role not in MANAGERS:
            raise Forbidden("only owners and moderators add members")
        existing = await self._store.get_member(room, user_id)
        if existing is not None:
            return existing
        if actor is not None:
            await self._not_blocked(user_id, actor)
        if await self._store.count_members(room) >= self._limits.members_per_room:
            raise RoomFull(f"a room has at most {self._limits.members_per_room} members")
        await self._room_for(user_id)
        member = Member(room, user_id, MEMBER, self._now_ms())
        await self._store.put_member(member)
        await self._followed(room, [user_id])
        await self._tell("member_added", room, user_id, actor, MEMBER)
        return member

    async def remove_member(self, actor: str | None, room: str, user_id: str) -> None:
        """Remove ``user_id``: itself always (not the last owner), others by owners and
        moderators, owners and moderators only by an owner."""
        if not members_only(room) and actor == user_id and self.directory is not None:
            await self.directory.removed(user_id, room)  # out of its public rooms' listing
            return
        _, acting = await self._managed(room, actor)
        target = await self._store.get_member(room, user_id)
        if target is None:
            if acting is not None and acting.role not in MANAGERS:
                raise Forbidden("only owners and moderators remove members")
            return
        if acting is not None and actor != user_id:
            if acting.role not in MANAGERS:
                raise Forbidden("only owners and moderators remove members")
            if target.role in OWNER_ONLY and acting.role != OWNER:
                raise Forbidden("only an owner removes owners and moderators")
        if target.role == OWNER and await self._owners(room) <= 1:
            raise LastOwner()
        await self._store.delete_member(room, user_id)
        await self._tell("member_removed", room, user_id, actor, None)
        if self._kick is not None:
            try:
                await self._kick(room, user_id, "removed from the room")
            except ChatError as exc:
                # Removed in the store: every access check refuses it from now on; only
                # sockets already in the room keep it until they leave (logged once here).
                log.warning("a member was removed but not kicked on every replica (%s)", exc.code)

    async def set_role(self, actor: str | None, room: str, user_id: str, role: str) -> Member:
        """Change a member's role; granting or taking ``owner``/``moderator`` is the owners'."""
        _, acting = await self._managed(room, actor)
        target = await self._store.get_member(room, user_id)
        if target is None:
            raise NotFound(f"{user_id} is not a member of this room")
        if target.role == role:
            return target
        if acting is not None and acting.role != OWNER:
            raise Forbidden("only an owner changes roles")
        if target.role == OWNER and await self._owners(room) <= 1:
            raise LastOwner()
        changed = Member(room, user_id, role, target.added_at_ms)
        await self._store.put_member(changed)
        await self._tell("role_changed", room, user_id, actor, role)
        return changed

    async def _owners(self, room: str) -> int:
        owners, after = 0, None
        while True:
            page = await self._store.list_members(room, after=after, limit=500)
            owners += sum(1 for m in page if m.role == OWNER)
            if len(page) < 500:
                return owners
            after = page[-1].user_id

    async def managed_room(self, room: str) -> Conversation:
        """The record of a private or direct room; ``not_found`` otherwise (internal callers)."""
        conversation = await self._store.get_conversation(room) if members_only(room) else None
        if conversation is None:
            raise NotFound(f"no private or direct room {room}")
        return conversation

    async def rooms_of(self, user_id: str) -> list[Member]:
        """A user's private and direct rooms (all of them: at most rooms per user)."""
        return await self._store.rooms_of(user_id, limit=self._limits.rooms_per_user)

    async def list_members(self, room: str, after: str | None, limit: int) -> list[Member]:
        """One page of members by user id."""
        return await self._store.list_members(room, after=after, limit=limit)

    async def _tell(self, event: str, room: str, user_id: str, actor: str | None, role: str | None) -> None:
        """The room's sockets and every socket of the affected user (once each)."""
        data: dict[str, Any] = {"room": room, "user": user_id, "by": actor or "admin"}
        if role is not None:
            data["role"] = role
        try:
            await self._emitter.emit(event, data, room=[room, user_room(user_id)])
        except Exception:
            log.warning("could not announce %s in a room", event, exc_info=log.isEnabledFor(logging.DEBUG))
