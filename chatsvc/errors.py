"""The project's own error tree.

Adapters (Kafka, CQL, JWT, SQLite) translate foreign exceptions into these; each protocol
(Socket.IO acks and connect errors, gRPC status, HTTP) maps them to its wire form in one
place. ``code`` is the stable, machine-readable string clients see.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ChatError(Exception):
    """Base of every error a client may be told about."""

    code: ClassVar[str] = "internal"
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message

    def to_wire(self) -> dict[str, Any]:
        """``{"code", "message"}``, the shape every protocol carries."""
        return {"code": self.code, "message": self.message}


class InvalidPayload(ChatError):
    code = "invalid_payload"
    default_message = "invalid payload"


class TooLarge(ChatError):
    code = "too_large"
    default_message = "payload too large"


class RateLimited(ChatError):
    code = "rate_limited"
    default_message = "too many requests; slow down"


class TooManyRooms(ChatError):
    code = "too_many_rooms"
    default_message = "too many rooms joined on this connection"


class TooManyConnections(ChatError):
    code = "too_many_connections"
    default_message = "too many connections"


class NotInRoom(ChatError):
    code = "not_in_room"
    default_message = "join the room first"


class SlowConsumer(ChatError):
    code = "slow_consumer"
    default_message = "too much unread: the connection did not take what was sent to it"


class Forbidden(ChatError):
    code = "forbidden"
    default_message = "not allowed"


class NotFound(ChatError):
    code = "not_found"
    default_message = "not found"


# -- conversations (issue 24): bounds and membership rules -------------------------------


class RoomFull(ChatError):
    code = "room_full"
    default_message = "the room has as many members as it may have"


class UserRoomLimit(ChatError):
    code = "user_room_limit"
    default_message = "the user is in as many rooms as a user may be"


class DmRateLimited(ChatError):
    code = "dm_rate_limited"
    default_message = "too many direct messages opened; wait a minute"


class BlockLimit(ChatError):
    code = "block_limit"
    default_message = "too many users blocked"


class ReactionLimit(ChatError):
    code = "reaction_limit"
    default_message = "the message has as many different reactions as it may have"


class PinLimit(ChatError):
    code = "pin_limit"
    default_message = "the room has as many pins as it may have"


class Spam(ChatError):
    """A message a spam filter refused (issue 25); ``rule`` names the filter, stable on the wire."""

    code = "spam"
    default_message = "refused as spam"

    def __init__(self, rule: str, message: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule

    def to_wire(self) -> dict[str, Any]:
        """``{"code": "spam", "message", "rule"}``."""
        return {**super().to_wire(), "rule": self.rule}


class SlowMode(ChatError):
    """A post within the room's slow mode interval (issue 25); says when to retry."""

    code = "slow_mode"
    default_message = "the room is in slow mode"

    def __init__(self, retry_after_ms: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms

    def to_wire(self) -> dict[str, Any]:
        """``{code, message, retry_after_ms}``."""
        return {**super().to_wire(), "retry_after_ms": self.retry_after_ms}


class LastOwner(ChatError):
    code = "last_owner"
    default_message = "the last owner must hand over ownership first"


class InvalidMessageId(ChatError):
    """A store was handed something that is not a message id. A store-level error: the
    chat layer, which took the id from a client, translates it into ``InvalidPayload``."""

    code = "internal"
    default_message = "not a message id"


class Unavailable(ChatError):
    """A backend the request needs is down; the request may be retried."""

    code = "unavailable"
    default_message = "service unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"
    default_message = "message store unavailable; retry later"


class BusUnavailable(Unavailable):
    code = "bus_unavailable"
    default_message = "fan-out bus unavailable"


class KeysUnavailable(Unavailable):
    code = "keys_unavailable"
    default_message = "no JWT signing keys from the identity provider yet"


class ShuttingDown(Unavailable):
    code = "shutting_down"
    default_message = "server is shutting down; reconnect"


class Internal(ChatError):
    code = "internal"
    default_message = "internal error"


class AuthError(ChatError):
    """Refusal at connect (or of an admin call) because of the credentials."""

    code = "token_invalid"
    default_message = "invalid token"


class TokenMissing(AuthError):
    code = "token_missing"
    default_message = "no token: send auth {token}, an Authorization: Bearer header or ?token="


class TokenInvalid(AuthError):
    code = "token_invalid"
    default_message = "invalid token"


class TokenExpired(AuthError):
    code = "token_expired"
    default_message = "token expired"


class AuthForbidden(AuthError):
    code = "forbidden"
    default_message = "not allowed"


class StartupError(Exception):
    """A backend could not be reached at startup; the message is the one line to print."""
