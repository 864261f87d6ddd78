"""The wire form of the domain records: the JSON shapes Socket.IO clients receive.

Kept in the chat layer, above the model and the stores, which know nothing of clients.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from chatsvc.model.messages import Message, RoomEvent

#: A stream position on the wire: ``"<epoch>:<n>"`` (docs/delivery.md). Opaque to clients.
POSITION_PATTERN = re.compile(r"([0-9a-z]{1,32}):([0-9]{1,18})")
#: The live event each kind of room event is delivered as.
#: ``thread``: a parent's reply count changed (issue 25).
EVENT_OF_KIND = {
    "edited": "message_edited",
    "deleted": "message_deleted",
    "thread": "message_updated",
    "reaction": "reaction",
    "pinned": "pinned",
    "unpinned": "unpinned",
    "room_mode": "room_mode",
}

#: The last second :func:`iso_ms` formatted and its text: messages come in bursts of the
#: same second, and ``strftime`` is most of the cost of :func:`message_wire`.
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


def position(epoch: str, pos: int) -> str:
    """A stream position as clients see it."""
    return f"{epoch}:{pos}"


def parse_position(value: str) -> tuple[str, int] | None:
    """``(epoch, n)`` from a wire position, or None if ``value`` is not one."""
    match = POSITION_PATTERN.fullmatch(value)
    return (match[1], int(match[2])) if match else None


def event_wire(event: RoomEvent, epoch: str | None) -> dict[str, Any]:
    """A stored edit/delete event as a catch-up answer lists it: its live payload, the live
    event's name (``event``) and its position."""
    wire = {**event.payload, "event": EVENT_OF_KIND.get(event.kind, event.kind)}
    if epoch is not None and event.pos is not None:
        wire["pos"] = position(epoch, event.pos)
    return wire


def message_wire(message: Message, epoch: str | None = None) -> dict[str, Any]:
    """The JSON shape clients receive as the ``message`` event and in history; with the
    store's ``epoch``, it carries the message's stream position as ``pos``."""
    wire: dict[str, Any] = {
        "id": message.id,
        "room": message.room,
        "user": {"id": message.user_id, "name": message.user_name},
        "text": message.text,
        "client_msg_id": message.client_msg_id,
        "created_at": iso_ms(message.created_at_ms),
    }
    if message.kind != "user":
        wire["kind"] = message.kind
    if message.edited_at_ms is not None:
        wire["edited_at"] = iso_ms(message.edited_at_ms)
    if message.deleted:
        wire["deleted"] = True
    if message.reply_to is not None:
        ref = message.reply_to
        wire["reply_to"] = {
            "id": ref.id,
            "user": {"id": ref.user_id, "name": ref.user_name},
            "preview": ref.preview,
        }
        if ref.deleted:
            wire["reply_to"]["deleted"] = True
    if message.mentions:
        wire["mentions"] = list(message.mentions)
    # A deleted message's text is gone, and so is what was read from it.
    if message.tickers and not message.deleted:
        wire["tickers"] = list(message.tickers)
    if message.sentiment is not None and not message.deleted:
        wire["sentiment"] = message.sentiment
    if message.reactions is not None:
        wire["reactions"] = message.reactions
        wire["own_reactions"] = message.own_reactions or []
    if message.thread is not None:
        wire["reply_count"] = message.thread.count
        wire["last_reply_at"] = iso_ms(message.thread.last_reply_at_ms)
    if epoch is not None and message.pos is not None:
        wire["pos"] = position(epoch, message.pos)
    return wire
