"""Conversations: room kinds, their records and their members' roles (issue 24).

A room is ``public`` unless a :class:`Conversation` record says otherwise: every room that
existed before conversations is public without any data migration. Private and direct
rooms have server-generated names under reserved prefixes (:func:`kind_of_name`), so
telling whether a room needs an access check costs no store read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

PUBLIC: Final = "public"
PRIVATE: Final = "private"
DIRECT: Final = "direct"
KINDS: Final = (PUBLIC, PRIVATE, DIRECT)

OWNER: Final = "owner"
MODERATOR: Final = "moderator"
MEMBER: Final = "member"
ROLES: Final = (OWNER, MODERATOR, MEMBER)

#: Name prefixes of server-generated rooms. A name with one of these prefixes is never a
#: public room: without a record it is a room nobody is a member of.
PRIVATE_PREFIX: Final = "priv:"
DIRECT_PREFIX: Final = "dm:"


def kind_of_name(room: str) -> str:
    """The kind a room name implies: ``private``/``direct`` by prefix, else ``public``."""
    if room.startswith(PRIVATE_PREFIX):
        return PRIVATE
    if room.startswith(DIRECT_PREFIX):
        return DIRECT
    return PUBLIC


def members_only(room: str) -> bool:
    """Whether only members may use ``room`` (private and direct rooms)."""
    return room.startswith(PRIVATE_PREFIX) or room.startswith(DIRECT_PREFIX)


def dm_pair(user_a: str, user_b: str) -> str:
    """The key of a pair of users, the same whoever of the two asks (JSON: unambiguous
    for any two ids)."""
    return json.dumps(sorted((user_a, user_b)), separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Conversation:
    """A private or direct room's record."""

    name: str
    kind: str
    title: str
    created_by: str
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class Member:
    """One user's membership of one room, with its role."""

    room: str
    user_id: str
    role: str
    added_at_ms: int


@dataclass(frozen=True, slots=True)
class Notification:
    """A message for a member with no live socket: what a push service needs to tell it."""

    user_id: str
    room: str
    message_id: str
    sender: str
    preview: str
    kind: str
    created_at_ms: int

    @property
    def dedup_id(self) -> str:
        """``user:message_id``: one notification per pair, the Kafka record's dedup key."""
        return f"{self.user_id}:{self.message_id}"
