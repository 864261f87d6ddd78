"""Cluster mode's room streams, consumer side (issue 21 phase 2, docs/delivery.md).

Every replica applies every record of the events log (chatsvc.bus.log) in partition order:

* **Dedup, first record wins.** A message's ``(room, user, client_msg_id)`` seen before in the
  room (a bounded window of recent keys per room, rebuilt from the stream's replay at
  startup) makes a later record with the same key a duplicate: not delivered, not stored,
  and its sender is acked the original (``duplicate: true``). Every replica applies the same
  rule to the same order, so all agree on which record was the message.
* **Live delivery** of every other record to this replica's sockets, at its position.
* **The tail**: the last ``TAIL_RECORDS`` records of each room applied here, from which a
  ``join {since}`` fills what the store does not hold (yet).
* **Waiters**: the replica that appended a record waits for it here before acking, so the
  ack carries the position and follows the record's delivery to this replica's sockets.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from chatsvc.bus.log import LogRecord
from chatsvc.chat.changes import ChangeWindow
from chatsvc.model.messages import Message, ReplyRef, RoomEvent

log = logging.getLogger(__name__)

#: Dedup keys kept per room: a client retries within seconds, a room rarely sees more.
DEDUP_WINDOW: Final = 2_000
#: Records kept per room for ``join {since}``.
TAIL_RECORDS: Final = 500
#: Rooms whose window and tail are kept (least recently written dropped first).
ROOMS_KEPT: Final = 10_000

MESSAGE = "message"
EVENT = "event"

#: ``(record, here)``: a new message or an event applied (``here``: a message appended by
#: this replica, live; events do not say which replica appended them: always False).
Observer = Callable[[Message | RoomEvent, bool], None]

#: ``(event, data, room, skip_sid, targets)``: deliver to this replica's sockets only, in
#: ``room`` or (a private room's events, chatsvc.chat.conversations) in ``targets``.
Deliver = Callable[[str, dict[str, Any], str, str | None, list[str] | None], Awaitable[None]]
#: ``(room, targets)``: whether a record's live delivery may reach a socket of this replica.
Audible = Callable[[str, list[str] | None], bool]


def _targets(body: dict[str, Any]) -> list[str] | None:
    """The Socket.IO rooms the sender resolved the record's audience to, if it did."""
    to = body.get("to")
    return [str(t) for t in to] if isinstance(to, list) and to else None


@dataclass(frozen=True, slots=True)
class Applied:
    """What became of an appended record: the message or event at its position, and
    whether the record was a duplicate (``record`` is then the original message)."""

    record: Message | RoomEvent
    duplicate: bool = False


def message_body(message: Message, *, skip_sid: str | None, host: str) -> dict[str, Any]:
    """A new message as a log record (its position is the record's offset)."""
    ref = message.reply_to
    return {
        "t": MESSAGE,
        "host": host,
        "skip": skip_sid,
        "id": message.id,
        "user_id": message.user_id,
        "user_name": message.user_name,
        "text": message.text,
        "created_at_ms": message.created_at_ms,
        "client_msg_id": message.client_msg_id,
        "kind": message.kind,
        # The fifth: the parent's reply count the sender read (chatsvc.chat.changes).
        "reply_to": None if ref is None else [ref.id, ref.user_id, ref.user_name, ref.preview, ref.base],
        "mentions": list(message.mentions),
        "tickers": list(message.tickers),
        "sentiment": message.sentiment,
    }


def event_body(event: RoomEvent, live: str, change: dict[str, Any] | None = None) -> dict[str, Any]:
    """A room event (edit, delete, reaction, pin...) as a log record, delivered as ``live``;
    ``change``: what the history writer applies to the message (an edit's ``text`` and
    ``at_ms``, a delete's ``at_ms``)."""
    body = {
        "t": EVENT,
        "live": live,
        "id": event.id,
        "kind": event.kind,
        "message_id": event.message_id,
        "payload": event.payload,
    }
    if change is not None:
        body["change"] = change
    return body


def record_of(record: LogRecord) -> Message | RoomEvent:
    """The message or event a log record holds, at its position (``ValueError``,
    ``KeyError`` or ``TypeError`` for a record that is not one)."""
    body = record.body
    if body.get("t") == MESSAGE:
        return _message(record.room, record.offset, body)
    if body.get("t") == EVENT:
        payload = body["payload"]
        if not isinstance(payload, dict):
            raise TypeError("event payload is not an object")
        return RoomEvent(
            str(body["id"]), record.room, str(body["kind"]), str(body["message_id"]), payload, record.offset
        )
    raise ValueError(f"unknown record type {body.get('t')!r}")


def _message(room: str, offset: int, body: dict[str, Any]) -> Message:
    ref = body.get("reply_to")
    cmid = body.get("client_msg_id")
    return Message(
        id=str(body["id"]),
        room=room,
        user_id=str(body["user_id"]),
        user_name=str(body["user_name"]),
        text=str(body["text"]),
        created_at_ms=int(body["created_at_ms"]),
        client_msg_id=None if cmid is None else str(cmid),
        kind=str(body.get("kind") or "user"),
        pos=offset,
        reply_to=None if not ref else _reply_ref(ref),
        mentions=tuple(str(m) for m in body.get("mentions") or ()),
        tickers=tuple(str(t) for t in body.get("tickers") or ()),
        sentiment=None if body.get("sentiment") is None else str(body["sentiment"]),
    )


def _reply_ref(ref: list[Any]) -> ReplyRef:
    base = ref[4] if len(ref) > 4 else None  # records of older replicas have four fields
    count = None if base is None else int(base)
    return ReplyRef(str(ref[0]), str(ref[1]), str(ref[2]), str(ref[3]), base=count)


class _Room:
    __slots__ = ("keys", "tail")

    def __init__(self) -> None:
        self.keys: OrderedDict[tuple[str, str], Message] = OrderedDict()
        self.tail: deque[Message | RoomEvent] = deque(maxlen=TAIL_RECORDS)


class RoomStreams:
    """Applies the events log's records on this replica (see the module docstring)."""

    def __init__(
        self,
        deliver: Deliver,
        wire: Callable[[Message | RoomEvent, str], dict[str, Any]],
        host: str,
        audible: Audible | None = None,
    ) -> None:
        """``wire(record, live_event)``: the payload a record is delivered with;
        ``audible``: whether anyone here may get a record's delivery (None: assume so). A
        replica reads every room's records, most of them for rooms it has nobody in: those
        are applied (dedup window, tail, observers) but neither turned into their wire form
        nor handed to the emitter (issue 26, docs/scaling.md)."""
        self._deliver = deliver
        self._audible = audible
        self._wire = wire
        self.host = host
        self._rooms: OrderedDict[str, _Room] = OrderedDict()
        self._waiters: dict[str, asyncio.Future[Applied]] = {}
        self._malformed = False
        #: Reaction and pin states as the stream set them (chatsvc.chat.changes): repeats
        #: are dropped here, in stream order, like repeated messages.
        self.changes = ChangeWindow()
        self._observers: list[Observer] = []
        #: Set once the epoch is known: records are applied only then (they carry positions).
        self.ready = asyncio.Event()

    def watch(self, observer: Observer) -> None:
        """Call ``observer`` with every new message and event applied (replayed ones too,
        duplicates never), before it is delivered: what other replicas' senders posted, for
        rules that hold cluster-wide (chatsvc.chat.crossposts). It must be quick and must
        not raise."""
        self._observers.append(observer)

    def original(self, room: str, user_id: str, client_msg_id: str) -> Message | None:
        """The message a client message id already stands for in ``room``, if still known."""
        state = self._rooms.get(room)
        return None if state is None else state.keys.get((user_id, client_msg_id))

    def expect(self, record_id: str) -> asyncio.Future[Applied]:
        """A future resolved when the record with id ``record_id`` is applied here (call
        :meth:`forget` when done waiting)."""
        future: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        self._waiters[record_id] = future
        return future

    def forget(self, record_id: str) -> None:
        """Stop waiting for ``record_id``."""
        self._waiters.pop(record_id, None)

    def find(self, room: str, message_id: str) -> Message | None:
        """A message of ``room`` still in this replica's tail (as it was sent)."""
        state = self._rooms.get(room)
        if state is None:
            return None
        return next((r for r in reversed(state.tail) if isinstance(r, Message) and r.id == message_id), None)

    def newest(self, room: str) -> list[Message]:
        """The messages of ``room``'s tail, oldest first (as they were sent)."""
        state = self._rooms.get(room)
        return [] if state is None else [r for r in state.tail if isinstance(r, Message)]

    def head(self, room: str) -> int | None:
        """The position of the last record of ``room`` applied here, if still kept."""
        state = self._rooms.get(room)
        return None if state is None or not state.tail else state.tail[-1].pos

    def tail_after(self, room: str, pos: int) -> list[Message | RoomEvent] | None:
        """The records of ``room`` after ``pos`` applied here, oldest first; None when the
        tail does not reach back to ``pos``: offsets are shared by a partition's rooms, so
        only a position at or after the oldest record held is known to miss nothing."""
        state = self._rooms.get(room)
        if state is None or not state.tail or pos < (state.tail[0].pos or 0):
            return None
        return [r for r in state.tail if (r.pos or 0) > pos]

    def release(self, owns: Callable[[str], bool]) -> None:
        """Forget the windows and tails of the rooms ``owns`` says: this replica stopped
        reading them (interest-based routing), so what it kept would have a gap."""
        for room in [r for r in self._rooms if owns(r)]:
            del self._rooms[room]
        self.changes.release(owns)  # its counts would miss what happened meanwhile

    def _room(self, room: str) -> _Room:
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _Room()
            while len(self._rooms) > ROOMS_KEPT:
                self._rooms.popitem(last=False)
        else:
            self._rooms.move_to_end(room)
        return state

    async def apply(self, record: LogRecord) -> None:
        """Apply one record read from the log (the log calls this in partition order)."""
        await self.ready.wait()
        body = record.body
        try:
            if body.get("t") == MESSAGE:
                await self._apply_message(record.room, record.offset, body, record.replay)
            elif body.get("t") == EVENT:
                await self._apply_event(record.room, record.offset, body, record.replay)
            else:
                raise ValueError(f"unknown record type {body.get('t')!r}")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if not self._malformed:
                self._malformed = True
                log.warning(
                    "skipping malformed room events (first at %s offset %d: %r)",
                    record.room,
                    record.offset,
                    exc,
                )

    def _resolve(self, record_id: str, applied: Applied) -> None:
        future = self._waiters.pop(record_id, None)
        if future is not None and not future.done():
            future.set_result(applied)

    async def _apply_message(self, room: str, offset: int, body: dict[str, Any], replay: bool) -> None:
        message = _message(room, offset, body)
        state = self._room(room)
        key = None if message.client_msg_id is None else (message.user_id, message.client_msg_id)
        if key is not None:
            original = state.keys.get(key)
            if original is not None:
                self._resolve(message.id, Applied(original, duplicate=True))
                return
            state.keys[key] = message
            if len(state.keys) > DEDUP_WINDOW:
                state.keys.popitem(last=False)
        state.tail.append(message)
        if self._observers:
            here = not replay and body.get("host") == self.host
            for observer in self._observers:
                observer(message, here)
        targets = _targets(body)
        heard = not replay and self._heard(room, targets)
        if heard:
            skip = body.get("skip") if body.get("host") == self.host else None
            skip_sid = skip if isinstance(skip, str) else None
            await self._deliver("message", self._wire(message, "message"), room, skip_sid, targets)
        updated = self.changes.replied(message)  # a reply: its parent's summary (issue 25)
        if updated is not None and heard:
            await self._deliver("message_updated", updated, room, None, targets)
        self._resolve(message.id, Applied(message))

    async def _apply_event(self, room: str, offset: int, body: dict[str, Any], replay: bool) -> None:
        event = record_of(LogRecord(room, offset, body))
        assert isinstance(event, RoomEvent)
        change = body.get("change")
        if isinstance(change, dict):
            applied = self.changes.apply(event, change)
            if applied is None:  # a repeated reaction or pin: its sender acks changed: false
                self._resolve(event.id, Applied(event, duplicate=True))
                return
            event = applied
        self._room(room).tail.append(event)
        for observer in self._observers:
            observer(event, False)
        if not replay:
            live = str(body["live"])
            targets = _targets(body)
            if self._heard(room, targets):
                await self._deliver(live, self._wire(event, live), room, None, targets)
        self._resolve(event.id, Applied(event))

    def _heard(self, room: str, targets: list[str] | None) -> bool:
        return self._audible is None or self._audible(room, targets)
