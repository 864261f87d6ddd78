"""The authenticated user behind a connection."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    """Claims we act on, taken from a verified token."""

    user_id: str
    name: str
    roles: frozenset[str] = frozenset()
    room_patterns: tuple[str, ...] | None = None
    expires_at: float | None = None
    #: The token's ``iat`` (Unix seconds), if it has one (the spam filters' token-age rule).
    issued_at: float | None = None

    @property
    def is_admin(self) -> bool:
        """Holders of the ``admin`` role may moderate and call the admin API."""
        return "admin" in self.roles

    def may_join(self, room: str) -> bool:
        """A ``rooms`` claim restricts joins to exact names or ``prefix*`` patterns."""
        if self.room_patterns is None:
            return True
        for pattern in self.room_patterns:
            if pattern.endswith("*"):
                if room.startswith(pattern[:-1]):
                    return True
            elif room == pattern:
                return True
        return False

    def public(self) -> dict[str, str]:
        """What other room members see of this user."""
        return {"id": self.user_id, "name": self.name}
