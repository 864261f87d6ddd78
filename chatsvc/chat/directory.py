"""``my_rooms`` (issue 24): a user's rooms, newest activity first, with unread counts and
the last message.

A user's rooms are its private and direct rooms (memberships, by user in the store) and
the public rooms it joined and did not remove itself from (recorded at ``join``, at most
``CHATSVC_MAX_ROOMS_PER_USER``). Each call reads them all (bounded by that setting), orders
them by their newest message, and reads unread count and preview for one page only.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatsvc.chat.blocks import Blocks
from chatsvc.chat.wire import message_wire
from chatsvc.errors import ChatError
from chatsvc.model.ids import lowest_id_at
from chatsvc.model.rooms import DIRECT, PUBLIC, kind_of_name
from chatsvc.settings import Limits
from chatsvc.store.base import MessageStore

log = logging.getLogger(__name__)

#: Public joins this replica wrote recently (skips rewriting one on every join).
RECORDED_CACHE = 100_000
#: Messages looked at for a preview (the newest not hidden by a block).
PREVIEW_SCAN = 20
#: Separates the activity key and the room in a ``my_rooms`` cursor (in neither).
CURSOR_SEP = "/"


@dataclass(frozen=True, slots=True)
class _Entry:
    room: str
    kind: str
    role: str | None
    activity: str  # the newest message id, or the id floor of when the user got the room

    @property
    def cursor(self) -> str:
        return f"{self.activity}{CURSOR_SEP}{self.room}"


class Directory:
    """The rooms of a user, for ``my_rooms``; records public joins."""

    def __init__(
        self,
        store: MessageStore,
        blocks: Blocks,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._blocks = blocks
        self._limits = limits
        self._clock = clock
        self._recorded: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def joined(self, user_id: str, room: str) -> None:
        """``user_id`` joined public ``room``: list it (once; not past the rooms-per-user
        bound). A store failure costs only the listing, never the join."""
        key = (user_id, room)
        if key in self._recorded:
            self._recorded.move_to_end(key)
            return
        try:
            cap = self._limits.rooms_per_user
            known = await self._store.joined_rooms(user_id, limit=cap)
            if room not in known and len(known) < cap:
                await self._store.put_joined(user_id, room, int(self._clock() * 1000))
        except ChatError as exc:
            log.warning("could not list a joined room in the directory (%s)", exc.code)
            return
        self._recorded[key] = None
        while len(self._recorded) > RECORDED_CACHE:
            self._recorded.popitem(last=False)

    async def removed(self, user_id: str, room: str) -> None:
        """``user_id`` removed itself from public ``room``: no longer listed."""
        await self._store.delete_joined(user_id, room)
        self._recorded.pop((user_id, room), None)

    async def my_rooms(
        self, user_id: str, before: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the user's rooms, newest activity first, and the next cursor."""
        cap = self._limits.rooms_per_user
        entries: list[_Entry] = []
        for member in await self._store.rooms_of(user_id, limit=cap):
            entries.append(
                _Entry(
                    member.room,
                    kind_of_name(member.room),
                    member.role,
                    await self._activity(member.room, member.added_at_ms),
                )
            )
        for room in await self._store.joined_rooms(user_id, limit=cap):
            entries.append(_Entry(room, PUBLIC, None, await self._activity(room, 0)))
        entries.sort(key=lambda e: (e.activity, e.room), reverse=True)
        if before is not None:
            entries = [e for e in entries if e.cursor < before]
        page = entries[:limit]
        hidden = await self._blocks.hidden_from(user_id)
        rooms = [await self._describe(e, user_id, hidden) for e in page]
        return rooms, page[-1].cursor if len(entries) > limit and page else None

    async def _activity(self, room: str, since_ms: int) -> str:
        info = await self._store.get_room(room)
        if info is not None and info.last_message_id is not None:
            return info.last_message_id
        return lowest_id_at(max(0, since_ms))

    async def _describe(self, entry: _Entry, user_id: str, hidden: frozenset[str]) -> dict[str, Any]:
        title, members = entry.room, None
        if entry.kind != PUBLIC:
            conversation = await self._store.get_conversation(entry.room)
            members = await self._store.count_members(entry.room)
            if entry.kind == DIRECT:
                pair = await self._store.list_members(entry.room, after=None, limit=2)
                title = next((m.user_id for m in pair if m.user_id != user_id), user_id)
            elif conversation is not None:
                title = conversation.title
        page = await self._store.history(entry.room, before=None, limit=PREVIEW_SCAN)
        last = next((m for m in page.messages if not m.deleted and m.user_id not in hidden), None)
        return {
            "room": entry.room,
            "kind": entry.kind,
            "title": title,
            "role": entry.role,
            "members": members,
            "unread": await self._store.unread_count(entry.room, user_id, self._limits.unread_cap),
            "unread_mentions": await self._store.unread_mentions(
                entry.room, user_id, self._limits.unread_cap
            ),
            # With its stream position, like the same message live and in history.
            "last_message": message_wire(last, await self._store.stream_epoch())
            if last is not None
            else None,
        }
