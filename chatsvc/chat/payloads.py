"""Validation of client event payloads.

Payloads arrive as JSON objects or as JSON text (Hoppscotch sends the editor text as a
string). Everything here raises ``InvalidPayload``/``TooLarge`` with a message naming the
field, never anything else: JSON text nested too deep for the parser (RecursionError) and
strings holding a lone surrogate (``"\\ud800"`` is valid JSON, but no store, log or
client can encode it as UTF-8) are invalid payloads too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from chatsvc.chat.wire import parse_position
from chatsvc.errors import InvalidPayload, TooLarge
from chatsvc.model.ids import is_message_id

ROOM_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
CLIENT_MSG_ID_MAX = 64


def as_object(data: Any, max_bytes: int) -> dict[str, Any]:
    """A dict from a dict or from JSON text; reject anything else."""
    if isinstance(data, str):
        if len(data) > max_bytes or len(_utf8(data, "payload")) > max_bytes:
            raise TooLarge(f"payload larger than {max_bytes} bytes")
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidPayload("payload is not valid JSON (or nests too deep)") from None
    if not isinstance(data, dict):
        raise InvalidPayload("payload must be a JSON object")
    return data


def _utf8(value: str, field: str) -> bytes:
    """``value`` as UTF-8; ``InvalidPayload`` naming ``field`` if it holds a lone surrogate."""
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise InvalidPayload(f"'{field}' is not valid Unicode (a lone surrogate)") from None


def room(payload: dict[str, Any]) -> str:
    """The ``room`` field: 1..64 of letters, digits and ``_ - . :``."""
    value = payload.get("room")
    if not isinstance(value, str) or not ROOM_PATTERN.fullmatch(value):
        raise InvalidPayload("'room' must be 1..64 characters of letters, digits, _ - . :")
    return value


def message_id(payload: dict[str, Any], field: str, *, required: bool) -> str | None:
    """A message id field (``id``, ``since``, ``before``, ``message_id``)."""
    value = payload.get(field)
    if value is None and not required:
        return None
    if not is_message_id(value):
        raise InvalidPayload(f"'{field}' must be a message id")
    return str(value)


def since(payload: dict[str, Any]) -> str | tuple[str, int] | None:
    """``join``'s optional ``since``: a stream position (``"<epoch>:<n>"``, as ``pos`` in
    messages) as ``(epoch, n)``, or a message id (best effort, as before positions)."""
    value = payload.get("since")
    if value is None:
        return None
    if isinstance(value, str):
        if is_message_id(value):
            return value
        found = parse_position(value)
        if found is not None:
            return found
    raise InvalidPayload("'since' must be a stream position (a 'pos' the server sent) or a message id")


def text(payload: dict[str, Any], max_bytes: int) -> str:
    """The ``text`` field: a non-blank string of at most ``max_bytes`` UTF-8 bytes."""
    value = payload.get("text")
    if not isinstance(value, str) or not value.strip():
        raise InvalidPayload("'text' must be a non-empty string")
    if value.isascii():  # one byte per character and no lone surrogate: nothing to encode
        if len(value) > max_bytes:
            raise TooLarge(f"'text' is larger than {max_bytes} bytes")
        return value
    if len(value) > max_bytes or len(_utf8(value, "text")) > max_bytes:
        raise TooLarge(f"'text' is larger than {max_bytes} bytes")
    return value


def client_msg_id(payload: dict[str, Any]) -> str | None:
    """Optional idempotency key chosen by the client."""
    value = payload.get("client_msg_id")
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= CLIENT_MSG_ID_MAX:
        raise InvalidPayload(f"'client_msg_id' must be a string of 1..{CLIENT_MSG_ID_MAX} characters")
    _utf8(value, "client_msg_id")
    return value


def page_limit(payload: dict[str, Any], default: int, maximum: int) -> int:
    """``limit`` in 1..maximum."""
    value = payload.get("limit", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidPayload(f"'limit' must be an integer in 1..{maximum}")
    return value


def flag(payload: dict[str, Any], field: str) -> bool:
    """A required boolean."""
    value = payload.get(field)
    if not isinstance(value, bool):
        raise InvalidPayload(f"'{field}' must be true or false")
    return value
