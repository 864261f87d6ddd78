"""Reactions and pins in cluster mode: the room's log is their order of truth (issue 21).

A react, unreact, pin or unpin is first a record of the events log; its row is written by
the history writer when it applies that record, never by the sender before (a refused log
would leave a row no one was told about; a produce that timed out but landed would leave
an event without its row). Every reader of the log (each replica's consumer and the
history writer) applies the same rule, in stream order, with a :class:`ChangeWindow`:

* **A repeat changes nothing.** The window remembers, per room, the last state of each
  (message, emoji, user) reaction and each message's pin that the stream set. A record
  asking for the state already there (a retry whose first attempt landed, the same user
  reacting on two replicas at once) is a repeat: not delivered, not stored, its sender
  acked ``changed: false``. A key the window does not hold (older than it) is decided by
  the sender, which read the store (``prev`` is then what the store said: the sender sends
  nothing when it already matches).
* **Counts follow the stream.** A reaction record's ``count`` is the window's count for
  (message, emoji) plus or minus one, or, when the window holds none, the store's count
  the sender read (``base``) plus or minus one; the history writer stores the event with
  the count of rows after writing it.

* **Thread summaries follow the replies** (issue 25). A reply's record is the order of
  truth for its parent's ``reply_count`` and ``last_reply_at``: no record of its own, no
  row written by the sender. Each reader counts a reply once (its id is remembered; a
  retried reply is dropped before, as a repeated message) on the window's count for the
  parent, or on the count the sender read (``ReplyRef.base``), and delivers
  ``message_updated`` live, without a ``pos`` (the reply holds the position: replays send
  the reply, and pages count the store's rows). Neither known (the sender could not read
  the store: a CQL outage, and no reader here saw the parent's replies): nothing is
  delivered live; the writer's rows still count it. The history writer adds the reply's
  row when it writes the reply (idempotent: the count is counted rows).

Bounded: :data:`STATES_KEPT` keys per room, :data:`ROOMS_KEPT` rooms (least recently
changed dropped first). :class:`ChangeWriter` is the history writer's half (the rows).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from chatsvc.chat.wire import iso_ms
from chatsvc.model.messages import Message, RoomEvent, ThreadSummary
from chatsvc.store.base import MessageStore

#: States (reaction keys, counts, pins) kept per room.
STATES_KEPT: Final = 2_000
#: Rooms whose states are kept.
ROOMS_KEPT: Final = 10_000

#: What a pinned message's state holds: who pinned it and when (Unix ms).
Pinned = tuple[str, int]


def reaction_change(emoji: str, user_id: str, *, add: bool, base: int) -> dict[str, Any]:
    """A reaction record's ``change``: ``base`` is the store's count the sender read."""
    return {"reaction": {"emoji": emoji, "user": user_id, "add": add, "base": base}}


def pin_change(*, add: bool, by: str, at_ms: int) -> dict[str, Any]:
    """A pin or unpin record's ``change``."""
    return {"pin": {"add": add, "by": by, "at_ms": at_ms}}


def thread_update(room: str, parent_id: str, summary: ThreadSummary) -> dict[str, Any]:
    """The ``message_updated`` payload of a parent's reply summary."""
    return {
        "id": parent_id,
        "room": room,
        "reply_count": summary.count,
        "last_reply_at": iso_ms(summary.last_reply_at_ms),
    }


class ChangeWindow:
    """The recent reaction and pin states of each room, as the stream set them."""

    def __init__(self) -> None:
        self._rooms: OrderedDict[str, OrderedDict[tuple[str, ...], Any]] = OrderedDict()

    def _get(self, room: str, key: tuple[str, ...]) -> Any:
        states = self._rooms.get(room)
        return None if states is None else states.get(key)

    def reacted(self, room: str, message_id: str, emoji: str, user_id: str) -> bool | None:
        """Whether ``user_id`` has reacted ``emoji`` to the message; None: not known here."""
        found = self._get(room, ("r", message_id, emoji, user_id))
        return None if found is None else bool(found)

    def count(self, room: str, message_id: str, emoji: str) -> int | None:
        """The message's count of ``emoji``; None: not known here."""
        found = self._get(room, ("c", message_id, emoji))
        return None if found is None else int(found)

    def pinned(self, room: str, message_id: str) -> Pinned | bool | None:
        """``(by, at_ms)`` when pinned, False when unpinned; None: not known here."""
        found = self._get(room, ("p", message_id))
        if found is None or found is False:
            return None if found is None else False
        by, at_ms = found
        return str(by), int(at_ms)

    def pins(self, room: str) -> dict[str, Pinned | bool]:
        """Every pin state known here: message id -> ``(by, at_ms)`` or False."""
        states: dict[tuple[str, ...], Any] = self._rooms.get(room) or {}
        return {key[1]: value for key, value in states.items() if key[0] == "p"}

    def reactions(
        self, room: str, message_ids: list[str], reader: str
    ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, bool]]]:
        """Counts known here per message and emoji, and ``reader``'s own states."""
        states = self._rooms.get(room)
        counts: dict[str, dict[str, int]] = {}
        own: dict[str, dict[str, bool]] = {}
        if not states:
            return counts, own
        wanted = set(message_ids)
        for key, value in states.items():
            if key[1] not in wanted:
                continue
            if key[0] == "c":
                counts.setdefault(key[1], {})[key[2]] = int(value)
            elif key[0] == "r" and key[3] == reader:
                own.setdefault(key[1], {})[key[2]] = bool(value)
        return counts, own

    def thread(self, room: str, parent_id: str) -> ThreadSummary | None:
        """The parent's reply summary as the stream set it; None: not known here."""
        found = self._get(room, ("t", parent_id))
        return None if found is None else ThreadSummary(int(found[0]), int(found[1]))

    def replied(self, reply: Message) -> dict[str, Any] | None:
        """Count one new reply in stream order: its parent's ``message_updated`` payload, or
        None (not a reply, counted before, or no count known to add it to)."""
        ref = reply.reply_to
        if ref is None or self._get(reply.room, ("tr", reply.id)) is not None:
            return None
        self._set(reply.room, ("tr", reply.id), True)
        known = self.thread(reply.room, ref.id)
        if known is None and ref.base is None:
            return None
        count = (ref.base or 0) + 1 if known is None else known.count + 1
        last = reply.created_at_ms if known is None else max(known.last_reply_at_ms, reply.created_at_ms)
        self._set(reply.room, ("t", ref.id), (count, last))
        return thread_update(reply.room, ref.id, ThreadSummary(count, last))

    def repeat(self, event: RoomEvent, change: dict[str, Any]) -> bool:
        """Whether :meth:`apply` would drop this record as a repeat (nothing changes)."""
        reaction, pin = change.get("reaction"), change.get("pin")
        if isinstance(reaction, dict):
            key: tuple[str, ...] = ("r", event.message_id, str(reaction["emoji"]), str(reaction["user"]))
            add = bool(reaction["add"])
        elif isinstance(pin, dict):
            key, add = ("p", event.message_id), bool(pin["add"])
        else:
            return False
        known = self._get(event.room, key)
        return known is not None and bool(known) == add

    def apply(self, event: RoomEvent, change: dict[str, Any]) -> RoomEvent | None:
        """Apply one record's ``change`` in stream order: the event to deliver (a reaction's
        ``count`` set), or None for a repeat. ``KeyError``/``TypeError``/``ValueError`` for a
        malformed change; a change of another kind is passed through."""
        reaction, pin = change.get("reaction"), change.get("pin")
        if isinstance(reaction, dict):
            return self._react(event, reaction)
        if isinstance(pin, dict):
            return self._pin(event, pin)
        return event

    def _react(self, event: RoomEvent, change: dict[str, Any]) -> RoomEvent | None:
        add, emoji, user = bool(change["add"]), str(change["emoji"]), str(change["user"])
        if self.repeat(event, {"reaction": change}):
            return None
        key = ("r", event.message_id, emoji, user)
        known = self.count(event.room, event.message_id, emoji)
        count = max(0, (int(change["base"]) if known is None else known) + (1 if add else -1))
        self._set(event.room, key, add)
        self._set(event.room, ("c", event.message_id, emoji), count)
        return replace(event, payload={**event.payload, "count": count})

    def _pin(self, event: RoomEvent, change: dict[str, Any]) -> RoomEvent | None:
        add = bool(change["add"])
        if self.repeat(event, {"pin": change}):
            return None
        state = (str(change["by"]), int(change["at_ms"])) if add else False
        self._set(event.room, ("p", event.message_id), state)
        return event

    def forget(self, room: str) -> None:
        """Forget one room's states (as :meth:`release` does for several)."""
        self._rooms.pop(room, None)

    def release(self, owns: Callable[[str], bool]) -> None:
        """Forget the rooms ``owns`` says: the replica stopped reading them (interest-based
        routing), so their states would miss what the stream set meanwhile (the sender's
        ``base`` from the store decides again once they are read anew)."""
        for room in [r for r in self._rooms if owns(r)]:
            del self._rooms[room]

    def _set(self, room: str, key: tuple[str, ...], value: Any) -> None:
        states = self._rooms.get(room)
        if states is None:
            states = self._rooms[room] = OrderedDict()
            while len(self._rooms) > ROOMS_KEPT:
                self._rooms.popitem(last=False)
        else:
            self._rooms.move_to_end(room)
        states[key] = value
        states.move_to_end(key)
        while len(states) > STATES_KEPT:
            states.popitem(last=False)


class ChangeWriter:
    """The history writer's half: the rows of reaction and pin records, in stream order,
    with the same repeat rule as every consumer (its own :class:`ChangeWindow`).

    The writer may go back in a room's stream: after a store failure it rewrites from its
    last commit (chatsvc.bus.kafka_history: a crashed node can lose writes it acked). The
    window then holds the states of the records about to come again, which would make each
    of them look like a repeat and leave a lost row unwritten; so a record at or before the
    last one written in its room makes the window forget that room first, as a new writer
    (after a restart) starts without it."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store
        self._window = ChangeWindow()
        #: Per room, the position of the last change record written (bounded like the
        #: window: a room dropped here is dropped there too).
        self._written: OrderedDict[str, int] = OrderedDict()

    async def write(self, event: RoomEvent, change: dict[str, Any]) -> RoomEvent | None:
        """Write the row ``change`` sets (idempotent, so a retried record is harmless); the
        event to store (a reaction with the count of rows after it), or None for a repeat.
        Store errors propagate: the writer retries the record, and the window is moved on
        only once the row is written."""
        room, pos = event.room, event.pos
        last = self._written.get(room)
        if pos is not None and last is not None and pos <= last:
            self._window.forget(room)  # written again from an earlier commit: see the class
        result = await self._write(event, change)
        if pos is not None:
            self._written[room] = pos
            self._written.move_to_end(room)
            while len(self._written) > ROOMS_KEPT:
                self._window.forget(self._written.popitem(last=False)[0])
        return result

    async def _write(self, event: RoomEvent, change: dict[str, Any]) -> RoomEvent | None:
        try:
            if self._window.repeat(event, change):
                return None
            reaction, pin = change.get("reaction"), change.get("pin")
            room, message_id = event.room, event.message_id
            if isinstance(reaction, dict):
                emoji, user = str(reaction["emoji"]), str(reaction["user"])
                if reaction["add"]:
                    await self._store.put_reaction(room, message_id, emoji, user)
                else:
                    await self._store.delete_reaction(room, message_id, emoji, user)
                counts = await self._store.reaction_counts(room, [message_id])
                applied = self._window.apply(event, change)
                count = counts.get(message_id, {}).get(emoji, 0)
                if applied is None:
                    return None
                return replace(applied, payload={**applied.payload, "count": count})
            if isinstance(pin, dict):
                if pin["add"]:
                    await self._store.put_pin(room, message_id, str(pin["by"]), int(pin["at_ms"]))
                else:
                    await self._store.delete_pin(room, message_id)
                return self._window.apply(event, change)
        except (KeyError, TypeError, ValueError):
            return None  # malformed: every consumer skipped it too (logged once there)
        return event

    async def replied(self, stored: Message) -> None:
        """A reply just written (or the original a retried one stands for): its row under
        its parent, from which every summary is counted (again: no change)."""
        if stored.reply_to is not None:
            await self._store.add_reply(stored.room, stored.reply_to.id, stored.id)
