"""Chat operations shared by the Socket.IO namespace and the admin API.

Embedded (no Kafka): a message is stored before anything is acknowledged or delivered, and
the store gives every message, edit and delete a position in its room's stream
(docs/delivery.md). Cluster mode (a :class:`~chatsvc.bus.log.RoomLog`): every room event is
appended to the events log first; its offset is its position, every replica delivers it in
log order (chatsvc.chat.streams) and the sender acks once its own replica applied it. On the
wire a position is ``pos``, ``"<epoch>:<n>"``, and ``join {since}`` taking one answers
everything after it, or ``reset`` when it cannot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from chatsvc.auth.identity import Identity
from chatsvc.bus.log import RoomLog
from chatsvc.chat.catchup import CatchUp, StreamReads, client_id
from chatsvc.chat.changes import ChangeWindow
from chatsvc.chat.history_writer import HistoryWriter
from chatsvc.chat.spam import SpamFilter
from chatsvc.chat.streams import Applied, Observer, RoomStreams, event_body, message_body
from chatsvc.chat.wire import message_wire, position
from chatsvc.errors import (
    BusUnavailable,
    ChatError,
    Forbidden,
    NotFound,
    StoreUnavailable,
)
from chatsvc.metrics import Metrics
from chatsvc.model.ids import MessageIdGenerator
from chatsvc.model.messages import HistoryPage, Message, ReplyRef, RoomEvent, StreamSlice
from chatsvc.model.rooms import members_only
from chatsvc.settings import Limits
from chatsvc.store.base import MessageStore, RoomDirectory

log = logging.getLogger(__name__)

#: Longest a sender waits for its own replica to read back an appended record before the
#: send is refused ``bus_unavailable`` (its retry is deduplicated if the record did land).
APPLY_TIMEOUT_SECONDS = 5.0


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


#: The Socket.IO rooms a private or direct room's events go to (chatsvc.chat.conversations).
Audience = Callable[[str], Awaitable[list[str]]]
#: Run after a message is deleted (issue 25: its pins, reactions and mention rows go away),
#: with the deleted message and who deleted it (None: the admin API).
DeleteHook = Callable[[Message, Identity | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Draft:
    """A message as its sender asks to post it (:meth:`ChatService.post`): the one list of
    what a post takes; the service gives it an id and a time."""

    room: str
    author: Identity
    text: str
    #: The sender's retry key: a second post with it is answered with the first message.
    client_msg_id: str | None = None
    #: ``"user"``, or ``"system"`` (the admin API; never screened for spam).
    kind: str = "user"
    reply_to: ReplyRef | None = None
    mentions: tuple[str, ...] = ()
    tickers: tuple[str, ...] = ()
    sentiment: str | None = None


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
        spam: SpamFilter | None = None,
        room_log: RoomLog | None = None,
        host: str = "",
        present: Callable[[str], bool] | None = None,
    ) -> None:
        """``room_log``: cluster mode, the events log every room event goes through; ``host``
        names this process in its records (its own sender's socket is skipped on delivery);
        ``present(room)``: whether a socket of this replica is in ``room`` (given, the
        events log's records of public rooms nobody here is in are not delivered: nothing
        to encode them for)."""
        self._present = present
        self._store = store
        self._spam = spam
        self._delete_hooks: list[DeleteHook] = []
        self._audience = audience
        self._emitter = emitter
        self._metrics = metrics
        self._limits = limits
        self._ids = ids or MessageIdGenerator(clock)
        self._clock = clock
        self._epoch: str | None = None
        self._log = room_log
        self._streams: RoomStreams | None = None
        self._history: HistoryWriter | None = None
        if room_log is not None:
            self._streams = RoomStreams(
                self._deliver_here,
                self._record_wire,
                host or "chatsvc",
                audible=None if present is None else self._audible,
            )
            room_log.on_record(self._streams.apply)
            self._history = HistoryWriter(store, self._metrics)
            room_log.on_history(self._history.write, settled=store.ping)
            room_log.on_release(self._streams.release)
        self._reads = StreamReads(store, metrics, limits, self._streams, self.epoch)

    @property
    def store(self) -> RoomDirectory:
        """The history store (the admin API reads rooms from it)."""
        return self._store

    @property
    def message_store(self) -> MessageStore:
        """The whole store (chatsvc.chat.threads reads and writes replies in it)."""
        return self._store

    async def get(self, room: str, message_id: str, *, field: str) -> Message | None:
        """One message; a malformed id is the client's ``invalid_payload`` naming ``field``.
        Cluster mode: one the history writer has not written yet comes from the tail."""
        with client_id(field):
            async with self._metrics.timed_store("get"):
                found = await self._store.get(room, message_id)
        if found is None and self._streams is not None:
            found = self._streams.find(room, message_id)
        return found

    async def log_and_deliver(
        self, kind: str, event: str, room: str, message_id: str, wire: dict[str, Any]
    ) -> None:
        """Log a room event of ``kind`` about ``message_id`` in the room's stream (it gets an
        ``event_id`` and a ``pos``) and deliver it live as ``event``. Cluster mode: through
        the events log (``BusUnavailable`` when it cannot take it; nothing was delivered)."""
        if self._log is not None:
            await self._append_event(kind, event, room, message_id, wire)
            return
        payload = await self._record(kind, room, message_id, wire)
        await self._deliver(event, payload, room)

    @property
    def changes(self) -> ChangeWindow | None:
        """Cluster mode: the reaction and pin states the stream set (chatsvc.chat.changes);
        None in the embedded default, where the store is the log."""
        return None if self._streams is None else self._streams.changes

    def recent(self, room: str, message_id: str) -> Message | None:
        """Cluster mode: a message of ``room`` still in this replica's tail (the store may be
        down); None in the embedded default."""
        return None if self._streams is None else self._streams.find(room, message_id)

    async def log_change(
        self, kind: str, live: str, room: str, message_id: str, wire: dict[str, Any], change: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Cluster mode: log a reaction or pin ``change`` (its row is written from the log);
        the payload as delivered here and whether it changed anything (False: a repeat,
        delivered nowhere). ``BusUnavailable`` when the log cannot take it."""
        applied = await self._append_event(kind, live, room, message_id, wire, change)
        assert isinstance(applied.record, RoomEvent)
        return self._record_wire(applied.record, live), not applied.duplicate

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
        """The store's stream epoch (read once: it changes only with a new database); in
        cluster mode with the events log's partition count appended (``k<n>``): a changed
        count maps rooms to other partitions, whose offsets old positions know nothing of."""
        if self._epoch is None:
            async with self._metrics.timed_store("epoch"):
                epoch = await self._store.stream_epoch()
            if self._log is not None:
                epoch = f"{epoch[:24]}k{self._log.partitions}"
            self._epoch = epoch
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
        here: bool = False,
        targets: list[str] | None = None,
    ) -> None:
        """Fan out (``here``: to this replica's sockets only; ``targets``: the audience the
        sender resolved); a bus failure is counted and logged, never surfaced: the message
        is already stored, or (``volatile``) is not worth keeping and is dropped."""
        try:
            # A private or direct room's events also reach its members' sockets that never
            # joined it: one emit to the room and their user rooms (each socket once). As
            # _target, without a coroutine per message for public rooms.
            target: str | list[str] = targets or (
                room if self._audience is None or not members_only(room) else await self._audience(room)
            )
            await self._emitter.emit(event, data, room=target, skip_sid=skip_sid, ignore_queue=here)
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

    async def post(self, draft: Draft, *, skip_sid: str | None = None) -> tuple[Message, bool]:
        """Store a message (idempotently) then deliver it; return it and whether it is new."""
        stored, is_new, _ = await self.post_with_wire(draft, skip_sid=skip_sid)
        return stored, is_new

    async def post_with_wire(
        self, draft: Draft, *, skip_sid: str | None = None
    ) -> tuple[Message, bool, dict[str, Any]]:
        """:meth:`post`, and the message's wire form (what :meth:`wire` gives): the one dict
        the room was sent, which the sender's ack carries too (built once per message).
        ``skip_sid``: the sender's socket, which its ack answers instead."""
        room, author, text = draft.room, draft.author, draft.text
        created = int(self._clock() * 1000)  # _now_ms, without a call per message
        message_id = self._ids.new()  # next to created: the id's time is the message's
        if self._spam is not None and draft.kind == "user":  # issue 25: may refuse, or mask the text
            text = await self._spam.screen(
                room,
                author,
                text,
                message_id=message_id,
                mentions=len(draft.mentions),
                client_msg_id=draft.client_msg_id,
            )
        message = Message(
            id=message_id,
            room=room,
            user_id=author.user_id,
            user_name=author.name,
            text=text,
            created_at_ms=created,
            client_msg_id=draft.client_msg_id,
            kind=draft.kind,
            reply_to=draft.reply_to,
            mentions=draft.mentions,
            tickers=draft.tickers,
            sentiment=draft.sentiment,
        )
        if self._log is not None:
            stored, is_new = await self._append_message(message, skip_sid)
            return stored, is_new, message_wire(stored, self._epoch)
        async with self._metrics.timed_store("append"):
            stored, is_new = await self._store.append(message)
        epoch = self._epoch if self._epoch is not None else await self.epoch()
        wire = message_wire(stored, epoch)
        if is_new:
            self._metrics.messages_in.inc()
            # Delivery only reads (encodes) the dict: the ack may share it.
            await self._deliver("message", wire, room, skip_sid)
            self._metrics.messages_out.inc()
        return stored, is_new, wire

    async def typing(self, room: str, user: Identity, typing: bool, *, skip_sid: str | None) -> None:
        """Tell the room ``user`` is (not) typing: volatile, never stored, best effort (a
        bus failure is counted in ``chatsvc_bus_errors_total{op="emit"}`` and dropped)."""
        data = {"room": room, "user": user.public(), "typing": typing}
        await self._deliver("typing", data, room, skip_sid, volatile=True)

    async def history(self, room: str, before: str | None, limit: int) -> HistoryPage:
        """One page, newest first (chatsvc.chat.catchup)."""
        return await self._reads.history(room, before, limit)

    async def catch_up(self, room: str, since: str) -> tuple[list[Message], bool]:
        """Messages after id ``since``, with the overlap before it (chatsvc.chat.catchup)."""
        return await self._reads.catch_up(room, since)

    async def catch_up_from(self, room: str, epoch: str, pos: int) -> CatchUp:
        """Everything after position ``pos`` of ``epoch``, or a reset (chatsvc.chat.catchup)."""
        return await self._reads.catch_up_from(room, epoch, pos)

    async def stream_after(self, room: str, pos: int, limit: int) -> StreamSlice:
        """``room``'s records after ``pos`` in stream order (chatsvc.chat.catchup)."""
        return await self._reads.stream_after(room, pos, limit)

    async def stream_head(self, room: str) -> int:
        """Where ``room``'s stream is for this replica's sockets (chatsvc.chat.catchup)."""
        return await self._reads.stream_head(room)

    async def _editable(
        self, room: str, message_id: str, actor: Identity | None, *, moderator: bool = False
    ) -> Message:
        """The message ``actor`` may change (``None``: the admin API may change any)."""
        with client_id("id"):
            async with self._metrics.timed_store("get"):
                message = await self._store.get(room, message_id)
        if message is None and self._streams is not None:
            # Cluster mode: sent a moment ago, not written to history yet.
            message = self._streams.find(room, message_id)
        if message is None or message.deleted:
            raise NotFound(f"no message {message_id} in {room}")
        if actor is not None and message.user_id != actor.user_id and not actor.is_admin and not moderator:
            raise Forbidden("only the author or an admin may change a message")
        return message

    async def edit(
        self,
        room: str,
        message_id: str,
        text: str,
        actor: Identity,
        *,
        mentions: tuple[str, ...] | None = None,
        tickers: tuple[str, ...] | None = None,
    ) -> Message:
        """Change a message's text (author or admin), with ``mentions`` its mentions (issue 25:
        chatsvc.chat.edits) and with ``tickers`` its cashtags, and tell the room."""
        current = await self._editable(room, message_id, actor)
        if self._spam is not None:  # issue 25: the content rules apply to edits too
            text = await self._spam.screen(
                room, actor, text, message_id=message_id, mentions=len(mentions or ()), edit=True
            )
        if self._log is not None:  # the history writer applies the change from the log
            at = self._now_ms()
            updated = replace(current, text=text, edited_at_ms=at)
            change: dict[str, Any] = {"text": text, "at_ms": at}
            if tickers is not None:
                updated = replace(updated, tickers=tickers)
                change["tickers"] = list(tickers)
            if mentions is not None and mentions != current.mentions:
                updated = replace(updated, mentions=mentions)
                change["mentions"] = list(mentions)
            await self._append_event(
                "edited", "message_edited", room, message_id, message_wire(updated), change
            )
            return updated
        with client_id("id"):
            async with self._metrics.timed_store("edit"):
                updated = await self._store.edit(room, message_id, text, self._now_ms(), tickers=tickers)
                if mentions is not None and mentions != updated.mentions:
                    await self._store.set_mentions(room, message_id, mentions)
                    updated = replace(updated, mentions=mentions)
        # Without the message's own position: the event is delivered at its own.
        await self.log_and_deliver("edited", "message_edited", room, message_id, message_wire(updated))
        return updated

    async def _record(self, kind: str, room: str, message_id: str, wire: dict[str, Any]) -> dict[str, Any]:
        """Log an edit/delete in the room's event log; return the payload with its ``event_id``.

        The id is minted like a message id, so a reconnecting client's replay merges messages
        and events in one order (chatsvc.chat.recovery_pos). The change itself is already stored:
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
        if self._log is not None:  # the history writer applies the change from the log
            current = await self._editable(room, message_id, actor, moderator=moderator)
            wire = {"id": message_id, "room": room, "deleted_by": actor.user_id if actor else "admin"}
            change = {"at_ms": self._now_ms()}
            await self._append_event("deleted", "message_deleted", room, message_id, wire, change)
            deleted = replace(current, text="", deleted=True)
            await self._after_delete(deleted, actor)
            return deleted
        if actor is not None:
            await self._editable(room, message_id, actor, moderator=moderator)
        with client_id("id"):
            async with self._metrics.timed_store("delete"):
                deleted = await self._store.delete(room, message_id, self._now_ms())
        wire = {"id": message_id, "room": room, "deleted_by": actor.user_id if actor else "admin"}
        await self.log_and_deliver("deleted", "message_deleted", room, message_id, wire)
        await self._after_delete(deleted, actor)
        return deleted

    def on_delete(self, hook: DeleteHook) -> None:
        """Run ``hook`` after every delete (chatsvc.chat.edits registers the issue-25 cleanup)."""
        self._delete_hooks.append(hook)

    async def _after_delete(self, deleted: Message, actor: Identity | None) -> None:
        """The delete happened: a hook's store failure is logged, never the caller's error."""
        for hook in self._delete_hooks:
            try:
                await hook(deleted, actor)
            except ChatError as exc:
                log.warning("cleanup after deleting %s in %s failed (%s)", deleted.id, deleted.room, exc.code)

    async def mark_read(self, room: str, reader: Identity, message_id: str, *, skip_sid: str | None) -> None:
        """Store the read marker, then tell the room."""
        with client_id("message_id"):
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

    # -- cluster mode: the events log is the room stream (issue 21 phase 2) -----------------

    async def start_streams(self) -> None:
        """Cluster mode: connect the events log, learn the epoch, then apply records."""
        if self._log is None or self._streams is None:
            return
        await self._log.start()
        await self.epoch()
        self._streams.ready.set()

    async def check_streams(self) -> None:
        """Readiness of the events log (cluster mode): ``BusUnavailable`` while it is down."""
        if self._log is not None:
            await self._log.check()

    async def aclose_streams(self) -> None:
        """Stop reading the events log and close it."""
        if self._log is not None:
            await self._log.aclose()

    def on_message_written(self, hook: Callable[[Message, list[str] | None], Awaitable[object]]) -> bool:
        """Cluster mode: run ``hook`` on every message the history writer writes, with the
        members its record was addressed to (issue 24's notifications); False in the
        embedded default (no writer)."""
        if self._history is None:
            return False
        self._history.on_message = hook
        return True

    def watch_stream(self, observer: Observer) -> None:
        """Cluster mode: see every message and event the room stream applies here (issue
        25's cluster-wide slow mode and duplicate rule); nothing to see in the embedded
        default."""
        if self._streams is not None:
            self._streams.watch(observer)

    async def _append_message(self, message: Message, skip_sid: str | None) -> tuple[Message, bool]:
        """Append ``message`` to the events log and wait for this replica to apply it; the
        message at its position and whether it is new (a retry is acked the original)."""
        assert self._log is not None and self._streams is not None
        streams = self._streams
        if message.client_msg_id is not None:
            original = streams.original(message.room, message.user_id, message.client_msg_id)
            if original is not None:  # a retry whose first attempt landed: no second record
                return original, False
        body = message_body(message, skip_sid=skip_sid, host=streams.host)
        applied = await self._append_and_wait(
            message.room, message.id, await self._addressed(body, message.room)
        )
        if applied.duplicate:
            assert isinstance(applied.record, Message)
            return applied.record, False
        stored = applied.record
        assert isinstance(stored, Message)
        self._metrics.messages_in.inc()
        self._metrics.messages_out.inc()
        # Durable and delivered: history is written from the log (chatsvc.chat.history_writer).
        return stored, True

    async def _append_event(
        self,
        kind: str,
        live: str,
        room: str,
        message_id: str,
        wire: dict[str, Any],
        change: dict[str, Any] | None = None,
    ) -> Applied:
        """Append a room event to the events log; every replica delivers it as ``live`` and
        the history writer stores it (applying ``change`` to the message first)."""
        event_id = self._ids.new()
        event = RoomEvent(event_id, room, kind, message_id, {**wire, "event_id": event_id})
        return await self._append_and_wait(
            room, event.id, await self._addressed(event_body(event, live, change), room)
        )

    async def _append_and_wait(self, room: str, record_id: str, body: dict[str, Any]) -> Applied:
        assert self._log is not None and self._streams is not None
        await self._log.follow(room)  # interest-based routing: this replica must read it
        applied = self._streams.expect(record_id)
        try:
            await self._log.append(room, body)
            try:
                async with asyncio.timeout(APPLY_TIMEOUT_SECONDS):
                    return await applied
            except TimeoutError:
                raise BusUnavailable("the room stream did not deliver the event in time; retry") from None
        finally:
            self._streams.forget(record_id)

    def _audible(self, room: str, targets: list[str] | None) -> bool:
        """Whether a record of ``room`` read from the events log may reach a socket here: a
        public room's only if one is in it; a private room's always (its audience is its
        members' user rooms: resolving them to skip the delivery would cost as much)."""
        if targets or members_only(room) or self._present is None or self._present(room):
            return True
        self._metrics.events_unheard.inc()
        return False

    async def _deliver_here(
        self, event: str, data: dict[str, Any], room: str, skip_sid: str | None, targets: list[str] | None
    ) -> None:
        await self._deliver(event, data, room, skip_sid, here=True, targets=targets)

    async def _target(self, room: str) -> str | list[str]:
        """Where ``room``'s events go: the room, or a private room's audience."""
        return await self._audience(room) if self._audience is not None and members_only(room) else room

    async def _addressed(self, body: dict[str, Any], room: str) -> dict[str, Any]:
        """``body`` with the audience resolved once, here (every replica delivers to it)."""
        target = await self._target(room)
        return body if isinstance(target, str) else {**body, "to": target}

    def _record_wire(self, record: Message | RoomEvent, live: str) -> dict[str, Any]:
        """What a record read from the events log is delivered as, at its position."""
        epoch = self._epoch
        if isinstance(record, Message):
            return message_wire(record, epoch)
        if epoch is None or record.pos is None:
            return record.payload
        return {**record.payload, "pos": position(epoch, record.pos)}
