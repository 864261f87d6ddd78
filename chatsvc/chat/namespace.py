"""The Socket.IO namespace ``/``: authentication at connect, then room events.

Every client event answers through its ack with ``{"ok": true, ...}`` or
``{"ok": false, "error": {"code", "message"}}``. This module is the one place where the
project's errors become Socket.IO wire forms (``connect_error`` data and error acks).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from chatsvc import logs
from chatsvc.auth.handshake import client_ip, proxy_networks, token_from_handshake
from chatsvc.auth.identity import Identity
from chatsvc.auth.jwt import TokenVerifier
from chatsvc.chat import conversation_events, payloads
from chatsvc.chat.conversations import Conversations, user_room
from chatsvc.chat.edits import Edits
from chatsvc.chat.membership import Membership
from chatsvc.chat.mentions import Mentions, mentions
from chatsvc.chat.message_events import MessageEvents
from chatsvc.chat.modes import RoomModes
from chatsvc.chat.pins import Pins
from chatsvc.chat.presence import PresenceRegistry
from chatsvc.chat.ratelimit import TokenBucket
from chatsvc.chat.reactions import Reactions
from chatsvc.chat.recovery_base import NoRecovery, SessionRecovery, requested
from chatsvc.chat.service import ChatService
from chatsvc.chat.threads import Threads
from chatsvc.chat.wire import event_wire, iso_ms, message_wire
from chatsvc.errors import (
    ChatError,
    Forbidden,
    Internal,
    InvalidPayload,
    NotInRoom,
    RateLimited,
    ShuttingDown,
    TokenExpired,
    TooManyConnections,
)
from chatsvc.metrics import Metrics
from chatsvc.model.rooms import members_only
from chatsvc.settings import Limits, ModeSettings
from chatsvc.transport.sioserver import LIFECYCLE_EVENTS, RESERVED_EVENTS, RecoveringServer, in_lifecycle
from chatsvc.transport.timers import Expiries

log = logging.getLogger(__name__)

Ack = dict[str, Any]
#: Events on a private or direct room that only its members may send (issue 24).
MEMBERS_ONLY_EVENTS = frozenset(
    {
        "join",
        "leave",
        "message",
        "typing",
        "history",
        "read",
        "edit",
        "delete",
        "thread",
        "react",
        "unreact",
        "pin",
        "unpin",
        "pins",
        "set_slow_mode",
        "room_info",
    }
)
#: Bound on flushing a session's last packets and closing its Engine.IO transport.
TRANSPORT_CLOSE_SECONDS = 5.0
Handler = Callable[[str, "Connection", dict[str, Any]], Awaitable[Ack]]


def error_ack(error: ChatError) -> Ack:
    """The wire form of a refused event."""
    return {"ok": False, "error": error.to_wire()}


def connect_refusal(error: ChatError) -> socketio.exceptions.ConnectionRefusedError:
    """The wire form of a refused connection: ``connect_error`` with data ``{code, message}``."""
    return socketio.exceptions.ConnectionRefusedError(error.message, error.to_wire())


@dataclass(slots=True)
class Connection:
    """Per-socket state."""

    identity: Identity
    bucket: TokenBucket
    rooms: set[str] = field(default_factory=set)
    #: The client IP it is counted under (CHATSVC_MAX_CONNECTIONS_PER_IP).
    ip: str = ""


class ChatNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Handlers for the chat protocol on namespace ``/``."""

    def __init__(
        self,
        service: ChatService,
        verifier: TokenVerifier,
        presence: PresenceRegistry,
        limits: Limits,
        metrics: Metrics,
        *,
        is_draining: Callable[[], bool],
        is_banned: Callable[[str], Awaitable[bool]] | None = None,
        is_muted: Callable[[str, str], Awaitable[bool]] | None = None,
        recovery: SessionRecovery | None = None,
        trusted_proxies: tuple[str, ...] = (),
        namespace: str = "/",
        conversations: Conversations | None = None,
        modes: ModeSettings | None = None,
    ) -> None:
        super().__init__(namespace)
        self._service = service
        self._verifier = verifier
        self._limits = limits
        self._metrics = metrics
        self._is_draining = is_draining
        self._is_banned = is_banned
        self._is_muted = is_muted
        self._recovery: SessionRecovery = (
            recovery if recovery is not None and recovery.enabled else NoRecovery()
        )
        self._membership = Membership(
            self, presence, self._recovery, metrics, rooms_per_connection=limits.rooms_per_connection
        )
        self._connections: dict[str, Connection] = {}
        self._trusted_proxies = proxy_networks(trusted_proxies)
        # Sockets per user id and per client IP on this replica (the connection bounds).
        self._per_user: Counter[str] = Counter()
        self._per_ip: Counter[str] = Counter()
        self._background: set[asyncio.Task[None]] = set()
        self._expiries = Expiries(self._expire_soon)  # token expiry, one loop timer for all
        self._handlers: dict[str, Handler] = {
            "join": self._join,
            "leave": self._leave,
            "message": self._message,
            "typing": self._typing,
            "history": self._history,
            "read": self._read,
            "edit": self._edit,
            "delete": self._delete,
            "refresh": self._refresh,
        }
        self._threads = Threads(service, service.message_store)
        self._mentions = Mentions(service, service.message_store)
        self._edits = Edits(service, service.message_store, self._mentions, limits)
        moderates = conversations.moderates if conversations is not None else None
        self._messages = MessageEvents(
            service,
            limits,
            threads=self._threads,
            reactions=Reactions(service, service.message_store, limits.reaction_kinds),
            pins=Pins(service, service.message_store, limits.pins_per_room, moderates),
            joined=self._member,
            allowed=self._allowed,
            hidden_from=self._hidden_from,
            is_muted=is_muted,
        )
        self._handlers.update(self._messages.handlers())
        self.modes = RoomModes(
            service,
            modes or ModeSettings(),
            online=presence.online,
            moderates=moderates,
            pins_max=limits.pins_per_room,
        )
        self._handlers.update(self.modes.handlers(self._allowed))
        self._conversations = conversations
        if conversations is not None:
            self._handlers.update(conversation_events.handlers(conversations, limits))

    # -- introspection used by the app and the admin API ---------------------------------

    @property
    def connection_count(self) -> int:
        """Sockets connected to this process."""
        return len(self._connections)

    def sids_of(self, user_id: str) -> list[str]:
        """Local sockets of a user."""
        return [sid for sid, c in self._connections.items() if c.identity.user_id == user_id]

    def has_sockets(self, user_id: str) -> bool:
        """Whether ``user_id`` has a socket on this replica (no scan: the connection counter)."""
        return self._per_user.get(user_id, 0) > 0

    def sids_in(self, room: str, user_id: str | None = None) -> list[str]:
        """Local sockets in a room, optionally of one user."""
        return [
            sid
            for sid, c in self._connections.items()
            if room in c.rooms and (user_id is None or c.identity.user_id == user_id)
        ]

    # -- moderation of local sockets (the admin API reaches every replica through these) --

    async def disconnect_user(self, user_id: str, reason: ChatError) -> int:
        """End every local socket of ``user_id`` (``session_end``, no reconnect); return how many."""
        sids = self.sids_of(user_id)
        await asyncio.gather(*(self.end_session(sid, reason, reconnect=False) for sid in sids))
        return len(sids)

    async def kick(self, room: str, user_id: str, reason: str) -> int:
        """Take ``user_id``'s local sockets out of ``room``: each gets ``kicked {room, reason}``
        and the room a ``presence`` leave. Return how many sockets were in the room."""
        sids = self.sids_in(room, user_id)
        for sid in sids:
            conn = self._connections.get(sid)
            if conn is not None:
                await self._kick_sid(sid, conn, room, reason)
        return len(sids)

    async def _kick_sid(self, sid: str, conn: Connection, room: str, reason: str) -> None:
        """Take one socket out of ``room``: ``kicked {room, reason}`` and a presence leave."""
        if room in conn.rooms:
            await self._membership.leave(sid, conn, room, then=self._tell_kicked(sid, room, reason))

    def _tell_kicked(self, sid: str, room: str, reason: str) -> Callable[[], Awaitable[None]]:
        async def tell() -> None:
            try:
                await self.server.emit(
                    "kicked",
                    {"room": room, "reason": reason},
                    to=sid,
                    namespace=self.namespace,
                    ignore_queue=True,
                )
            except Exception:
                log.warning("could not tell %s it was kicked from %s", sid, room)

        return tell

    # -- connect / disconnect -------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """Authenticate; refuse with ``connect_error`` ``{code, message}``."""
        try:
            if self._is_draining():
                raise ShuttingDown()
            identity = self._verifier.verify(token_from_handshake(environ, auth))
            if self._is_banned is not None and await self._is_banned(identity.user_id):
                raise Forbidden("you are banned")
            ip = client_ip(environ, self._trusted_proxies)
            self._check_bounds(identity.user_id, ip)  # no await from here to the registration
        except ChatError as exc:
            self._metrics.connect_rejections.labels(exc.code).inc()
            raise connect_refusal(exc) from None
        except Exception:
            log.exception("unexpected error authenticating a connection")
            self._metrics.connect_rejections.labels("internal").inc()
            raise connect_refusal(Internal()) from None
        conn = Connection(identity, TokenBucket(self._limits.messages_per_second, self._limits.burst), ip=ip)
        self._schedule_expiry(sid, conn)
        self._membership.resume(sid, conn, requested(auth).opted_in)
        self._connections[sid] = conn
        self._count(conn, 1)
        self._metrics.connections.set(len(self._connections))
        if self._conversations is not None:
            # Every socket of a user is in its user room: private and direct rooms'
            # announcements reach it without a join (chatsvc.chat.conversations).
            try:
                await self.enter_room(sid, user_room(identity.user_id))
            except ValueError:
                # The manager does not know the sid: this handler was called outside
                # python-socketio's CONNECT path, which registers it first.
                log.debug("a socket not registered with the manager gets no user room")
            if self._conversations.notifier is not None:  # offline detection, cluster-wide
                await self._conversations.notifier.connected(identity, sid)
            blocks = self._conversations.blocks
            if blocks is not None:
                await blocks.attach(sid, identity.user_id)
                if sid not in self._connections:  # it disconnected while its list loaded
                    blocks.detach(sid, identity.user_id)

    def _check_bounds(self, user_id: str, ip: str) -> None:
        """Refuse a socket past CHATSVC_MAX_CONNECTIONS_PER_USER / _PER_IP (this replica)."""
        limits = self._limits
        if self._per_user[user_id] >= limits.connections_per_user:
            raise TooManyConnections(f"at most {limits.connections_per_user} connections per user")
        if limits.connections_per_ip and self._per_ip[ip] >= limits.connections_per_ip:
            raise TooManyConnections(f"at most {limits.connections_per_ip} connections per address")

    def _count(self, conn: Connection, delta: int) -> None:
        for counter, key in ((self._per_user, conn.identity.user_id), (self._per_ip, conn.ip)):
            counter[key] += delta
            if counter[key] <= 0:
                del counter[key]  # no entry per user or address ever seen

    def close(self) -> None:
        """At shutdown, after the server: no expiry timer outlives the app."""
        self._expiries.close()

    def _schedule_expiry(self, sid: str, conn: Connection) -> None:
        self._expiries.set(sid, conn.identity.expires_at)

    # -- connection state recovery (chatsvc.transport.sioserver.ConnectHooks) -------------------

    async def prepare_recovery(self, environ: dict[str, Any], auth: Any) -> str | None:
        """Claim the session a reconnecting client names, for the same user with a valid token."""
        recovery = self._recovery
        if not recovery.enabled or self._is_draining():
            return None
        request = requested(auth)
        if request.pid is None:
            return None
        try:
            identity = self._verifier.verify(token_from_handshake(environ, auth))
        except ChatError:
            return None  # on_connect refuses it, with the reason
        stale = recovery.local_sid_of(request.pid, identity.user_id)
        if stale is not None and isinstance(self.server, RecoveringServer):
            # The client is back on a new connection while its old one looks alive here
            # (a silent network loss): end the old one now, which keeps its session.
            log.info("session %s: its client reconnected; dropping the old connection", stale)
            await self.server.drop_transport(stale)
        sid = await recovery.prepare(request, identity.user_id, identity.may_join)
        if sid is None:
            self._metrics.recoveries.labels("fresh").inc()
        return sid

    def abandon_recovery(self, sid: str) -> None:
        self._recovery.abandon(sid)

    def pid_for(self, sid: str) -> str | None:
        return self._recovery.pid_for(sid)

    async def after_connect(self, sid: str) -> None:
        """Restore a recovered socket: replay what it missed, rejoin its rooms (announced)."""
        conn = self._connections.get(sid)
        if conn is None or not isinstance(self.server, RecoveringServer):
            return
        server = self.server

        async def send(event: str, payload: dict[str, Any], offset: str) -> None:
            await server.send_event(sid, event, [payload, offset])

        await self._membership.restore(sid, conn, send, lambda: sid in self._connections)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        """Leave every room (announcing it) and forget the socket; a dropped (not closed)
        opted-in socket's session is kept for recovery."""
        conn = self._connections.pop(sid, None)
        if conn is not None:
            self._count(conn, -1)
        self._metrics.connections.set(len(self._connections))
        if conn is not None:
            self._expiries.discard(sid)
            if self._conversations is not None and self._conversations.blocks is not None:
                self._conversations.blocks.detach(sid, conn.identity.user_id)
            if self._conversations is not None and self._conversations.notifier is not None:
                await self._conversations.notifier.disconnected(conn.identity, sid)
        await self._membership.drop(sid, conn, reason)

    def _expire_soon(self, sid: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self.end_session(
                sid, TokenExpired("token expired; reconnect with a fresh token"), reconnect=False
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def end_session(self, sid: str, reason: ChatError, *, reconnect: bool) -> None:
        """Tell a local socket why, then disconnect it.

        With ``reconnect`` (drain) only the Engine.IO transport is closed, without a
        Socket.IO DISCONNECT: socket.io-client then reconnects by itself (it never does
        after "io server disconnect"), and an opted-in socket recovers its session.
        """
        if sid not in self._connections:
            return
        if reconnect and isinstance(self.server, RecoveringServer):
            try:
                await self.server.emit(
                    "session_end",
                    {**reason.to_wire(), "reconnect": True},
                    to=sid,
                    namespace=self.namespace,
                    ignore_queue=True,
                )
                self._recovery.mark_resumable(sid)
                await self.server.close_transport(sid, TRANSPORT_CLOSE_SECONDS)
            except TimeoutError:
                log.info("transport of session %s did not close in time", sid)
            except Exception:
                log.exception("could not end session %s", sid)
            return
        try:
            eio_sid = self.server.manager.eio_sid_from_sid(sid, self.namespace)
            transport = self.server.transport(sid, self.namespace)
            await self.server.emit(
                "session_end",
                {**reason.to_wire(), "reconnect": reconnect},
                to=sid,
                namespace=self.namespace,
                ignore_queue=True,
            )
            await self.server.disconnect(sid, namespace=self.namespace, ignore_queue=True)
            if eio_sid is not None and transport == "websocket" and self.namespace == "/":
                # Socket.IO's disconnect leaves the Engine.IO transport for the client to
                # close; close a websocket ourselves so one that ignores us cannot hold a
                # draining server. Not over polling: socket.io-client handles a CLOSE in
                # the same poll response before session_end, and would lose session_end.
                async with asyncio.timeout(TRANSPORT_CLOSE_SECONDS):
                    await self.server.close_engineio(eio_sid)
        except TimeoutError:
            log.info("transport of session %s did not close in time", sid)
        except Exception:
            log.exception("could not end session %s", sid)

    async def drain(self, within: float) -> None:
        """On shutdown: tell every local client to reconnect elsewhere, then disconnect them."""
        sids = list(self._connections)
        if not sids:
            return
        log.info("draining %d connection(s)", len(sids))
        reason = ShuttingDown("server is restarting; reconnect")
        try:
            async with asyncio.timeout(within):
                await asyncio.gather(*(self.end_session(sid, reason, reconnect=True) for sid in sids))
        except TimeoutError:
            left = len(self._connections)
            if left:
                log.warning("drain timed out with %d connection(s) left", left)
            else:
                # Every session ended; only websocket closes were still in flight.
                log.info("drain: every session ended; transports still closing are cut at the deadline")

    # -- event dispatch -------------------------------------------------------------------

    @property
    def client_events(self) -> frozenset[str]:
        """The events a client may send: the dispatch table, nothing else."""
        return frozenset(self._handlers)

    def refuse_event(self, sid: str | None, event: str | None) -> Ack:
        """The ack of an event that is not a client event (counted as ``invalid_payload``).
        It costs the socket's rate bucket like any event, so a flood of them is bounded too."""
        conn = self._connections.get(sid) if sid is not None else None
        if conn is not None and not conn.bucket.allow():
            self._metrics.errors.labels(RateLimited.code).inc()
            return error_ack(RateLimited())
        self._metrics.errors.labels(InvalidPayload.code).inc()
        what = (
            f"unknown event {event[:32]!r}"
            if event is not None
            else "an event is a list starting with its name"
        )
        return error_ack(InvalidPayload(what))

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Route client events through one wrapper: rate limit, parse, map errors to acks.

        Lifecycle handlers run only when python-socketio's lifecycle path calls them
        (:func:`~chatsvc.transport.sioserver.in_lifecycle`), never for a client's event of
        that name; RecoveringServer refuses those before they get here, this is the
        second lock."""
        if event in RESERVED_EVENTS:
            if event in LIFECYCLE_EVENTS and in_lifecycle():
                if event == "connect":  # a JWKS key this token names may need fetching first
                    await self._verifier.prepare(args[1], args[2] if len(args) > 2 else None)
                return await super().trigger_event(event, *args)
            return self.refuse_event(args[0] if args and isinstance(args[0], str) else None, event)
        sid = args[0]
        data = args[1] if len(args) > 1 else None
        conn = self._connections.get(sid)
        if conn is None:
            return error_ack(NotInRoom("not connected"))
        logs.bind(sid, conn.identity.user_id, data)
        try:
            if not conn.bucket.allow():
                raise RateLimited()
            handler = self._handlers.get(event)
            if handler is None:
                raise InvalidPayload(f"unknown event {event[:32]!r}")
            payload = payloads.as_object(data, self._limits.http_buffer_bytes)
            await self._check_access(event, conn, payload)
            return await handler(sid, conn, payload)
        except ChatError as exc:
            self._metrics.errors.labels(exc.code).inc()
            return error_ack(exc)
        except Exception:
            log.exception("unhandled error in event %r", event[:32])
            self._metrics.errors.labels("internal").inc()
            return error_ack(Internal())

    # -- events ---------------------------------------------------------------------------

    async def _check_access(self, event: str, conn: Connection, payload: dict[str, Any]) -> None:
        """Only members use a private or direct room (``forbidden`` otherwise, the same
        whether it exists or not). A socket in the room passed this check at ``join``, and
        a removed member's sockets are taken out of it on every replica: no store read for
        a joined socket's messages, none at all for public rooms."""
        if self._conversations is None or event not in MEMBERS_ONLY_EVENTS:
            return
        room = payload.get("room")
        if isinstance(room, str) and members_only(room) and room not in conn.rooms:
            await self._conversations.check(room, conn.identity.user_id)

    def _member(self, conn: Connection, payload: dict[str, Any]) -> str:
        room = payloads.room(payload)
        # A member uses its private and direct rooms without a join (the access check
        # before the handler let only members through).
        if room not in conn.rooms and not (self._conversations is not None and members_only(room)):
            raise NotInRoom(f"join {room} first")
        return room

    def _allowed(self, conn: Connection, payload: dict[str, Any]) -> str:
        room = payloads.room(payload)
        # Private and direct rooms: membership (checked before) is the permission.
        if not conn.identity.may_join(room) and not members_only(room):
            raise Forbidden(f"your token does not allow room {room}")
        return room

    async def _join(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        room = self._allowed(conn, payload)
        since = payloads.since(payload)
        # Subscribed before the gap is read, left again if reading it fails.
        async with self._membership.enter(sid, conn, room) as entered:
            ack: Ack = {"ok": True, "room": room}
            if isinstance(since, tuple):
                caught = await self._service.catch_up_from(room, *since)
                epoch = await self._service.epoch()
                shown = await self._messages.annotate(room, caught.messages, conn.identity.user_id)
                ack["messages"] = [message_wire(m, epoch) for m in shown]
                ack["events"] = [event_wire(e, epoch) for e in caught.events]
                ack["events"] += await self._threads.implied(room, caught.messages)  # cluster mode
                ack["has_more"] = caught.more
                ack["reset"] = caught.reset
                ack["pos"] = caught.last
            elif since is not None:
                missed, more = await self._service.catch_up(room, since)
                ack["messages"] = [self._service.wire(m) for m in missed]
                ack["has_more"] = more
            ack["unread"] = await self._service.unread(room, conn.identity)
            ack.update(await self.modes.join_info(room))
        ack["online"] = entered.online
        if (
            self._conversations is not None
            and self._conversations.directory is not None
            and not members_only(room)
        ):
            await self._conversations.directory.joined(conn.identity.user_id, room)
        return ack

    async def _leave(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        room = self._member(conn, payload)
        await self._membership.leave(sid, conn, room)
        return {"ok": True, "room": room}

    async def _message(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        room = self._member(conn, payload)
        text = payloads.text(payload, self._limits.message_bytes)
        client_msg_id = payloads.client_msg_id(payload)
        parent_id = payloads.message_id(payload, "reply_to", required=False)
        wanted = mentions(payload, self._limits.mentions_per_message)
        if self._is_muted is not None and await self._is_muted(room, conn.identity.user_id):
            raise Forbidden(f"you are muted in {room}")
        reply_to = None if parent_id is None else await self._threads.parent(room, parent_id)
        mentioned = await self._mentions.readable(room, conn.identity.user_id, wanted)
        market = await self.modes.admit(room, conn.identity, text, payload)
        message, created = await self._service.post(
            room,
            conn.identity,
            text,
            client_msg_id,
            skip_sid=sid,
            reply_to=reply_to,
            mentions=mentioned,
            tickers=market.tickers,
            sentiment=market.sentiment,
        )
        await self.modes.posted(message, created)
        await self._threads.replied(message, created=created)
        if created:
            await self._mentions.notify(message)
        self._recovery.posted(sid, message)  # never replayed to its sender
        if created and self._conversations is not None and self._conversations.notifier is not None:
            await self._conversations.notifier.posted(message)
        return {"ok": True, "message": self._service.wire(message), "duplicate": not created}

    async def _typing(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        room = self._member(conn, payload)
        typing = payloads.flag(payload, "typing")
        await self._service.typing(room, conn.identity, typing, skip_sid=sid)
        return {"ok": True}

    async def _history(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        room = self._allowed(conn, payload)
        before = payloads.message_id(payload, "before", required=False)
        limit = payloads.page_limit(payload, self._limits.history_page_default, self._limits.history_page_max)
        # Read together: whom the reader blocks may be a store read of its own.
        page, hidden = await asyncio.gather(
            self._service.history(room, before, limit), self._hidden_from(conn)
        )
        shown = await self._messages.annotate(
            room, [m for m in page.messages if m.user_id not in hidden], conn.identity.user_id
        )
        return {
            "ok": True,
            "room": room,
            "messages": [self._service.wire(m) for m in shown],
            "next_before": page.next_before,
        }

    async def _hidden_from(self, conn: Connection) -> frozenset[str]:
        """Whom the socket's user blocks: its history leaves them out (chatsvc.chat.blocks)."""
        if self._conversations is None or self._conversations.blocks is None:
            return frozenset()
        return await self._conversations.blocks.hidden_from(conn.identity.user_id)

    async def _read(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        room = self._member(conn, payload)
        message_id = payloads.message_id(payload, "message_id", required=True)
        assert message_id is not None
        await self._service.mark_read(room, conn.identity, message_id, skip_sid=sid)
        return {"ok": True}

    async def _edit(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        room = self._allowed(conn, payload)
        message_id = payloads.message_id(payload, "id", required=True)
        text = payloads.text(payload, self._limits.message_bytes)
        assert message_id is not None
        message = await self._edits.edit(
            room, message_id, text, conn.identity, payload, tickers=self.modes.tickers(text)
        )
        return {"ok": True, "message": self._service.wire(message)}

    async def _delete(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        room = self._allowed(conn, payload)
        message_id = payloads.message_id(payload, "id", required=True)
        assert message_id is not None
        moderator = self._conversations is not None and await self._conversations.moderates(
            room, conn.identity.user_id
        )
        await self._service.delete(room, message_id, conn.identity, moderator=moderator)
        return {"ok": True, "id": message_id}

    async def _refresh(self, sid: str, conn: Connection, payload: dict[str, Any]) -> Ack:
        """Swap in a new JWT for the same user; the expiry timer moves to its ``exp``."""
        raw = payload.get("token")
        if not isinstance(raw, str) or not raw.strip() or len(raw) > self._limits.http_buffer_bytes:
            raise InvalidPayload("token must be a JWT string")
        identity = self._verifier.verify(token_from_handshake({}, {"token": raw}))
        if identity.user_id != conn.identity.user_id:
            raise Forbidden("the new token is for another user")
        conn.identity = identity
        self._schedule_expiry(sid, conn)
        # The new token's rooms claim may be narrower: the socket keeps only what it allows.
        for room in sorted(r for r in conn.rooms if not identity.may_join(r) and not members_only(r)):
            await self._kick_sid(sid, conn, room, "your new token does not allow this room")
        expires = identity.expires_at
        return {"ok": True, "expires_at": iso_ms(int(expires * 1000)) if expires is not None else None}
