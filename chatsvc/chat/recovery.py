"""Connection state recovery by journal: the path for deliveries **without** stream
positions only (cluster mode until the events topic numbers records; docs/delivery.md).
Deliveries with ``pos`` use :mod:`chatsvc.chat.recovery_pos` instead, and this module goes
once positions are everywhere. Durable in the store so a client recovers on any replica,
also after a restart.

Wire form (socket.io-client v4, see chatsvc.transport.sioserver): a client opts in with
``auth: {token, recover: true}`` (a ``pid`` counts as opting in); its CONNECT reply then
carries a private session id ``pid`` and each ``message`` / ``message_edited`` /
``message_deleted`` event it receives an offset as an extra last argument: the message id,
or the ``event_id`` of an edit/delete (the room event log's id, also in the payload). Other
sockets' packets are unchanged. On reconnect socket.io-client sends ``{pid, offset, ...}``.

**Exactly once.** Ids are minted by the replica that stored the message and delivery
follows the bus, so "after the offset" in id order would both repeat and lose messages
(README, catch-up overlap), and socket.io-client does not drop repeats. A socket's packets,
however, arrive in the order they were queued, so the client has received a *prefix* of
what was sent to it. Each opted-in socket therefore keeps a **journal**: the offsets queued
to it, in send order (at most ``CHATSVC_RECOVERY_MAX_REPLAY``; the largest id that fell
out is remembered), plus the ids of messages it posted itself (sent to others, not to it).
On disconnect the session -- user, rooms and since when, journal -- is saved under the pid
for ``CHATSVC_RECOVERY_WINDOW`` seconds. From that moment until the socket has left its
rooms, broadcasts to it are withheld (python-socketio still delivers to a socket while its
disconnect handler runs, and the client would receive events the saved journal lacks: a
repeat at recovery); it gets them by replay. On recovery the client's offset locates the
received prefix in the journal; the replay is every stored message and room event of the
session's rooms above the floor (the room's join time less ``CHATSVC_CATCHUP_OVERLAP_MS``,
and above every id that fell out of the journal) that is neither in that prefix nor the
socket's own, in id order. While it is computed and sent, a *hold* records what this
replica broadcasts to those rooms; the socket enters its rooms only after the replay, and
what the hold saw is sent after it, minus what already went out. An offset the journal
cannot place, an offset-less client whose journal overflowed, or more than
``CHATSVC_RECOVERY_MAX_REPLAY`` events to replay: a fresh connect (new sid, no rooms; the
client rejoins with ``join {since}``). The one assumption: an event reaches every replica
within the overlap of being stored (what ``join {since}`` assumes too).

The pid stays the same across recoveries (socket.io-client reports ``recovered`` only when
the reply's pid equals the one it sent); the stored session is consumed by the claim (one
use, an LWT in CQL) and written afresh at the next drop. Only the same ``sub``, with a
currently valid token, may claim it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Container, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chatsvc.chat.recovery_base import (
    DROPPED,
    NoRecovery,
    Request,
    Send,
    SessionRecovery,
    claim,
    member_rooms,
    new_pid,
    requested,
)
from chatsvc.chat.wire import EVENT_OF_KIND, message_wire, position
from chatsvc.errors import ChatError
from chatsvc.model.ids import lowest_id_at
from chatsvc.model.messages import Message, SessionRecord
from chatsvc.model.rooms import members_only
from chatsvc.settings import Limits
from chatsvc.store.base import MessageStore
from chatsvc.transport.broadcast import Delivery

# Re-exported: the names callers and tests have imported from here.
__all__ = ["NoRecovery", "Recovery", "Request", "Send", "SessionRecovery", "requested"]

log = logging.getLogger(__name__)

#: Events that carry an offset, and which payload field holds it.
RECOVERABLE: dict[str, str] = {
    "message": "id",
    "message_edited": "event_id",
    "message_deleted": "event_id",
    "message_updated": "event_id",
    "reaction": "event_id",
    "pinned": "event_id",
    "unpinned": "event_id",
    "room_mode": "event_id",
}
SESSION_FORMAT = 1


class Journal:
    """Offsets in the order they were queued to one socket, bounded; remembers the
    largest one that fell out (anything above it is still here, if it was queued)."""

    __slots__ = ("_members", "dropped_max", "entries")

    def __init__(self, limit: int, entries: Iterable[str] = (), dropped_max: str = "") -> None:
        self.entries: deque[str] = deque(maxlen=limit)
        self._members: set[str] = set()  # the entries again, for the per-delivery lookup
        self.dropped_max = dropped_max
        for entry in entries:
            self.add(entry)

    def add(self, offset: str) -> None:
        entries = self.entries
        if len(entries) == entries.maxlen and entries:
            dropped = entries[0]
            self.dropped_max = max(self.dropped_max, dropped)
            self._members.discard(dropped)
        entries.append(offset)
        self._members.add(offset)

    def __contains__(self, offset: object) -> bool:
        return offset in self._members

    @property
    def truncated(self) -> bool:
        return bool(self.dropped_max)


@dataclass
class LiveSession:
    """The recoverable state of one connected, opted-in socket."""

    pid: str
    user_id: str
    journal: Journal
    own: Journal
    #: room -> since when (Unix ms) the socket has been in it.
    rooms: dict[str, int] = field(default_factory=dict)
    #: Set when the server ends the socket but wants it back (drain).
    resumable: bool = False
    #: Set at disconnect, when the session is saved: the journal is final from then on.
    ended: bool = False
    #: When the socket connected (Unix ms), and the private/direct rooms whose events reach
    #: it through its user room without a join (room -> since when): replayed, not entered.
    started_ms: int = 0
    reach: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SavedSession:
    """A session as stored (see :func:`encode`)."""

    sid: str
    rooms: dict[str, int]
    journal: list[str]
    dropped_max: str
    own: list[str]
    own_dropped_max: str
    reach: dict[str, int] = field(default_factory=dict)
    started_ms: int = 0


def encode(sid: str, live: LiveSession, saved_at_ms: int) -> str:
    """The stored form of a session (JSON, versioned)."""
    return json.dumps(
        {
            "v": SESSION_FORMAT,
            "sid": sid,
            "rooms": live.rooms,
            "journal": list(live.journal.entries),
            "dropped": live.journal.dropped_max,
            "own": list(live.own.entries),
            "own_dropped": live.own.dropped_max,
            "saved_at": saved_at_ms,
            "reach": live.reach,
            "started": live.started_ms,
        },
        separators=(",", ":"),
    )


def decode(data: str) -> SavedSession:
    """Parse :func:`encode`'s output; ``ValueError`` for anything else."""
    raw = json.loads(data)
    if not isinstance(raw, dict) or raw.get("v") != SESSION_FORMAT:
        raise ValueError("unknown session format")
    rooms, journal, own = raw.get("rooms"), raw.get("journal"), raw.get("own")
    reach = raw.get("reach", {})
    if not (isinstance(rooms, dict) and isinstance(journal, list) and isinstance(own, list)):
        raise ValueError("malformed session")
    if not isinstance(reach, dict):
        raise ValueError("malformed session")
    return SavedSession(
        sid=str(raw["sid"]),
        rooms={str(r): int(ms) for r, ms in rooms.items()},
        journal=[str(o) for o in journal],
        dropped_max=str(raw.get("dropped", "")),
        own=[str(o) for o in own],
        own_dropped_max=str(raw.get("own_dropped", "")),
        reach={str(r): int(ms) for r, ms in reach.items()},
        started_ms=int(raw.get("started", 0)),
    )


@dataclass(frozen=True, order=True)
class Item:
    """One replayable event: ordered by offset."""

    offset: str
    event: str = field(compare=False)
    payload: dict[str, Any] = field(compare=False)


class Hold:
    """Recoverable events this replica broadcast to some rooms while a session is restored."""

    def __init__(self, rooms: Iterable[str]) -> None:
        self.rooms = frozenset(rooms)
        self.items: list[Item] = []

    def take(self) -> list[Item]:
        items, self.items = self.items, []
        return items


@dataclass
class Plan:
    """A claimed session on its way back."""

    sid: str
    pid: str
    user_id: str
    rooms: dict[str, int]
    live: LiveSession
    hold: Hold
    #: Offsets never to send again: received (the journal prefix) and the socket's own.
    skip: set[str]
    floor: str
    #: Rooms replayed but not entered (reached through the user room; issue 24).
    reach: dict[str, int] = field(default_factory=dict)


class Recovery:
    """Sessions of opted-in sockets, their journals, and restoring them.

    Also the broadcast path's :class:`chatsvc.transport.broadcast.RecoveryOffsets` policy: it sees
    every recoverable event this replica delivers (``offset_of``, once per broadcast) and
    each recipient (``delivery``, right after, for each).
    """

    def __init__(
        self,
        store: MessageStore,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._window_ms = limits.recovery_window_seconds * 1000
        self._max_replay = limits.recovery_max_replay
        self._overlap_ms = limits.catchup_overlap_ms
        self._rooms_per_user = limits.rooms_per_user
        self._clock = clock
        self._live: dict[str, LiveSession] = {}
        self._plans: dict[str, Plan] = {}
        self._holds: list[Hold] = []
        self._current: str | None = None

    @property
    def enabled(self) -> bool:
        """``CHATSVC_RECOVERY_WINDOW`` > 0."""
        return self._window_ms > 0

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- the broadcast path's policy -------------------------------------------------------

    def offset_of(self, event: str, args: Sequence[Any]) -> str | None:
        """The offset of a recoverable event; also feeds the holds of sessions being restored."""
        field_name = RECOVERABLE.get(event)
        offset = None
        if field_name is not None and len(args) == 1 and isinstance(args[0], dict):
            value = args[0].get(field_name)
            offset = value if isinstance(value, str) else None
        self._current = offset
        if offset is not None and self._holds:
            room = args[0].get("room")
            for hold in self._holds:
                if room in hold.rooms:
                    hold.items.append(Item(offset, event, args[0]))
        return offset

    def holds(self, room: str) -> bool:
        """Whether a session being restored here will enter ``room``: its hold must see the
        room's broadcasts though no local socket is in it yet."""
        return any(room in hold.rooms for hold in self._holds)

    def opted_in(self) -> Container[str]:
        """The sockets that opted in (a live session each); only these are asked :meth:`delivery`."""
        return self._live

    def delivery(self, sid: str) -> Delivery:
        """Opted in? Then the event being broadcast (``offset_of`` just ran) is journaled,
        unless the socket already has it: a replay sends what is stored, and a message stored
        on another replica may reach this one over the bus after it was replayed. Withheld
        once the socket's session was saved (:meth:`end`)."""
        live = self._live.get(sid)
        if live is None:
            return Delivery.PLAIN
        if live.ended:
            return Delivery.WITHHELD
        current = self._current
        if current is not None:
            if current in live.journal or current in live.own:
                return Delivery.ALREADY_SENT
            live.journal.add(current)
        return Delivery.WITH_OFFSET

    # -- live sessions ---------------------------------------------------------------------

    def start(self, sid: str, user_id: str) -> LiveSession:
        """A fresh opted-in socket: new pid, empty journal."""
        live = LiveSession(new_pid(), user_id, Journal(self._max_replay), Journal(self._max_replay))
        live.started_ms = self._now_ms()
        self._live[sid] = live
        return live

    def pid_for(self, sid: str) -> str | None:
        live = self._live.get(sid)
        return live.pid if live is not None else None

    def live(self, sid: str) -> LiveSession | None:
        return self._live.get(sid)

    def joined(self, sid: str, room: str) -> None:
        live = self._live.get(sid)
        if live is not None and room not in live.rooms:
            live.rooms[room] = self._now_ms()

    def left(self, sid: str, room: str) -> None:
        live = self._live.get(sid)
        if live is not None:
            live.rooms.pop(room, None)

    async def subscribed(self, sid: str, room: str) -> None:
        """Nothing to read: the journal path starts a room at the join time (:meth:`joined`)."""

    def posted(self, sid: str, message: Message) -> None:
        """``sid`` sent this message (it is delivered to the others, never back to it)."""
        live = self._live.get(sid)
        if live is not None:
            live.own.add(message.id)

    def local_sid_of(self, pid: str, user_id: str) -> str | None:
        """The socket on this replica still holding session ``pid`` for ``user_id``: its
        client reconnected before the server noticed the old connection was dead."""
        for sid, live in self._live.items():
            if live.pid == pid and live.user_id == user_id and not live.ended:
                return sid
        return None

    def mark_resumable(self, sid: str) -> None:
        live = self._live.get(sid)
        if live is not None:
            live.resumable = True

    async def end(self, sid: str, reason: Any) -> None:
        """The socket is going: keep its session if it dropped (or the server asked it
        back). Its journal is final from here on, so every delivery to it is withheld until
        :meth:`forget`, which the caller owes once the socket has left its rooms."""
        live = self._live.get(sid)
        plan = self._plans.pop(sid, None)
        if plan is not None:
            self._drop_hold(plan.hold)
        if live is None:
            return
        live.ended = True
        if not self.enabled:
            return
        if not (live.resumable or (isinstance(reason, str) and reason in DROPPED)):
            return
        live.reach = await self._reach(live)
        now = self._now_ms()
        record = SessionRecord(live.pid, live.user_id, encode(sid, live, now), now + self._window_ms)
        try:
            await self._store.save_session(record)
        except ChatError as exc:
            log.warning("could not save the session of %s (%s); it cannot be recovered", sid, exc.code)

    async def _member_rooms(self, user_id: str) -> dict[str, int]:
        return await member_rooms(self._store, user_id, self._rooms_per_user)

    async def _reach(self, live: LiveSession) -> dict[str, int]:
        """The rooms whose events reached the socket through its user room: each since it
        connected or became a member, whichever is later."""
        try:
            rooms = await self._member_rooms(live.user_id)
        except ChatError as exc:
            log.warning("could not list a user's rooms (%s); their missed events are not replayed", exc.code)
            return dict(live.reach)
        return {
            room: live.reach.get(room, max(live.started_ms, added))
            for room, added in rooms.items()
            if room not in live.rooms
        }

    def forget(self, sid: str) -> None:
        """The socket :meth:`end` saw has left its rooms: drop its session from memory (a
        session restored under the same sid meanwhile is not touched)."""
        live = self._live.get(sid)
        if live is not None and live.ended:
            del self._live[sid]

    # -- recovery --------------------------------------------------------------------------

    async def prepare(self, request: Request, user_id: str, may_join: Callable[[str], bool]) -> str | None:
        """Claim ``request.pid``'s session for ``user_id`` if it can be restored exactly;
        return its sid (the plan waits for :meth:`resume`), or None for a fresh connect."""
        if not self.enabled or request.pid is None:
            return None
        record = await claim(self._store, request.pid, user_id)
        if record is None:
            return None
        try:
            saved = decode(record.data)
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable stored session; connecting afresh")
            return None
        if saved.reach or any(members_only(r) for r in saved.rooms):
            try:
                member_of = await self._member_rooms(user_id)
            except ChatError as exc:
                log.warning("session lookup failed (%s); connecting afresh", exc.code)
                return None
            # Removed from a private or direct room meanwhile: it is neither replayed nor
            # entered again (membership, not the token, is the permission there).
            saved = replace(
                saved,
                rooms={r: s for r, s in saved.rooms.items() if not members_only(r) or r in member_of},
                reach={r: s for r, s in saved.reach.items() if r in member_of},
            )
        plan = self._plan(request, saved, record.pid, user_id, may_join)
        if plan is None:
            return None
        self._holds.append(plan.hold)
        try:
            items = await self._pending(plan)
        except ChatError as exc:
            log.warning("replay lookup failed (%s); connecting afresh", exc.code)
            items = None
        if items is None or len(items) > self._max_replay:
            self._drop_hold(plan.hold)
            return None
        self._plans[plan.sid] = plan
        return plan.sid

    def _plan(
        self,
        request: Request,
        saved: SavedSession,
        pid: str,
        user_id: str,
        may_join: Callable[[str], bool],
    ) -> Plan | None:
        journal = saved.journal
        if request.offset is not None and request.offset in journal:
            received = journal[: journal.index(request.offset) + 1]
        elif not saved.dropped_max:
            # The client's offset (if any) predates this session: it received none of it.
            received = []
        else:
            return None  # the offset fell out of the journal: too much was missed
        rooms = {room: since for room, since in saved.rooms.items() if members_only(room) or may_join(room)}
        live = LiveSession(
            pid,
            user_id,
            Journal(self._max_replay, received, saved.dropped_max),
            Journal(self._max_replay, saved.own, saved.own_dropped_max),
            dict(rooms),  # kept if it drops again mid-restore
            started_ms=saved.started_ms,
            reach=dict(saved.reach),
        )
        return Plan(
            sid=saved.sid,
            pid=pid,
            user_id=user_id,
            rooms=rooms,
            live=live,
            hold=Hold({*rooms, *saved.reach}),
            skip={*received, *saved.own},
            floor=max(saved.dropped_max, saved.own_dropped_max),
            reach=dict(saved.reach),
        )

    async def _pending(self, plan: Plan, *, bounded: bool = True) -> list[Item] | None:
        """Everything to replay, in offset order (None: more than can be replayed)."""
        limit = (self._max_replay if bounded else 10 * self._max_replay) + len(plan.skip) + 1
        found: dict[str, Item] = {}
        epoch = await self._store.stream_epoch() if plan.rooms or plan.reach else None
        for room, since in {**plan.reach, **plan.rooms}.items():
            floor = max(lowest_id_at(max(0, since - self._overlap_ms)), plan.floor)
            messages = await self._store.after(room, floor, limit)
            events = await self._store.events_after(room, floor, limit)
            if bounded and (len(messages) >= limit or len(events) >= limit):
                return None
            for m in messages:
                found[m.id] = Item(m.id, "message", message_wire(m, epoch))
            for e in events:
                event = EVENT_OF_KIND.get(e.kind)
                if event is not None:
                    payload = (
                        e.payload
                        if e.pos is None or epoch is None
                        else {**e.payload, "pos": position(epoch, e.pos)}
                    )
                    found[e.id] = Item(e.id, event, payload)
        for item in plan.hold.items:
            found.setdefault(item.offset, item)
        return sorted(item for offset, item in found.items() if offset not in plan.skip)

    def abandon(self, sid: str) -> None:
        """Forget a claimed session that will not be restored."""
        plan = self._plans.pop(sid, None)
        if plan is not None:
            self._drop_hold(plan.hold)

    def _drop_hold(self, hold: Hold) -> None:
        if hold in self._holds:
            self._holds.remove(hold)

    def resume(self, sid: str) -> Collection[str] | None:
        """At the namespace's connect: the rooms of the plan for ``sid``, its live session
        installed."""
        plan = self._plans.get(sid)
        if plan is None:
            return None
        self._live[sid] = plan.live
        return plan.rooms

    async def restore(self, sid: str, send: Send, enter: Callable[[str], Awaitable[None]]) -> int | None:
        """Replay what ``sid`` missed, then enter its rooms; return how many were replayed
        (None: ``sid`` is not being recovered)."""
        plan = self._plans.pop(sid, None)
        if plan is None:
            return None
        live = plan.live
        sent = set(plan.skip)
        count = 0

        async def send_new(items: Iterable[Item]) -> None:
            nonlocal count
            for item in items:
                if live.ended:
                    return  # it disconnected meanwhile: the rest is for the next recovery
                # Its own messages too, also those it posted while being restored, and
                # what reached it live through its user room meanwhile (journaled).
                if item.offset in sent or item.offset in live.own or item.offset in live.journal:
                    continue
                sent.add(item.offset)
                live.journal.add(item.offset)
                await send(item.event, item.payload, item.offset)
                count += 1

        try:
            # Again, now that this sid is connected: what was stored since prepare().
            pending = await self._pending(plan, bounded=False) or []
            plan.hold.take()
            await send_new(pending)
            await send_new(sorted(plan.hold.take()))
            for room in plan.rooms:
                if live.ended:
                    break
                await enter(room)
            # What the hold saw while entering, unless it also arrived live (journaled).
            sent.update(live.journal.entries)
            await send_new(sorted(plan.hold.take()))
        finally:
            self._drop_hold(plan.hold)
        return count
