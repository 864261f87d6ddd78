"""An in-memory history store (``CHATSVC_STORE=memory``): nothing survives a restart.

For benchmarks (history at no I/O cost, so fan-out is measured alone), demos and tests.
One process only: replicas do not see each other's history. Each room keeps its newest
``max_per_room`` messages, so memory stays bounded however long it runs; older messages
fall out of history (and out of the idempotency check) as a real retention policy would.
"""

from __future__ import annotations

import secrets
import time
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from chatsvc.errors import NotFound, StoreUnavailable
from chatsvc.model.messages import (
    HistoryPage,
    Message,
    Moderation,
    RoomEvent,
    RoomInfo,
    SessionRecord,
    StreamSlice,
    at_position,
)
from chatsvc.store.base import marks_pending
from chatsvc.store.memory_cleanup import MemoryCleanup
from chatsvc.store.memory_conversations import MemoryConversations
from chatsvc.store.memory_flags import MemoryFlags
from chatsvc.store.memory_modes import MemoryModes
from chatsvc.store.memory_reactions import MemoryReactions
from chatsvc.store.memory_relay import MemoryRelay
from chatsvc.store.memory_threads import MemoryThreads

DEFAULT_MAX_PER_ROOM = 10_000
#: Bound on sessions held (the oldest go first); each is a few KiB at most.
MAX_SESSIONS = 100_000


@dataclass
class _Room:
    created_at_ms: int
    ids: list[str] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)
    by_client_id: dict[tuple[str, str], str] = field(default_factory=dict)
    #: The room stream: (position, message id or event) in position order, and its bounds:
    #: ``head`` the newest position, ``floor`` the newest one no longer kept.
    log: list[tuple[int, str | RoomEvent]] = field(default_factory=list)
    head: int = 0
    floor: int = 0

    def logged(self, record: Message | RoomEvent) -> Message | RoomEvent:
        """``record`` at the next position, appended to the stream; a record that has a
        position already (cluster mode: its offset in the Kafka events topic) keeps it."""
        if record.pos is None:
            self.head += 1
            record = at_position(record, self.head)
        assert record.pos is not None
        self.head = max(self.head, record.pos)
        entry = (record.pos, record if isinstance(record, RoomEvent) else record.id)
        if not self.log or self.log[-1][0] < record.pos:
            self.log.append(entry)
        else:
            self.log.insert(bisect_left(self.log, record.pos, key=lambda item: item[0]), entry)
        return record

    @property
    def last_id(self) -> str | None:
        return self.ids[-1] if self.ids else None


class MemoryStore(
    MemoryCleanup,
    MemoryFlags,
    MemoryModes,
    MemoryReactions,
    MemoryThreads,
    MemoryRelay,
    MemoryConversations,
):
    """:class:`~chatsvc.store.base.MessageStore` in this process's memory."""

    def __init__(self, max_per_room: int = DEFAULT_MAX_PER_ROOM) -> None:
        if max_per_room < 1:
            raise ValueError("max_per_room must be >= 1")
        super().__init__()
        self._max_per_room = max_per_room
        self._open = False
        self._rooms: dict[str, _Room] = {}
        self._read: dict[tuple[str, str], str] = {}
        self._moderation: dict[tuple[str, str, str], Moderation] = {}
        self._events: dict[str, list[RoomEvent]] = {}
        self._sessions: OrderedDict[str, SessionRecord] = OrderedDict()
        #: PendingNotifications' marks, (room, message id), oldest first.
        self._pending: dict[tuple[str, str], None] = {}
        #: Nothing survives the process, so each store is a new epoch of positions.
        self._epoch = secrets.token_hex(8)

    def _check(self) -> None:
        if not self._open:
            raise StoreUnavailable("message store is not open")

    async def open(self) -> None:
        """Mark the store usable (there is nothing to connect)."""
        self._open = True

    async def aclose(self) -> None:
        """Mark the store closed; the data stays until the process ends. Idempotent."""
        self._open = False

    async def migrate(self) -> None:
        """Nothing to migrate."""
        self._check()

    async def ping(self) -> None:
        """Healthy while open."""
        self._check()

    async def append(self, message: Message) -> tuple[Message, bool]:
        """Insert unless the same client message is still held; trim the room to its bound."""
        self._check()
        room = self._rooms.get(message.room)
        if room is None:
            room = self._rooms[message.room] = _Room(created_at_ms=message.created_at_ms)
        key = (message.user_id, message.client_msg_id) if message.client_msg_id is not None else None
        if key is not None and (earlier := room.by_client_id.get(key)) is not None:
            return room.messages[earlier], False
        if message.id in room.messages:
            return room.messages[message.id], False
        if not room.ids or message.id > room.ids[-1]:
            room.ids.append(message.id)  # the usual case: ids grow with time
        else:
            room.ids.insert(bisect_left(room.ids, message.id), message.id)
        if marks_pending(message):
            self._pending[(message.room, message.id)] = None
        stored = room.logged(message)
        assert isinstance(stored, Message)
        message = stored
        room.messages[message.id] = message
        if key is not None:
            room.by_client_id[key] = message.id
        if len(room.ids) > self._max_per_room:
            self._trim(room)
        return message, True

    async def pending_notifications(self, limit: int) -> list[Message]:
        """Marked messages (PendingNotifications), oldest first; marks of gone ones dropped."""
        self._check()
        found: list[Message] = []
        for key in sorted(self._pending, key=lambda k: k[1]):
            room = self._rooms.get(key[0])
            message = room.messages.get(key[1]) if room is not None else None
            if message is None:
                del self._pending[key]
            elif len(found) < limit:
                found.append(message)
        return found

    async def clear_pending_notification(self, room: str, message_id: str) -> None:
        """Drop the mark."""
        self._check()
        self._pending.pop((room, message_id), None)

    def _trim(self, room: _Room) -> None:
        excess = len(room.ids) - self._max_per_room
        for old_id in room.ids[:excess]:
            old = room.messages.pop(old_id)
            if old.client_msg_id is not None:
                room.by_client_id.pop((old.user_id, old.client_msg_id), None)
            room.floor = max(room.floor, old.pos or 0)
        del room.ids[:excess]
        self._trim_log(room)

    def _trim_log(self, room: _Room) -> None:
        """Keep the stream as long as what it refers to: twice the room's bound."""
        excess = len(room.log) - 2 * self._max_per_room
        if excess > 0:
            room.floor = max(room.floor, room.log[excess - 1][0])
            del room.log[:excess]

    async def history(self, room: str, *, before: str | None, limit: int) -> HistoryPage:
        """Newest first, strictly older than ``before``."""
        self._check()
        entry = self._rooms.get(room)
        if entry is None or limit < 1:
            return HistoryPage([], None)
        end = len(entry.ids) if before is None else bisect_left(entry.ids, before)
        start = max(0, end - limit)
        page = [entry.messages[i] for i in reversed(entry.ids[start:end])]
        return HistoryPage(page, page[-1].id if start > 0 and page else None)

    async def after(self, room: str, after_id: str, limit: int) -> list[Message]:
        """Oldest first, strictly newer than ``after_id``."""
        self._check()
        entry = self._rooms.get(room)
        if entry is None:
            return []
        start = bisect_right(entry.ids, after_id)
        return [entry.messages[i] for i in entry.ids[start : start + limit]]

    async def get(self, room: str, message_id: str) -> Message | None:
        """One message by id."""
        self._check()
        entry = self._rooms.get(room)
        return entry.messages.get(message_id) if entry is not None else None

    def _existing(self, room: str, message_id: str) -> tuple[_Room, Message]:
        entry = self._rooms.get(room)
        message = entry.messages.get(message_id) if entry is not None else None
        if entry is None or message is None:
            raise NotFound(f"no message {message_id} in {room}")
        return entry, message

    async def edit(
        self, room: str, message_id: str, text: str, at_ms: int, *, tickers: tuple[str, ...] | None = None
    ) -> Message:
        """Replace the text (and the cashtags, when given) of a live (not deleted) message."""
        self._check()
        entry, message = self._existing(room, message_id)
        if message.deleted:
            raise NotFound(f"no message {message_id} in {room}")
        updated = entry.messages[message_id] = message.edited(text, at_ms, tickers)
        return updated

    async def delete(self, room: str, message_id: str, at_ms: int) -> Message:
        """Clear the text and mark the message deleted (kept as a tombstone)."""
        self._check()
        entry, message = self._existing(room, message_id)
        deleted = entry.messages[message_id] = replace(message, text="", edited_at_ms=at_ms, deleted=True)
        return deleted

    async def mark_read(self, room: str, user_id: str, message_id: str) -> None:
        """Move the user's read marker forward (never back)."""
        self._check()
        key = (room, user_id)
        if message_id > self._read.get(key, ""):
            self._read[key] = message_id

    async def unread_count(self, room: str, user_id: str, cap: int) -> int:
        """Messages by others newer than the read marker (all of them without one), capped."""
        self._check()
        entry = self._rooms.get(room)
        if entry is None:
            return 0
        count = 0
        for message_id in entry.ids[bisect_right(entry.ids, self._read.get((room, user_id), "")) :]:
            message = entry.messages[message_id]
            if not message.deleted and message.user_id != user_id:
                count += 1
                if count >= cap:
                    break
        return count

    async def list_rooms(self, *, after: str | None, limit: int) -> list[RoomInfo]:
        """Rooms in name order."""
        self._check()
        names = sorted(name for name in self._rooms if name > (after or ""))[:limit]
        return [self._info(name) for name in names]

    def _info(self, name: str) -> RoomInfo:
        entry = self._rooms[name]
        return RoomInfo(name, entry.created_at_ms, entry.last_id)

    async def get_room(self, room: str) -> RoomInfo | None:
        """One room by name."""
        self._check()
        return self._info(room) if room in self._rooms else None

    async def set_moderation(self, record: Moderation) -> None:
        """Create or replace a ban or mute."""
        self._check()
        self._moderation[(record.kind, record.room, record.user_id)] = record

    async def clear_moderation(self, kind: str, room: str, user_id: str) -> None:
        """Lift a ban or mute; no error if there is none."""
        self._check()
        self._moderation.pop((kind, room, user_id), None)

    async def get_moderation(self, kind: str, room: str, user_id: str) -> Moderation | None:
        """One ban or mute."""
        self._check()
        return self._moderation.get((kind, room, user_id))

    async def append_event(self, event: RoomEvent) -> RoomEvent:
        """Keep the event in id order, at the room's next position; each room keeps its
        newest ``max_per_room``."""
        self._check()
        events = self._events.setdefault(event.room, [])
        at = len(events)
        if events and event.id <= events[-1].id:
            at = bisect_left([e.id for e in events], event.id)
            if at < len(events) and events[at].id == event.id:
                return events[at]  # seen before
        room = self._rooms.get(event.room)
        if room is None:
            room = self._rooms[event.room] = _Room(created_at_ms=int(time.time() * 1000))
        logged = room.logged(event)
        assert isinstance(logged, RoomEvent)
        event = logged
        events.insert(at, event)
        if len(events) > self._max_per_room:
            for old in events[: len(events) - self._max_per_room]:
                room.floor = max(room.floor, old.pos or 0)
            del events[: len(events) - self._max_per_room]
        self._trim_log(room)
        return event

    async def events_after(self, room: str, after_id: str, limit: int) -> list[RoomEvent]:
        """Oldest first, strictly newer than ``after_id``."""
        self._check()
        events = self._events.get(room, [])
        start = bisect_right([e.id for e in events], after_id)
        return events[start : start + max(0, limit)]

    async def stream_epoch(self) -> str:
        """Random per store: positions name nothing after a restart."""
        return self._epoch

    async def stream_after(self, room: str, pos: int, limit: int) -> StreamSlice:
        """Messages (as they are now) and events after ``pos``, in position order."""
        self._check()
        entry = self._rooms.get(room)
        head, floor = (entry.head, entry.floor) if entry is not None else (0, 0)
        if entry is None or pos < floor or pos > head:
            return StreamSlice([], False, head, covered=pos == head == 0)
        start = bisect_right(entry.log, pos, key=lambda item: item[0])
        records: list[Message | RoomEvent] = []
        for _, record in entry.log[start : start + max(0, limit) + 1]:
            if isinstance(record, RoomEvent):
                records.append(record)
            elif (message := entry.messages.get(record)) is not None:
                records.append(message)
        return StreamSlice(records[:limit], len(records) > limit, head)

    def _purge_sessions(self, now_ms: int) -> None:
        # Insertion order is (nearly) expiry order: one window for every session.
        while self._sessions and next(iter(self._sessions.values())).expires_at_ms <= now_ms:
            self._sessions.popitem(last=False)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)

    async def save_session(self, record: SessionRecord) -> None:
        """Store the session (expired ones are purged as new ones arrive)."""
        self._check()
        self._sessions.pop(record.pid, None)
        self._sessions[record.pid] = record
        self._purge_sessions(int(time.time() * 1000))

    async def get_session(self, pid: str) -> SessionRecord | None:
        """The session while unexpired."""
        self._check()
        record = self._sessions.get(pid)
        if record is None or record.expires_at_ms <= int(time.time() * 1000):
            return None
        return record

    async def delete_session(self, pid: str) -> bool:
        """True if this call removed an unexpired session."""
        self._check()
        record = self._sessions.pop(pid, None)
        return record is not None and record.expires_at_ms > int(time.time() * 1000)
