"""The spam-flag part of :class:`~chatsvc.store.memory.MemoryStore` (issue 25)."""

from __future__ import annotations

from collections import OrderedDict

from chatsvc.model.messages import Flag

#: Flags a memory store holds (the oldest go first): it is for tests and development.
MAX_FLAGS = 10_000


class MemoryFlags:
    """:class:`~chatsvc.store.base.FlagStore` in an ordered dict; mixed into MemoryStore."""

    def __init__(self) -> None:
        super().__init__()
        #: flag id -> flag, in insertion order (ids are time-sortable).
        self._flags: OrderedDict[str, Flag] = OrderedDict()

    def _check(self) -> None:
        raise NotImplementedError  # MemoryStore's

    async def add_flag(self, flag: Flag) -> None:
        """Keep it, dropping the oldest past :data:`MAX_FLAGS`."""
        self._check()
        self._flags.setdefault(flag.id, flag)
        while len(self._flags) > MAX_FLAGS:
            self._flags.popitem(last=False)

    async def list_flags(self, room: str | None, *, before: str | None, limit: int) -> list[Flag]:
        """Newest first (a scan: the memory store is small)."""
        self._check()
        found = sorted(
            (
                f
                for f in self._flags.values()
                if (room is None or f.room == room) and (before is None or f.id < before)
            ),
            key=lambda f: f.id,
            reverse=True,
        )
        return found[:limit]
