"""The store interface every history backend implements, and the records it holds.

Designed for a partitioned store: messages live in (room, time bucket) partitions and are
clustered by their time-sortable id, newest first; cursors are ids; writes are idempotent
on ``(room, user_id, client_msg_id)``. Implementations raise only ``chatsvc.errors``
(``StoreUnavailable`` for anything the backend throws).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

#: Width of a time bucket. Ten days keeps a busy room's partition well under 100 MB.
BUCKET_MS = 10 * 24 * 3600 * 1000


def bucket_of(ms: int) -> int:
    """The bucket number holding a message created at ``ms``."""
    return ms // BUCKET_MS


#: The last second :func:`iso_ms` formatted and its text: messages come in bursts of the
#: same second, and ``strftime`` is most of the cost of ``Message.to_wire``.
_last_second: tuple[int, str] = (-1, "")


def iso_ms(ms: int) -> str:
    """Unix milliseconds as an RFC 3339 UTC string with milliseconds."""
    global _last_second  # noqa: PLW0603 - a one-entry cache of a pure function
    second, millis = divmod(ms, 1000)
    cached = _last_second
    if cached[0] == second:
        prefix = cached[1]
    else:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = (second, prefix)
    return f"{prefix}{millis:03d}Z"


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message as stored and delivered."""

    id: str
    room: str
    user_id: str
    user_name: str
    text: str
    created_at_ms: int
    client_msg_id: str | None = None
    edited_at_ms: int | None = None
    deleted: bool = False
    kind: str = "user"

    def edited(self, text: str, at_ms: int) -> Message:
        return replace(self, text=text, edited_at_ms=at_ms)

    def to_wire(self) -> dict[str, Any]:
        """The JSON shape clients receive as the ``message`` event and in history."""
        wire: dict[str, Any] = {
            "id": self.id,
            "room": self.room,
            "user": {"id": self.user_id, "name": self.user_name},
            "text": self.text,
            "client_msg_id": self.client_msg_id,
            "created_at": iso_ms(self.created_at_ms),
        }
        if self.kind != "user":
            wire["kind"] = self.kind
        if self.edited_at_ms is not None:
            wire["edited_at"] = iso_ms(self.edited_at_ms)
        if self.deleted:
            wire["deleted"] = True
        return wire


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Newest-first messages and the cursor for the next (older) page, if any."""

    messages: list[Message]
    next_before: str | None


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A room the store knows of."""

    name: str
    created_at_ms: int
    last_message_id: str | None


@dataclass(frozen=True, slots=True)
class Moderation:
    """A ban (``room`` is ``""``: the whole service) or a mute in one room."""

    kind: str  # "ban" or "mute"
    room: str
    user_id: str
    until_ms: int | None  # None: until lifted
    reason: str = ""

    def active(self, now_ms: int) -> bool:
        """Whether the record still applies at ``now_ms``."""
        return self.until_ms is None or self.until_ms > now_ms


#: Room events (edits, deletes) are kept this long: replays only reach back
#: ``CHATSVC_RECOVERY_WINDOW`` (at most a day) from a session's last delivery.
EVENT_RETENTION_SECONDS = 2 * 24 * 3600


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """A change to a stored message (``kind`` ``edited`` or ``deleted``), as delivered live.

    ``id`` is minted like message ids (time-sortable), so replays merge messages and events
    in one id order; ``payload`` is the event's wire form (with ``event_id`` = ``id``).
    """

    id: str
    room: str
    kind: str
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A dropped socket's recoverable session: opaque ``data`` (chatsvc.chat.recovery owns
    the format) under an unguessable ``pid``, for ``user_id``, until ``expires_at_ms``."""

    pid: str
    user_id: str
    data: str
    expires_at_ms: int


class MessageStore(Protocol):
    """What the chat service needs from a history backend."""

    async def open(self) -> None:
        """Connect (and create the schema where that is safe); raise ``StoreUnavailable``."""

    async def aclose(self) -> None:
        """Release connections; idempotent."""

    async def migrate(self) -> None:
        """Create or upgrade the schema; safe to run repeatedly."""

    async def ping(self) -> None:
        """Cheap liveness check for readiness; raise ``StoreUnavailable`` when down."""

    async def append(self, message: Message) -> tuple[Message, bool]:
        """Store ``message``. If ``(room, user_id, client_msg_id)`` was stored before, return
        that original and ``False``; otherwise the stored message and ``True``."""

    async def history(self, room: str, *, before: str | None, limit: int) -> HistoryPage:
        """Up to ``limit`` messages older than ``before`` (or the newest), newest first."""

    async def after(self, room: str, after_id: str, limit: int) -> list[Message]:
        """Up to ``limit`` messages newer than ``after_id``, oldest first (catch-up)."""

    async def get(self, room: str, message_id: str) -> Message | None:
        """One message, or None."""

    async def edit(self, room: str, message_id: str, text: str, at_ms: int) -> Message:
        """Replace the text of a message; raise ``NotFound`` if it does not exist."""

    async def delete(self, room: str, message_id: str, at_ms: int) -> Message:
        """Mark a message deleted (text cleared); raise ``NotFound`` if it does not exist."""

    async def mark_read(self, room: str, user_id: str, message_id: str) -> None:
        """Remember the newest message ``user_id`` has read in ``room`` (never moves back)."""

    async def unread_count(self, room: str, user_id: str, cap: int) -> int:
        """Messages by others after the user's read marker, counted up to ``cap``."""

    async def list_rooms(self, *, after: str | None, limit: int) -> list[RoomInfo]:
        """Known rooms in name order, starting after ``after``."""

    async def get_room(self, room: str) -> RoomInfo | None:
        """One room, or None if nothing was ever posted there."""

    async def set_moderation(self, record: Moderation) -> None:
        """Create or replace the ban/mute for ``(kind, room, user_id)``."""

    async def clear_moderation(self, kind: str, room: str, user_id: str) -> None:
        """Lift a ban/mute; no error if there is none."""

    async def get_moderation(self, kind: str, room: str, user_id: str) -> Moderation | None:
        """The record for ``(kind, room, user_id)`` if any (expired ones may be returned)."""

    async def append_event(self, event: RoomEvent) -> None:
        """Record an edit/delete event (kept :data:`EVENT_RETENTION_SECONDS`)."""

    async def events_after(self, room: str, after_id: str, limit: int) -> list[RoomEvent]:
        """Up to ``limit`` events of ``room`` with ids above ``after_id``, oldest first."""

    async def save_session(self, record: SessionRecord) -> None:
        """Store (or replace) a session until ``record.expires_at_ms``."""

    async def get_session(self, pid: str) -> SessionRecord | None:
        """The unexpired session under ``pid``, or None."""

    async def delete_session(self, pid: str) -> bool:
        """Remove the session; True only for the one call that removed it (one use)."""
