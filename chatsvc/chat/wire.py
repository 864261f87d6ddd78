"""The wire form of the domain records: the JSON shapes Socket.IO clients receive.

Kept in the chat layer, above the model and the stores, which know nothing of clients.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chatsvc.model.messages import Message

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


def message_wire(message: Message) -> dict[str, Any]:
    """The JSON shape clients receive as the ``message`` event and in history."""
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
    return wire
