"""The reaction part of :class:`~chatsvc.store.memory.MemoryStore` (issue 25)."""

from __future__ import annotations


class MemoryReactions:
    """:class:`~chatsvc.store.base.ReactionStore` in a set; mixed into MemoryStore."""

    def __init__(self) -> None:
        super().__init__()
        #: (room, message id) -> {(emoji, user id)}.
        self._reactions: dict[tuple[str, str], set[tuple[str, str]]] = {}
        #: (user id, room) -> message ids mentioning the user there.
        self._mentions: dict[tuple[str, str], set[str]] = {}
        #: room -> {message id: (pinned by, at ms)}.
        self._pins: dict[str, dict[str, tuple[str, int]]] = {}
        #: MemoryStore's read markers, (room, user id) -> message id.
        self._read: dict[tuple[str, str], str]

    def _check(self) -> None:
        raise NotImplementedError  # MemoryStore's

    async def add_mentions(self, room: str, message_id: str, user_ids: tuple[str, ...]) -> None:
        """Remember each."""
        self._check()
        for user_id in user_ids:
            self._mentions.setdefault((user_id, room), set()).add(message_id)

    async def unread_mentions(self, room: str, user_id: str, cap: int) -> int:
        """After the read marker, capped."""
        self._check()
        marker = self._read.get((room, user_id), "")
        return min(cap, sum(1 for m in self._mentions.get((user_id, room), set()) if m > marker))

    async def put_pin(self, room: str, message_id: str, by: str, at_ms: int) -> bool:
        """Pin unless pinned."""
        self._check()
        pins = self._pins.setdefault(room, {})
        if message_id in pins:
            return False
        pins[message_id] = (by, at_ms)
        return True

    async def delete_pin(self, room: str, message_id: str) -> bool:
        """Unpin if pinned."""
        self._check()
        return self._pins.get(room, {}).pop(message_id, None) is not None

    async def list_pins(self, room: str, limit: int) -> list[tuple[str, str, int]]:
        """Newest message first."""
        self._check()
        pins = self._pins.get(room, {})
        return [(m, *pins[m]) for m in sorted(pins, reverse=True)[:limit]]

    async def put_reaction(self, room: str, message_id: str, emoji: str, user_id: str) -> bool:
        """Add unless present."""
        self._check()
        rows = self._reactions.setdefault((room, message_id), set())
        if (emoji, user_id) in rows:
            return False
        rows.add((emoji, user_id))
        return True

    async def delete_reaction(self, room: str, message_id: str, emoji: str, user_id: str) -> bool:
        """Remove if present."""
        self._check()
        rows = self._reactions.get((room, message_id), set())
        if (emoji, user_id) not in rows:
            return False
        rows.discard((emoji, user_id))
        return True

    async def reaction_counts(self, room: str, message_ids: list[str]) -> dict[str, dict[str, int]]:
        """Counted from the rows."""
        self._check()
        found: dict[str, dict[str, int]] = {}
        for message_id in message_ids:
            for emoji, _ in self._reactions.get((room, message_id), set()):
                counts = found.setdefault(message_id, {})
                counts[emoji] = counts.get(emoji, 0) + 1
        return found

    async def reactions_of(self, room: str, message_ids: list[str], user_id: str) -> dict[str, list[str]]:
        """The user's emoji per message."""
        self._check()
        found = {}
        for message_id in message_ids:
            mine = sorted(e for e, u in self._reactions.get((room, message_id), set()) if u == user_id)
            if mine:
                found[message_id] = mine
        return found
