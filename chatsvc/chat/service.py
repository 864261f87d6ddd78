"""Chat operations shared by the Socket.IO namespace and the admin API.

A message is stored before anything is acknowledged or delivered: history is the record,
live delivery is best effort on top of it (clients catch up with ``join {since}``). The
store gives every message, edit and delete a position in its room's stream
(docs/delivery.md); on the wire it is ``pos``, ``"<epoch>:<n>"``, and ``join {since}``
taking one answers everything after it, or ``reset`` when it cannot.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from chatsvc.auth.identity import Identity
from chatsvc.chat.wire import message_wire, position
from chatsvc.errors import ChatError, Forbidden, InvalidMessageId, InvalidPayload, NotFound, StoreUnavailable
from chatsvc.metrics import Metrics
from chatsvc.model.ids import MessageIdGenerator, lowest_id_at, timestamp_ms
from chatsvc.model.messages import HistoryPage, Message, ReplyRef, RoomEvent
from chatsvc.model.rooms import members_only
from chatsvc.settings import Limits
from chatsvc.store.base import MessageStore, RoomDirectory

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _client_id(field: str) -> Iterator[None]:
    """The store's ``InvalidMessageId`` for an id a client sent is that client's bad payload.

    Callers validate ids first (chatsvc.chat.payloads, the admin servicer); this keeps the
    store's own check from reaching a client as anything but ``invalid_payload``.
    """
    try:
        yield
    except InvalidMessageId:
        raise InvalidPayload(f"'{field}' must be a message id") from None


class Emitter(Protocol):
    """The part of ``socketio.AsyncServer`` the service uses to deliver events."""

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: str | None = None,
        room: str | list[str] | None = None,
        skip_sid: str | list[str] | None = None,
        namespace: str | None = None,
        callback: Any = None,
        ignore_queue: bool = False,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The answer to ``join {since: position}``.

    ``messages`` and ``events`` are the records after the position, in stream order;
    ``last`` is the position the answer is complete up to (the client's next ``since``).
    ``reset``: the position could not be answered from (another epoch, older than the
    store keeps, beyond its head): ``messages`` is then the newest page instead, and the
    client reloads rather than trusting what it holds.
    """

    messages: list[Message]
    events: list[RoomEvent]
    more: bool
    reset: bool
    last: str


#: The Socket.IO rooms a private or direct room's events go to (chatsvc.chat.conversations).
Audience = Callable[[str], Awaitable[list[str]]]


class ChatService:
    """Stores and delivers messages, edits, deletes and read receipts."""

    def __init__(
        self,
        store: MessageStore,
        emitter: Emitter,
        metrics: Metrics,
        limits: Limits,
        ids: MessageIdGenerator | None = None,
        clock: Callable[[], float] = time.time,
        audience: Audience | None = None,
    ) -> None:
        self._store = store
        self._audience = audience
        self._emitter = emitter
        self._metrics = metrics
        self._limits = limits
        self._ids = ids or MessageIdGenerator(clock)
        self._clock = clock
        self._epoch: str | None = None

    @property
    def store(self) -> RoomDirectory:
        """The history store (the admin API reads rooms from it)."""
        return self._store

    @property
    def message_store(self) -> MessageStore:
        """The whole store (chatsvc.chat.threads reads and writes replies in it)."""
        return self._store

    async def get(self, room: str, message_id: str, *, field: str) -> Message | None:
        """One message; a malformed id is the client's ``invalid_payload`` naming ``field``."""
        with _client_id(field):
            async with self._metrics.timed_store("get"):
                return await self._store.get(room, message_id)

    async def log_and_deliver(
        self, kind: str, event: str, room: str, message_id: str, wire: dict[str, Any]
    ) -> None:
        """Log a room event of ``kind`` about ``message_id`` in the room's stream (it gets an
        ``event_id`` and a ``pos``) and deliver it live as ``event``."""
        payload = await self._record(kind, room, message_id, wire)
        await self._deliver(event, payload, room)

    async def send_to(self, event: str, data: dict[str, Any], targets: list[str]) -> None:
        """Deliver ``event`` to Socket.IO rooms ``targets`` (each socket once), best effort
        like every live delivery: a bus failure is counted and logged, never raised."""
        try:
            await self._emitter.emit(event, data, room=targets)
        except Exception as exc:
            self._metrics.bus_errors.labels("emit").inc()
            log.warning("live delivery of %s failed (%s)", event, type(exc).__name__)

    def now_ms(self) -> int:
        """The service clock, Unix milliseconds."""
        return self._now_ms()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def epoch(self) -> str:
        """The store's stream epoch (read once: it changes only with a new database)."""
        if self._epoch is None:
            async with self._metrics.timed_store("epoch"):
                self._epoch = await self._store.stream_epoch()
        return self._epoch

    def wire(self, message: Message) -> dict[str, Any]:
        """``message``'s wire form, with its position once the epoch is known."""
        return message_wire(message, self._epoch)

    async def _deliver(
        self,
        event: str,
        data: dict[str, Any],
        room: str,
        skip_sid: str | None = None,
        *,
        volatile: bool = False,
    ) -> None:
        """Fan out; a bus failure is counted and logged, never surfaced: the message is
        already stored, or (``volatile``) is not worth keeping and is dropped."""
        try:
            # A private or direct room's events also reach its members' sockets that never
            # joined it: one emit to the room and their user rooms (each socket once).
            target = await self._audience(room) if self._audience is not None and members_only(room) else room
            await self._emitter.emit(event, data, room=target, skip_sid=skip_sid)
        except ChatError as exc:
            self._metrics.bus_errors.labels("emit").inc()
            if volatile:
                # Sent as often as users type: at debug, or an outage floods the log.
                log.debug("live delivery of %s to %s dropped (%s)", event, room, exc.code)
                return
            log.warning(
                "live delivery of %s to %s failed (%s); clients catch up from history", event, room, exc.code
            )
        except Exception:
            self._metrics.bus_errors.labels("emit").inc()
            log.exception("live delivery of %s to %s failed; clients catch up from history", event, room)

    async def post(
        self,
        room: str,
        author: Identity,
        text: str,
        client_msg_id: str | None = None,
        *,
        skip_sid: str | None = None,
        kind: str = "user",
        reply_to: ReplyRef | None = None,
        mentions: tuple[str, ...] = (),
        tickers: tuple[str, ...] = (),
        sentiment: str | None = None,
    ) -> tuple[Message, bool]:
        """Store a message (idempotently) then deliver it; return it and whether it is new."""
        created = self._now_ms()
        message = Message(
            id=self._ids.new(),
            room=room,
            user_id=author.user_id,
            user_name=author.name,
            text=text,
            created_at_ms=created,
            client_msg_id=client_msg_id,
            kind=kind,
            reply_to=reply_to,
            mentions=mentions,
            tickers=tickers,
            sentiment=sentiment,
        )
        async with self._metrics.timed_store("append"):
            stored, is_new = await self._store.append(message)
        epoch = await self.epoch()
        if is_new:
            self._metrics.messages_in.inc()
            await self._deliver("message", message_wire(stored, epoch), room, skip_sid)
            self._metrics.messages_out.inc()
        return stored, is_new

    async def typing(self, room: str, user: Identity, typing: bool, *, skip_sid: str | None) -> None:
        """Tell the room ``user`` is (not) typing: volatile, never stored, best effort (a
        bus failure is counted in ``chatsvc_bus_errors_total{op="emit"}`` and dropped)."""
        data = {"room": room, "user": user.public(), "typing": typing}
        await self._deliver("typing", data, room, skip_sid, volatile=True)

    async def history(self, room: str, before: str | None, limit: int) -> HistoryPage:
        """One page, newest first."""
        await self.epoch()
        with _client_id("before"):
            async with self._metrics.timed_store("history"):
                return await self._store.history(room, before=before, limit=limit)

    async def catch_up(self, room: str, since: str) -> tuple[list[Message], bool]:
        """Messages after ``since``, oldest first, at most ``catchup_max``; and whether more exist.

        Ids are minted by whichever replica stored the message, while live delivery follows
        the bus's order, so a client may have seen a message before an older-id one from
        another replica arrived. The answer therefore starts with the messages stored in the
        ``catchup_overlap_ms`` before ``since`` (the newest ``history_page_max`` of them),
        which the client may already have; clients drop repeats by id (they must anyway: a
        message stored while they rejoin comes both live and in the catch-up). ``has_more``
        counts only what is after ``since``, so paging on the last id always progresses.
        """
        limit = self._limits.catchup_max
        await self.epoch()
        with _client_id("since"):
            async with self._metrics.timed_store("after"):
                after = await self._store.after(room, since, limit + 1)
            overlap = await self._overlap(room, since) if self._limits.catchup_overlap_ms else []
        return overlap + after[:limit], len(after) > limit

    async def catch_up_from(self, room: str, epoch: str, pos: int) -> CatchUp:
        """Everything in ``room``'s stream after position ``pos`` of ``epoch``, in stream
        order, at most ``catchup_max`` records (``more``: page on from ``last``); or a reset
        with the newest page when that position cannot be answered from."""
        mine = await self.epoch()
        limit = self._limits.catchup_max
        if epoch == mine:
            async with self._metrics.timed_store("stream_after"):
                found = await self._store.stream_after(room, pos, limit)
            if found.covered:
                messages = [r for r in found.records if isinstance(r, Message)]
                events = [r for r in found.records if isinstance(r, RoomEvent)]
                last = (
                    found.upto
                    if found.upto is not None
                    else (found.records[-1].pos if found.records else None)
                )
                # Nothing after pos: complete up to pos (the head may be ahead only by
                # half-written records a reader skips).
                return CatchUp(messages, events, found.more, False, position(mine, last or pos))
            head = found.head
        else:
            async with self._metrics.timed_store("stream_after"):
                head = (await self._store.stream_after(room, 0, 0)).head
        async with self._metrics.timed_store("history"):
            page = await self._store.history(room, before=None, limit=self._limits.history_page_default)
        newest = list(reversed(page.messages))
        last = max([head, *(m.pos or 0 for m in newest)])
        return CatchUp(newest, [], False, True, position(mine, last))

    async def _overlap(self, room: str, since: str) -> list[Message]:
        """The newest ``history_page_max`` messages stored in the overlap window before ``since``."""
        floor = max(0, timestamp_ms(since) - self._limits.catchup_overlap_ms)
        cap = self._limits.history_page_max
        async with self._metrics.timed_store("after"):
            # Forwards from the window's start: touches only the window's bucket(s).
            window = [m for m in await self._store.after(room, lowest_id_at(floor), cap) if m.id < since]
        if len(window) < cap:
            return window
        # A busy window: take its newest messages instead, the likeliest to have been missed.
        async with self._metrics.timed_store("history"):
            page = await self._store.history(room, before=since, limit=cap)
        return [m for m in reversed(page.messages) if timestamp_ms(m.id) >= floor]

    async def _editable(
        self, room: str, message_id: str, actor: Identity, *, moderator: bool = False
    ) -> Message:
        with _client_id("id"):
            async with self._metrics.timed_store("get"):
                message = await self._store.get(room, message_id)
        if message is None or message.deleted:
            raise NotFound(f"no message {message_id} in {room}")
        if message.user_id != actor.user_id and not actor.is_admin and not moderator:
            raise Forbidden("only the author or an admin may change a message")
        return message

    async def edit(
        self,
        room: str,
        message_id: str,
        text: str,
        actor: Identity,
        *,
        tickers: tuple[str, ...] | None = None,
    ) -> Message:
        """Change a message's text (author or admin), and its cashtags when given, and tell the room."""
        await self._editable(room, message_id, actor)
        with _client_id("id"):
            async with self._metrics.timed_store("edit"):
                updated = await self._store.edit(room, message_id, text, self._now_ms(), tickers=tickers)
        # Without the message's own position: the event is delivered at its own.
        payload = await self._record("edited", room, message_id, message_wire(updated))
        await self._deliver("message_edited", payload, room)
        return updated

    async def _record(self, kind: str, room: str, message_id: str, wire: dict[str, Any]) -> dict[str, Any]:
        """Log an edit/delete in the room's event log; return the payload with its ``event_id``.

        The id is minted like a message id, so a reconnecting client's replay merges messages
        and events in one order (chatsvc.chat.recovery). The change itself is already stored:
        if only the log write fails, the event goes out without ``event_id`` (not replayable)
        rather than the caller seeing an error for a change that happened.
        """
        event_id = self._ids.new()
        payload = {**wire, "event_id": event_id}
        try:
            async with self._metrics.timed_store("append_event"):
                stored = await self._store.append_event(RoomEvent(event_id, room, kind, message_id, payload))
            epoch = await self.epoch()
        except ChatError as exc:
            log.warning("could not log the %s event of %s in %s (%s)", kind, message_id, room, exc.code)
            return wire
        if stored.pos is None:
            return payload
        # The event's own position (an edited message keeps the one it was posted at).
        return {**payload, "pos": position(epoch, stored.pos)}

    async def delete(
        self, room: str, message_id: str, actor: Identity | None, *, moderator: bool = False
    ) -> Message:
        """Delete a message (author, admin, or with ``moderator`` a moderator of the room, as
        chatsvc.chat.conversations says; ``actor=None`` is the admin API) and tell the room."""
        if actor is not None:
            await self._editable(room, message_id, actor, moderator=moderator)
        with _client_id("id"):
            async with self._metrics.timed_store("delete"):
                deleted = await self._store.delete(room, message_id, self._now_ms())
        wire = {"id": message_id, "room": room, "deleted_by": actor.user_id if actor else "admin"}
        payload = await self._record("deleted", room, message_id, wire)
        await self._deliver("message_deleted", payload, room)
        return deleted

    async def mark_read(self, room: str, reader: Identity, message_id: str, *, skip_sid: str | None) -> None:
        """Store the read marker, then tell the room."""
        with _client_id("message_id"):
            async with self._metrics.timed_store("mark_read"):
                await self._store.mark_read(room, reader.user_id, message_id)
        await self._deliver(
            "read", {"room": room, "user": reader.public(), "message_id": message_id}, room, skip_sid
        )

    async def unread(self, room: str, reader: Identity) -> int:
        """Unread messages for the user in the room (capped)."""
        async with self._metrics.timed_store("unread"):
            return await self._store.unread_count(room, reader.user_id, self._limits.unread_cap)

    async def check_store(self) -> None:
        """Readiness probe of the store."""
        try:
            await self._store.ping()
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
