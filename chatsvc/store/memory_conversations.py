"""The conversation part of :class:`~chatsvc.store.memory.MemoryStore` (issue 24)."""

from __future__ import annotations

from chatsvc.model.rooms import Conversation, Member, Notification


class MemoryConversations:
    """:class:`~chatsvc.store.base.ConversationStore` in dicts; mixed into MemoryStore."""

    def __init__(self) -> None:
        self._conversations: dict[str, Conversation] = {}
        self._dms: dict[str, str] = {}
        self._members: dict[str, dict[str, Member]] = {}
        self._rooms_of: dict[str, dict[str, Member]] = {}
        self._joined: dict[str, set[str]] = {}
        self._blocks: dict[str, set[str]] = {}
        self._outbox: list[Notification] = []
        self._notified: set[tuple[str, str]] = set()
        #: NotifiedMessages' marks, (room, message id).
        self._notifications_done: set[tuple[str, str]] = set()

    def _check(self) -> None:
        raise NotImplementedError  # MemoryStore's

    async def create_conversation(self, conversation: Conversation, members: list[Member]) -> None:
        """Record the room and its first members."""
        self._check()
        self._conversations[conversation.name] = conversation
        for member in members:
            await self.put_member(member)

    async def get_conversation(self, room: str) -> Conversation | None:
        """The record, or None."""
        self._check()
        return self._conversations.get(room)

    async def find_dm(self, pair: str) -> str | None:
        """The pair's room, if claimed."""
        self._check()
        return self._dms.get(pair)

    async def claim_dm(self, pair: str, room: str) -> str:
        """First claim wins (one event loop: no race)."""
        self._check()
        return self._dms.setdefault(pair, room)

    async def put_member(self, member: Member) -> None:
        """Add or change a membership."""
        self._check()
        self._members.setdefault(member.room, {})[member.user_id] = member
        self._rooms_of.setdefault(member.user_id, {})[member.room] = member

    async def delete_member(self, room: str, user_id: str) -> None:
        """Remove a membership if there is one."""
        self._check()
        for outer, inner in ((self._members, (room, user_id)), (self._rooms_of, (user_id, room))):
            entries = outer.get(inner[0])
            if entries is not None:
                entries.pop(inner[1], None)
                if not entries:
                    del outer[inner[0]]

    async def get_member(self, room: str, user_id: str) -> Member | None:
        """One membership, or None."""
        self._check()
        return self._members.get(room, {}).get(user_id)

    async def list_members(self, room: str, *, after: str | None, limit: int) -> list[Member]:
        """Members in user id order."""
        self._check()
        members = sorted(self._members.get(room, {}).values(), key=lambda m: m.user_id)
        return [m for m in members if after is None or m.user_id > after][:limit]

    async def count_members(self, room: str) -> int:
        """How many members."""
        self._check()
        return len(self._members.get(room, {}))

    async def rooms_of(self, user_id: str, *, limit: int) -> list[Member]:
        """A user's memberships by room name."""
        self._check()
        return sorted(self._rooms_of.get(user_id, {}).values(), key=lambda m: m.room)[:limit]

    async def put_joined(self, user_id: str, room: str, at_ms: int) -> None:
        """Remember a public join."""
        self._check()
        self._joined.setdefault(user_id, set()).add(room)

    async def delete_joined(self, user_id: str, room: str) -> None:
        """Forget a public join."""
        self._check()
        self._joined.get(user_id, set()).discard(room)

    async def joined_rooms(self, user_id: str, *, limit: int) -> list[str]:
        """Public rooms of a user by name."""
        self._check()
        return sorted(self._joined.get(user_id, set()))[:limit]

    async def put_block(self, blocker: str, blocked: str, at_ms: int) -> None:
        """Record a block."""
        self._check()
        self._blocks.setdefault(blocker, set()).add(blocked)

    async def delete_block(self, blocker: str, blocked: str) -> None:
        """Lift a block."""
        self._check()
        self._blocks.get(blocker, set()).discard(blocked)

    async def blocks_of(self, blocker: str, *, limit: int) -> list[str]:
        """Whom a user blocks, by id."""
        self._check()
        return sorted(self._blocks.get(blocker, set()))[:limit]

    async def add_notification(self, notification: Notification) -> bool:
        """Append unless seen (positions are list indexes + 1; nothing survives a restart)."""
        self._check()
        key = (notification.user_id, notification.message_id)
        if key in self._notified:
            return False
        self._notified.add(key)
        self._outbox.append(notification)
        return True

    async def notifications_done(self, room: str, message_id: str) -> bool:
        """NotifiedMessages: whether marked."""
        self._check()
        return (room, message_id) in self._notifications_done

    async def mark_notifications_done(self, room: str, message_id: str) -> None:
        """NotifiedMessages: mark."""
        self._check()
        self._notifications_done.add((room, message_id))

    async def notifications_after(self, position: int, limit: int) -> list[tuple[int, Notification]]:
        """By position."""
        self._check()
        start = max(0, position)
        return [(start + i + 1, n) for i, n in enumerate(self._outbox[start : start + max(0, limit)])]

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        """Whether a block exists."""
        self._check()
        return blocked in self._blocks.get(blocker, set())
