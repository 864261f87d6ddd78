"""Connection state recovery's wire form, pids, claiming a stored session, and the small
interface the namespace and membership use.

:class:`chatsvc.chat.recovery_pos.PositionRecovery` stands behind :class:`SessionRecovery`
in every mode (docs/delivery.md, "Connection state recovery by position": every delivery
of a room record carries its stream position, cluster mode's being the events topic's
offsets); :class:`NoRecovery` is the null object when recovery is off.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from chatsvc.chat.wire import EVENT_OF_KIND
from chatsvc.errors import ChatError
from chatsvc.model.messages import Message, SessionRecord
from chatsvc.store.base import MessageStore

log = logging.getLogger(__name__)

#: A pid is 24 random bytes, URL-safe base64 (32 characters).
PID_BYTES = 24
MAX_PID_LENGTH = 64
#: A room-qualified position, the position path's offset: ``"<epoch>:<n>:<room>"`` (the
#: record's ``pos`` then its room: positions of different rooms are not comparable).
OFFSET_PATTERN = re.compile(r"([0-9a-z]{1,32}):([0-9]{1,18}):([A-Za-z0-9_.:\-]{1,64})")
#: Socket.IO disconnect reasons after which a session is kept (python-engineio's names).
DROPPED = frozenset({"transport close", "transport error", "ping timeout"})
#: The events a recovered socket gets again: messages and every room-stream event.
RECOVERABLE_EVENTS = frozenset({"message", *EVENT_OF_KIND.values()})

Send = Callable[[str, dict[str, Any], str], Awaitable[None]]


def new_pid() -> str:
    """An unguessable private session id."""
    return secrets.token_urlsafe(PID_BYTES)


@dataclass(frozen=True)
class Request:
    """What a CONNECT's auth data asks for."""

    opted_in: bool
    pid: str | None
    offset: str | None


def requested(auth: Any) -> Request:
    """Parse ``{recover?, pid?, offset?}`` from CONNECT data; anything malformed is ignored.

    An offset is a room-qualified position (:func:`parse_offset`); anything else, such as
    the message ids of the journal path this replaced, is ignored: as if the client had
    received none of its session's tail."""
    if not isinstance(auth, dict):
        return Request(False, None, None)
    pid = auth.get("pid")
    pid = pid if isinstance(pid, str) and 0 < len(pid) <= MAX_PID_LENGTH else None
    offset = auth.get("offset")
    if parse_offset(offset) is None:
        offset = None
    return Request(auth.get("recover") is True or pid is not None, pid, offset)


def room_offset(room: str, wire_position: str) -> str:
    """The offset of a record at ``wire_position`` (``"<epoch>:<n>"``) in ``room``."""
    return f"{wire_position}:{room}"


def parse_offset(value: object) -> tuple[str, int, str] | None:
    """``(epoch, n, room)`` from a room-qualified position, or None if ``value`` is not one."""
    match = OFFSET_PATTERN.fullmatch(value) if isinstance(value, str) else None
    return (match[1], int(match[2]), match[3]) if match else None


async def claim(store: MessageStore, pid: str, user_id: str) -> SessionRecord | None:
    """Take session ``pid`` for ``user_id`` out of the store (one use), or None: unknown,
    expired, another user's, claimed by a concurrent connect, or the store failed."""
    try:
        record = await store.get_session(pid)
        if record is None or record.user_id != user_id:
            return None
        if not await store.delete_session(pid):
            return None  # claimed by a concurrent connect
    except ChatError as exc:
        log.warning("session lookup failed (%s); connecting afresh", exc.code)
        return None
    return record


async def member_rooms(store: MessageStore, user_id: str, limit: int) -> dict[str, int]:
    """The user's private and direct rooms (room -> when it became a member)."""
    memberships = await store.rooms_of(user_id, limit=limit)
    return {m.room: m.added_at_ms for m in memberships}


class SessionRecovery(Protocol):
    """What the chat namespace and :class:`chatsvc.chat.membership.Membership` ask of
    recovery: either path, or :class:`NoRecovery` when it is off."""

    @property
    def enabled(self) -> bool: ...

    def start(self, sid: str, user_id: str) -> object: ...

    def resume(self, sid: str) -> Collection[str] | None:
        """At connect: the rooms of the session restored under ``sid`` (entered later by
        :meth:`restore`), its live session installed; None if ``sid`` is not recovering."""

    def pid_for(self, sid: str) -> str | None: ...

    def joined(self, sid: str, room: str) -> None: ...

    async def subscribed(self, sid: str, room: str) -> None:
        """Right after :meth:`joined`, the socket already receiving the room: where it
        starts in the room's stream may be read here."""

    def left(self, sid: str, room: str) -> None: ...

    def posted(self, sid: str, message: Message) -> None: ...

    def local_sid_of(self, pid: str, user_id: str) -> str | None: ...

    def mark_resumable(self, sid: str) -> None: ...

    async def end(self, sid: str, reason: Any) -> None: ...

    def forget(self, sid: str) -> None: ...

    async def prepare(
        self, request: Request, user_id: str, may_join: Callable[[str], bool]
    ) -> str | None: ...

    def abandon(self, sid: str) -> None: ...

    async def restore(self, sid: str, send: Send, enter: Callable[[str], Awaitable[None]]) -> int | None: ...


class NoRecovery:
    """Recovery turned off (``CHATSVC_RECOVERY_WINDOW=0``): no socket has a session, none is
    kept or restored, so callers need not ask whether recovery exists."""

    @property
    def enabled(self) -> bool:
        return False

    def start(self, sid: str, user_id: str) -> None:
        return None

    def resume(self, sid: str) -> Collection[str] | None:
        return None

    def pid_for(self, sid: str) -> str | None:
        return None

    def joined(self, sid: str, room: str) -> None:
        return None

    async def subscribed(self, sid: str, room: str) -> None:
        return None

    def left(self, sid: str, room: str) -> None:
        return None

    def posted(self, sid: str, message: Message) -> None:
        return None

    def local_sid_of(self, pid: str, user_id: str) -> str | None:
        return None

    def mark_resumable(self, sid: str) -> None:
        return None

    async def end(self, sid: str, reason: Any) -> None:
        return None

    def forget(self, sid: str) -> None:
        return None

    async def prepare(self, request: Request, user_id: str, may_join: Callable[[str], bool]) -> str | None:
        return None

    def abandon(self, sid: str) -> None:
        return None

    async def restore(self, sid: str, send: Send, enter: Callable[[str], Awaitable[None]]) -> int | None:
        return None
