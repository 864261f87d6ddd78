"""Connection state recovery by stream position (issue 21; docs/delivery.md).

Every record of a room stream (message, edit, delete, reaction, pin, reply count...) has a
position, assigned in the order the stream delivers. An opted-in socket gets, as the extra
last argument of each such event, the room-qualified position ``"<epoch>:<n>:<room>"``
(:func:`~chatsvc.chat.recovery_base.room_offset`); socket.io-client sends the last one it
received back on reconnect.

Per opted-in socket this keeps (:class:`PosSession`):

* ``base``: per room, the position up to which the socket has everything it needs: the
  room's head when it joined (read right after subscribing, so a record after it is
  delivered live), raised when an entry falls out of the tail;
* the **tail**: ``(room, position)`` in the order they were queued to the socket (at most
  ``CHATSVC_RECOVERY_MAX_REPLAY``), its own messages marked. Packets arrive in queue order,
  so the client has received a prefix of the tail, and its offset says which.

At disconnect the session (epoch, rooms, the private/direct rooms reaching it through its
user room, base, tail) is saved under the pid. On recovery, per room, the replay is every
record after ``max(base, what the received prefix holds)`` read from the store's stream
(``stream_after``), minus what the prefix and the socket's own messages already hold, in
position order. The socket enters its rooms *first*; a live record of a room still being
replayed is dropped (the replay sends it: it re-reads until every record dropped meanwhile
was sent), and once a room is switched to live, a record whose position was already
queued to the socket is dropped. A comparison, never a hold.

A fresh connect instead (new sid, no rooms: the client rejoins with ``join {since}`` and
gets ``reset: true`` where its position is gone) when the store's epoch is not the
session's (a new database), a room's stream no longer covers the position (retention
raised its floor), the offset cannot be placed in an overflowed tail, or more than
``CHATSVC_RECOVERY_MAX_REPLAY`` records were missed. No time overlap is involved.

Assumes records of one room reach a replica in position order (SQLite and the memory
store deliver in commit order; Kafka consumers in partition order).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Container, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chatsvc.chat.recovery_base import (
    DROPPED,
    RECOVERABLE_EVENTS,
    Request,
    Send,
    claim,
    member_rooms,
    new_pid,
    parse_offset,
    room_offset,
)
from chatsvc.chat.wire import EVENT_OF_KIND, message_wire, parse_position, position
from chatsvc.errors import ChatError
from chatsvc.model.messages import Message, RoomEvent, SessionRecord, StreamSlice
from chatsvc.model.rooms import members_only
from chatsvc.settings import Limits
from chatsvc.store.base import MessageStore
from chatsvc.transport.broadcast import Delivery, RecipientFilter

log = logging.getLogger(__name__)

SESSION_FORMAT = 2
#: ``base`` of a room whose start could not be read: the session cannot be restored exactly.
UNKNOWN = -1
#: Re-reads of one room while live records keep arriving during its replay.
MAX_ROUNDS = 20

Entry = tuple[str, int]


class Streams(Protocol):
    """Where recovery reads room streams: the store in the embedded default; in cluster
    mode the chat service (chatsvc.chat.service), whose store lags the events log and whose
    epoch carries the log's partition count."""

    async def epoch(self) -> str:
        """The epoch of every position on the wire."""

    async def stream_after(self, room: str, pos: int, limit: int) -> StreamSlice:
        """``room``'s records after ``pos``, at most ``limit`` (``MessageStore.stream_after``)."""

    async def stream_head(self, room: str) -> int:
        """The position after which every record of ``room`` reaches this replica's sockets live."""


class StoreStreams:
    """:class:`Streams` straight from a store (it numbers and delivers records itself)."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store

    async def epoch(self) -> str:
        return await self._store.stream_epoch()

    async def stream_after(self, room: str, pos: int, limit: int) -> StreamSlice:
        return await self._store.stream_after(room, pos, limit)

    async def stream_head(self, room: str) -> int:
        return (await self._store.stream_after(room, 0, 0)).head


class Tail:
    """``(room, position)`` in the order queued to one socket, bounded; what falls out
    raises the session's ``base`` (received, if the client's offset is found after it)."""

    __slots__ = ("base", "entries", "gone", "members", "own", "truncated")

    def __init__(self, limit: int, base: dict[str, int]) -> None:
        self.entries: deque[Entry] = deque(maxlen=limit)
        self.members: set[Entry] = set()  # the entries again, for the per-delivery lookup
        self.own: set[Entry] = set()  # the socket's own messages (never replayed to it)
        self.base = base
        #: Per room, the highest position that fell out (it was queued: not again).
        self.gone: dict[str, int] = {}
        self.truncated = False

    def add(self, entry: Entry, *, own: bool = False) -> None:
        """``entry`` was queued to the socket (``own``: acked to it as its own message)."""
        entries = self.entries
        if len(entries) == entries.maxlen and entries:
            gone = entries[0]
            self.members.discard(gone)
            self.own.discard(gone)
            room, pos = gone
            self.gone[room] = max(self.gone.get(room, 0), pos)
            if self.base.get(room, 0) != UNKNOWN:
                self.base[room] = max(self.base.get(room, 0), pos)
            self.truncated = True
        entries.append(entry)
        self.members.add(entry)
        if own:
            self.own.add(entry)

    def queued(self, entry: Entry) -> bool:
        """Whether ``entry`` was queued to the socket (in the tail, or at or below what fell
        out of it: the room's records arrive in position order)."""
        return entry in self.members or entry[1] <= self.gone.get(entry[0], 0)


@dataclass
class PosSession:
    """The recoverable state of one connected, opted-in socket."""

    pid: str
    user_id: str
    epoch: str
    tail: Tail
    rooms: set[str] = field(default_factory=set)
    #: Private/direct rooms replayed but not entered (they reach it through its user room).
    reach: set[str] = field(default_factory=set)
    #: Rooms being replayed: the positions of live records dropped meanwhile.
    replaying: dict[str, set[int]] = field(default_factory=dict)
    #: Per room, the lowest position withheld after the session was saved.
    withheld: dict[str, int] = field(default_factory=dict)
    resumable: bool = False
    ended: bool = False


def encode(sid: str, live: PosSession) -> str:
    """The stored form of a session (JSON, versioned)."""
    tail = live.tail
    return json.dumps(
        {
            "v": SESSION_FORMAT,
            "sid": sid,
            "epoch": live.epoch,
            "rooms": sorted(live.rooms),
            "reach": sorted(live.reach),
            "base": tail.base,
            "tail": [[r, p, 1 if (r, p) in tail.own else 0] for r, p in tail.entries],
            "truncated": tail.truncated,
        },
        separators=(",", ":"),
    )


def decode(data: str, pid: str, user_id: str, limit: int) -> tuple[str, PosSession]:
    """Parse :func:`encode`'s output into ``(sid, session)``; ``ValueError`` for anything else."""
    raw = json.loads(data)
    if not isinstance(raw, dict) or raw.get("v") != SESSION_FORMAT:
        raise ValueError("unknown session format")
    base = {str(r): int(p) for r, p in dict(raw["base"]).items()}
    tail = Tail(limit, base)
    for room, pos, own in raw["tail"]:
        tail.add((str(room), int(pos)), own=bool(own))
    tail.truncated = bool(raw["truncated"])
    live = PosSession(pid, user_id, str(raw["epoch"]), tail, set(map(str, raw["rooms"])))
    live.reach = set(map(str, raw["reach"]))
    return str(raw["sid"]), live


@dataclass
class PosPlan:
    """A claimed session on its way back: the position to replay from, per room (what the
    client has above it is in ``live``'s tail)."""

    sid: str
    live: PosSession
    from_: dict[str, int]


class PositionRecovery:
    """Sessions of opted-in sockets, their tails, and restoring them by position.

    Also the broadcast path's :class:`chatsvc.transport.broadcast.RecoveryOffsets` policy:
    ``offset_of`` once per broadcast, then ``delivery`` for each opted-in recipient.
    """

    def __init__(
        self,
        store: MessageStore,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
        streams: Streams | None = None,
    ) -> None:
        """``store`` keeps the sessions; ``streams`` is read for records (default: ``store``)."""
        self._store = store
        self._streams: Streams = streams if streams is not None else StoreStreams(store)
        self._window_ms = limits.recovery_window_seconds * 1000
        self._max_replay = limits.recovery_max_replay
        self._rooms_per_user = limits.rooms_per_user
        self._clock = clock
        self._epoch: str | None = None
        self._live: dict[str, PosSession] = {}
        self._plans: dict[str, PosPlan] = {}
        self._current: Entry | None = None
        self._filter: RecipientFilter | None = None

    def use_filter(self, policy: RecipientFilter | None) -> None:
        """Leave out of replays what live delivery leaves out (blocked authors' records:
        chatsvc.chat.blocks), from now on."""
        self._filter = policy

    @property
    def enabled(self) -> bool:
        """``CHATSVC_RECOVERY_WINDOW`` > 0."""
        return self._window_ms > 0

    async def _store_epoch(self) -> str:
        if self._epoch is None:
            self._epoch = await self._streams.epoch()
        return self._epoch

    # -- the broadcast path's policy -------------------------------------------------------

    def offset_of(self, event: str, args: Sequence[Any]) -> str | None:
        """The room-qualified position of a room-stream event, None for anything else
        (including a record without ``pos``: it goes out plain)."""
        self._current = None
        if not self._live:
            # No socket here is opted in, so no recipient is asked for it: a room's plain
            # broadcast does not parse its position back (most broadcasts, most servers).
            return None
        if event not in RECOVERABLE_EVENTS or len(args) != 1 or not isinstance(args[0], dict):
            return None
        room, pos = args[0].get("room"), args[0].get("pos")
        parsed = parse_position(pos) if isinstance(pos, str) else None
        if not isinstance(room, str) or parsed is None:
            return None
        self._current = (room, parsed[1])
        return room_offset(room, str(pos))

    def opted_in(self) -> Container[str]:
        """The sockets with a live session; only these are asked :meth:`delivery`."""
        return self._live

    def delivery(self, sid: str) -> Delivery:
        """How ``sid`` gets the record ``offset_of`` just named: dropped while its room is
        being replayed or when already queued to it, withheld once its session is saved,
        else sent with the offset (and added to its tail)."""
        live = self._live.get(sid)
        current = self._current
        if live is None or current is None:
            return Delivery.PLAIN
        room, pos = current
        if live.ended:
            live.withheld[room] = min(pos, live.withheld.get(room, pos))
            return Delivery.WITHHELD
        dropped = live.replaying.get(room)
        if dropped is not None:
            dropped.add(pos)
            return Delivery.ALREADY_SENT
        if live.tail.queued(current):
            return Delivery.ALREADY_SENT
        live.tail.add(current)
        return Delivery.WITH_OFFSET

    # -- live sessions ---------------------------------------------------------------------

    def start(self, sid: str, user_id: str) -> PosSession:
        """A fresh opted-in socket: new pid, empty tail (its epoch is read at first join
        or at the drop)."""
        live = PosSession(new_pid(), user_id, self._epoch or "", Tail(self._max_replay, {}))
        self._live[sid] = live
        return live

    def resume(self, sid: str) -> Collection[str] | None:
        """The rooms of the plan for ``sid`` (entered by :meth:`restore`); installs its live
        session, every room it replays dropping live records until then."""
        plan = self._plans.get(sid)
        if plan is None:
            return None
        live = plan.live
        live.replaying = {room: set() for room in plan.from_}
        self._live[sid] = live
        return set(live.rooms)

    def pid_for(self, sid: str) -> str | None:
        """The pid of ``sid``'s session (for the CONNECT reply), if it opted in."""
        live = self._live.get(sid)
        return live.pid if live is not None else None

    def live(self, sid: str) -> PosSession | None:
        """``sid``'s live session, if it opted in."""
        return self._live.get(sid)

    def joined(self, sid: str, room: str) -> None:
        """``sid`` entered ``room`` (re-entered at recovery); :meth:`subscribed` follows."""
        live = self._live.get(sid)
        if live is not None:
            live.rooms.add(room)

    async def subscribed(self, sid: str, room: str) -> None:
        """Where the socket starts in ``room``: its head now (the socket already receives
        the room, so every later record reaches it live)."""
        live = self._live.get(sid)
        if live is None or live.tail.base.get(room, UNKNOWN) != UNKNOWN:
            return
        try:
            live.epoch = await self._store_epoch()
            head = await self._streams.stream_head(room)
        except ChatError as exc:
            log.warning("could not read where a socket starts in a room (%s); it will not recover", exc.code)
            head = UNKNOWN
        live.tail.base[room] = max(live.tail.base.get(room, UNKNOWN), head)

    def left(self, sid: str, room: str) -> None:
        """``sid`` left ``room``: not re-entered or replayed (unless a member room)."""
        live = self._live.get(sid)
        if live is not None:
            live.rooms.discard(room)
            live.tail.base.pop(room, None)

    def posted(self, sid: str, message: Message) -> None:
        """``sid`` sent ``message``: delivered to the others, never (re)played to it."""
        live = self._live.get(sid)
        if live is not None and message.pos is not None:
            live.tail.add((message.room, message.pos), own=True)

    def local_sid_of(self, pid: str, user_id: str) -> str | None:
        """The socket here still holding session ``pid`` for ``user_id`` (its client is back
        before the server noticed the old connection was dead)."""
        for sid, live in self._live.items():
            if live.pid == pid and live.user_id == user_id and not live.ended:
                return sid
        return None

    def mark_resumable(self, sid: str) -> None:
        """The server is ending ``sid`` but wants it back (drain): keep its session."""
        live = self._live.get(sid)
        if live is not None:
            live.resumable = True

    async def end(self, sid: str, reason: Any) -> None:
        """The socket is going: save its session if it dropped (or the server asked it
        back). Deliveries to it are withheld from here until :meth:`forget`."""
        self._plans.pop(sid, None)
        live = self._live.get(sid)
        if live is None:
            return
        live.ended = True
        if not self.enabled or not (live.resumable or (isinstance(reason, str) and reason in DROPPED)):
            return
        try:
            live.epoch = await self._store_epoch()
            await self._settle_reach(live)
            now = int(self._clock() * 1000)
            record = SessionRecord(live.pid, live.user_id, encode(sid, live), now + self._window_ms)
            await self._store.save_session(record)
        except ChatError as exc:
            log.warning("could not save the session of %s (%s); it cannot be recovered", sid, exc.code)

    async def _settle_reach(self, live: PosSession) -> None:
        """The private/direct rooms whose records reach the socket through its user room,
        each with a base: below its first record queued here, else the head now (lowered
        below anything withheld meanwhile)."""
        rooms = await member_rooms(self._store, live.user_id, self._rooms_per_user)
        reach = {room for room in rooms if room not in live.rooms}
        base = live.tail.base
        first: dict[str, int] = {}
        for room, pos in live.tail.entries:
            first[room] = min(pos, first.get(room, pos))
        unknown = sorted(room for room in reach - set(base) if room not in first)
        # One head read per such room (a room that reached it since connect has a first
        # record instead); concurrent, as the store allows.
        heads = await asyncio.gather(*(self._streams.stream_head(room) for room in unknown))
        for room, head in zip(unknown, heads, strict=True):
            base[room] = min(head, live.withheld.get(room, head + 1) - 1)
        for room in reach - set(base):
            base[room] = first[room] - 1
        live.reach = reach

    def forget(self, sid: str) -> None:
        """The socket :meth:`end` saw has left its rooms: drop its session from memory."""
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
            sid, live = decode(record.data, record.pid, user_id, self._max_replay)
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable stored session; connecting afresh")
            return None
        try:
            plan = await self._plan(request, sid, live, may_join)
        except ChatError as exc:
            log.warning("replay lookup failed (%s); connecting afresh", exc.code)
            return None
        if plan is None:
            return None
        self._plans[sid] = plan
        return sid

    async def _plan(
        self, request: Request, sid: str, live: PosSession, may_join: Callable[[str], bool]
    ) -> PosPlan | None:
        if live.epoch != await self._store_epoch():
            log.info("session of another stream epoch (a new database); connecting afresh")
            return None
        if live.reach or any(members_only(r) for r in live.rooms):
            # Removed from a private or direct room meanwhile: neither replayed nor entered.
            member_of = await member_rooms(self._store, live.user_id, self._rooms_per_user)
            live.rooms = {r for r in live.rooms if not members_only(r) or r in member_of}
            live.reach = {r for r in live.reach if r in member_of}
        live.rooms = {r for r in live.rooms if members_only(r) or may_join(r)}
        received = _received(live.tail, request.offset, live.epoch)
        if received is None:
            return None  # the offset fell out of the tail: too much was missed
        skip = set(received) | live.tail.own
        from_: dict[str, int] = {}
        for room in live.rooms | live.reach:
            start = live.tail.base.get(room, UNKNOWN)
            if start == UNKNOWN:
                return None
            from_[room] = max([start, *(p for r, p in received if r == room and (r, p) not in live.tail.own)])
        for room, pos in live.tail.entries:
            # Queued but not received, at or below where the room started (cluster mode: this
            # replica's consumer was behind the store's head at the join): replayed all the same.
            if (room, pos) not in skip and pos <= from_.get(room, pos - 1):
                from_[room] = pos - 1
        missed = 0
        for room, start in from_.items():
            found = await self._streams.stream_after(room, start, self._max_replay + len(skip) + 1)
            if not found.covered or found.more:
                return None  # retention raised the floor past it, or far too much
            missed += sum(1 for r in found.records if (room, r.pos or 0) not in skip)
            if missed > self._max_replay:
                return None
        # The restored tail: the received prefix and its own messages, nothing else.
        tail = Tail(self._max_replay, dict(from_))
        for entry in live.tail.entries:
            if entry in skip:
                tail.add(entry, own=entry in live.tail.own)
        # The client has everything up to ``from_``: a late live copy of such a record (a
        # replica whose consumer is behind) is not sent again.
        tail.gone = dict(from_)
        live.tail = tail
        return PosPlan(sid, live, from_)

    def abandon(self, sid: str) -> None:
        """Forget a claimed session that will not be restored."""
        self._plans.pop(sid, None)

    async def restore(self, sid: str, send: Send, enter: Callable[[str], Awaitable[None]]) -> int | None:
        """Enter ``sid``'s rooms, then replay each room from its position and switch it to
        live; return how many records were replayed (None: ``sid`` is not recovering).

        The first read of every room is sent merged by record id (time), each room's
        records staying in position order, so a client sees its rooms' missed records
        interleaved as they were posted; then each room is read on until it can go live."""
        plan = self._plans.pop(sid, None)
        if plan is None:
            return None
        live = plan.live
        sent = [0]
        try:
            for room in sorted(live.rooms):
                if live.ended:
                    return 0
                await enter(room)
            first: dict[str, StreamSlice] = {}
            for room, start in sorted(plan.from_.items()):
                first[room] = await self._streams.stream_after(room, start, self._max_replay)
            merged = heapq.merge(
                *([(room, r) for r in found.records] for room, found in first.items() if found.covered),
                key=lambda item: item[1].id,
            )
            for room, record in merged:
                if live.ended:
                    return sent[0]
                await self._send(sid, live, room, record, send, sent)
            for room, found in first.items():
                after = max([plan.from_[room], *(r.pos or 0 for r in found.records)])
                if not found.covered:
                    # Retention passed it since prepare(): the client keeps what it has.
                    log.warning("replay of %s: the stream no longer covers its position", room)
                    live.replaying.pop(room, None)
                    continue
                await self._go_live(sid, live, room, after, found.more, send, sent)
        finally:
            live.replaying.clear()  # whatever happens, no room stays muted
        return sent[0]

    async def _send(
        self, sid: str, live: PosSession, room: str, record: Message | RoomEvent, send: Send, sent: list[int]
    ) -> None:
        """Replay one record unless it was already queued to the socket (or live delivery
        would leave it out: then it only counts as queued)."""
        entry = (room, record.pos or 0)
        if live.tail.queued(entry):
            return
        event, payload = _wire(record, live.epoch)
        live.tail.add(entry)
        hidden = self._filter.skipped(event, [payload]) if self._filter is not None else None
        if hidden and sid in hidden:
            return
        await send(event, payload, room_offset(room, position(live.epoch, entry[1])))
        sent[0] += 1

    async def _go_live(
        self, sid: str, live: PosSession, room: str, after: int, more: bool, send: Send, sent: list[int]
    ) -> None:
        """Read ``room`` on after ``after`` until every live record dropped meanwhile was
        sent, then switch it to live delivery."""
        for _ in range(MAX_ROUNDS):
            if more:
                found = await self._streams.stream_after(room, after, self._max_replay)
                for record in found.records:
                    if live.ended:
                        return
                    await self._send(sid, live, room, record, send, sent)
                    after = max(after, record.pos or 0)
                more = found.more
                if more:
                    continue
            unsent = [p for p in live.replaying.get(room, ()) if not live.tail.queued((room, p))]
            if not unsent:
                live.replaying.pop(room, None)  # no await since the check: nothing slips by
                return
            # Dropped live meanwhile: read again from below the lowest one not yet sent
            # (above what the reads had, or skipped by them as half-written).
            after, more = min(after, min(unsent) - 1), True
        log.warning("replay of %s kept racing live records; switching it to live", room)
        live.replaying.pop(room, None)


def _received(tail: Tail, offset: str | None, epoch: str) -> list[Entry] | None:
    """The prefix of ``tail`` the client received, per its offset; None: not placeable."""
    parsed = parse_offset(offset)
    if parsed is not None and parsed[0] == epoch:
        entry = (parsed[2], parsed[1])
        entries = list(tail.entries)
        for index in range(len(entries) - 1, -1, -1):
            if entries[index] == entry:
                return entries[: index + 1]
    # The offset predates this session (or there is none): it received none of the tail.
    return None if tail.truncated else []


def _wire(record: Message | RoomEvent, epoch: str) -> tuple[str, dict[str, Any]]:
    """A stream record as its live event and payload, with its position."""
    if isinstance(record, Message):
        return "message", message_wire(record, epoch)
    payload = {**record.payload, "pos": position(epoch, record.pos or 0)}
    return EVENT_OF_KIND.get(record.kind, record.kind), payload
