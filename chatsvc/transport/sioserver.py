"""The Socket.IO server with connection state recovery, declared events and per-connection
event workers (pinned: python-socketio 5.18.1, python-engineio 4.15.1, in
``chatsvc.transport.pins``; tests/transport/test_sioserver.py fails loudly if the internals
below change). The chat namespace talks to it through :class:`ConnectHooks` and the public
methods of :class:`RecoveringServer`.

socket.io-client v4 recovers a session like this (its ``lib/socket.ts``): the server's
CONNECT reply carries ``{sid, pid}``; the client remembers ``pid`` and the last string
argument of every event as its offset; on reconnect it sends CONNECT data
``{pid, offset, ...auth}`` and sets ``socket.recovered`` when the reply's ``pid`` equals
the one it sent. python-socketio answers CONNECT with ``{sid}`` only and always mints a
new sid, so this subclass changes these, each at a method python-socketio calls:

* ``_handle_connect`` (python-socketio's, wrapped): before it runs, the chat namespace may
  claim a stored session for the CONNECT data's ``pid`` (:class:`ConnectHooks`); the sid
  that ``manager.pre_connect`` then takes from ``eio.generate_id()`` is the session's old
  sid, through :class:`_EngineServer`. After it, the namespace restores the session (rooms,
  replay), strictly after the CONNECT reply is on the socket's queue.
* ``_handle_eio_message``: queued for the connection's worker, so Engine.IO control
  never waits behind events (:mod:`chatsvc.transport.events`); the worker then refuses
  binary packets (from the header, nothing buffered between frames) and counts and drops a
  client's garbage instead of raising it into python-engineio's ``logger.exception``
  (:meth:`RecoveringServer._process_eio_message`).
* ``_send_packet``: the CONNECT reply (``{"sid": ...}``) gets ``pid`` for opted-in sockets.
* :meth:`RecoveringServer.send_event` queues an event for one local socket without the
  manager (replays must not pass through the broadcast path's recovery hook), and
  :meth:`RecoveringServer.close_transport` ends a socket at the Engine.IO level only (no
  Socket.IO DISCONNECT, after which socket.io-client would not reconnect by itself);
  :meth:`RecoveringServer.drop_transport` ends one at once, as a network drop would.

It also guards client events (issue 22, item 1). python-socketio turns an EVENT packet
into ``_trigger_event(data[0], ...)``, the same call its lifecycle path makes with
``"connect"``/``"disconnect"``, so a client emitting ``disconnect`` ran the namespace's
disconnect handler. ``_handle_event`` (reached by the stock reader and by the lean
reader's fast path alike) now lets through only a non-empty list whose first element is
a declared client event of the namespace (:meth:`RecoveringServer.declare_events`), and
never one of socket.io's :data:`RESERVED_EVENTS`; anything else is answered through
the refusal callback's ack. ``_trigger_event`` marks the lifecycle calls
(:func:`in_lifecycle`) so a namespace can refuse lifecycle names from anywhere else.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from socketio import packet

from chatsvc.errors import InvalidPayload, SlowConsumer
from chatsvc.transport.bad_packets import DECODE_ERRORS
from chatsvc.transport.broadcast import DirectEmitMixin
from chatsvc.transport.engine import EngineIOServer
from chatsvc.transport.events import EventWorkers
from chatsvc.transport.fast_paths import FastPaths
from chatsvc.transport.http_state import slim_environ
from chatsvc.transport.polling import accept_polling_batches
from chatsvc.transport.socketio_packet import SocketIOPacket, packet_head

log = logging.getLogger(__name__)

NAMESPACE = "/"

#: Event names socket.io reserves for its lifecycle: never a client event.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
#: The ones python-socketio's own lifecycle path triggers on a namespace.
LIFECYCLE_EVENTS = frozenset({"connect", "disconnect"})

#: A refused client event: ``(sid or None, event or None)`` -> the ack's single argument.
Refusal = Callable[[str | None, str | None], Any]

_lifecycle: contextvars.ContextVar[bool] = contextvars.ContextVar("chatsvc_sio_lifecycle", default=False)


def in_lifecycle() -> bool:
    """True inside python-socketio's own ``connect``/``disconnect`` handler calls."""
    return _lifecycle.get()


#: BINARY_EVENT and BINARY_ACK, as the first character of an encoded Socket.IO packet.
_BINARY_TYPES = ("5", "6")


class ConnectHooks(Protocol):
    """What the chat namespace does around python-socketio's CONNECT handling."""

    async def prepare_recovery(self, environ: dict[str, Any], auth: Any) -> str | None:
        """Claim the session the CONNECT data names, if it may be recovered; return the
        sid to reuse for it (None: a fresh connect)."""

    def abandon_recovery(self, sid: str) -> None:
        """The claimed session for ``sid`` will not be restored (refused or sid taken)."""

    async def after_connect(self, sid: str) -> None:
        """The CONNECT reply for ``sid`` is queued: restore rooms and replay, if recovering."""

    def pid_for(self, sid: str) -> str | None:
        """The private session id to put in ``sid``'s CONNECT reply (None: not opted in)."""


class _EngineServer(EngineIOServer):
    """python-engineio's server, able to hand out one chosen id next (and, from
    :class:`EngineIOServer`, to write a pre-framed broadcast to idle websockets).

    ``socketio.base_manager.BaseManager.pre_connect`` names a new Socket.IO session with
    ``server.eio.generate_id()``. :meth:`RecoveringServer._handle_connect` sets the id and
    runs python-socketio's handler, which reaches ``pre_connect`` without suspending, so no
    other caller (Engine.IO handshakes call it too) can take the id in between.
    """

    next_id: str | None = None

    def generate_id(self) -> str:
        chosen, self.next_id = self.next_id, None
        return chosen if chosen is not None else str(super().generate_id())


class RecoveringServer(EventWorkers):
    """``socketio.AsyncServer`` that can restore sessions on namespace ``/``."""

    #: Fast path ``event-dispatch``: a client event goes to its namespace handler in one call.
    fast_dispatch = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hooks: ConnectHooks | None = None
        self._client_events: dict[str, tuple[frozenset[str], Refusal]] = {}
        self.eio.slow_consumer = self._end_slow_consumer

    def start_manager(self) -> None:
        """Start the client manager now rather than at the first connection (python-socketio
        starts it lazily), so a replica with no clients still hears the bus."""
        if not getattr(self, "manager_initialized", False):
            self.manager_initialized = True
            self.manager.initialize()

    def request_handler(self) -> Callable[[Any], Awaitable[Any]]:
        """The aiohttp handler of the Engine.IO route (set up after :func:`create_server`
        configured the server): python-engineio's ``handle_request`` itself, which is all
        python-socketio's ``AsyncServer.handle_request`` does (hash-pinned). A websocket's
        request handler is on the stack for the connection's whole life: the delegating
        coroutine was 0.35 KiB of every idle connection. With ``lean-socket`` off,
        python-socketio's own."""
        if self.eio.lean:
            return self.eio.handle_request  # type: ignore[no-any-return]
        return self.handle_request  # type: ignore[no-any-return]

    def declare_events(self, namespace: str, events: Iterable[str], refuse: Refusal) -> None:
        """Only ``events`` reach ``namespace``'s handlers from clients; any other EVENT
        packet is answered (when it asks for an ack) with ``refuse(sid, event)``."""
        allowed = frozenset(events) - RESERVED_EVENTS
        self._client_events[namespace] = (allowed, refuse)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        """Pass a client event on only if it is declared (module docstring)."""
        ns = namespace or NAMESPACE
        event = data[0] if type(data) is list and data else None
        declared = self._client_events.get(ns)
        if type(event) is str and event not in RESERVED_EVENTS and (declared is None or event in declared[0]):
            handler = self._direct_handler(ns)
            if handler is not None:
                await self._dispatch(handler, eio_sid, ns, id, data)
            else:
                await super()._handle_event(eio_sid, namespace, id, data)
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, ns)
        if sid is None or not self.manager.is_connected(sid, ns):
            return
        name = event if type(event) is str else None
        if declared is not None:
            answer = declared[1](sid, name)
        else:  # a namespace without a table (the Admin UI's): still a clear error
            answer = {"ok": False, "error": InvalidPayload("not a client event").to_wire()}
        if id is not None:
            await self._send_packet(
                eio_sid, self.packet_class(packet.ACK, namespace=ns, id=id, data=[answer])
            )

    def _direct_handler(self, namespace: str) -> Any:
        """The namespace handler :meth:`_dispatch` may call for ``namespace``'s client events
        (fast path ``event-dispatch``), or None: python-socketio's own path. Only when
        upstream would reach that same handler (no function handlers on the namespace or
        ``*``, handlers run inline) and would log nothing (its INFO line per event)."""
        if not self.fast_dispatch or self.async_handlers:
            return None
        handlers = self.handlers
        if namespace in handlers or "*" in handlers or self.logger.isEnabledFor(logging.INFO):
            return None
        return self.namespace_handlers.get(namespace)

    async def _dispatch(self, handler: Any, eio_sid: str, namespace: str, id: Any, data: list[Any]) -> None:
        """``_handle_event`` -> ``_handle_event_internal`` -> ``_trigger_event`` (python-socketio
        5.18.1, hash-pinned) for a namespace handler in one call: the same handler call and
        the same ack, without the four frames between, the second session lookup and the
        disabled INFO log call per event."""
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if not self.manager.is_connected(sid, namespace):
            return  # upstream logs a warning (its logger is off) and drops it
        r = await handler.trigger_event(data[0], sid, *data[1:])
        if r != self.not_handled and id is not None:
            # As upstream: None is no argument, a tuple several.
            args = [] if r is None else list(r) if isinstance(r, tuple) else [r]
            ack = self.packet_class(packet.ACK, namespace=namespace, id=id, data=args)
            await self._send_packet(eio_sid, ack)

    async def _trigger_event(self, event: str, namespace: str | None, *args: Any) -> Any:
        # Client events reach here only through _handle_event, which refuses lifecycle
        # names; marking the lifecycle calls lets the namespace refuse them otherwise.
        if event not in LIFECYCLE_EVENTS:
            return await super()._trigger_event(event, namespace, *args)
        mark = _lifecycle.set(True)
        try:
            return await super()._trigger_event(event, namespace, *args)
        finally:
            _lifecycle.reset(mark)

    def _engineio_server_class(self) -> type[EngineIOServer]:
        return _EngineServer

    async def _end_slow_consumer(self, eio_sid: str) -> None:
        """``session_end`` ``slow_consumer`` and a Socket.IO disconnect on every namespace
        of ``eio_sid``, which the Engine.IO server is ending for not taking its packets."""
        for namespace in list(self.manager.get_namespaces()):
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
            if sid is None or not self.manager.is_connected(sid, namespace):
                continue
            why = {**SlowConsumer().to_wire(), "reconnect": False}
            await self._send_packet(
                eio_sid, self.packet_class(packet.EVENT, namespace=namespace, data=["session_end", why])
            )
            await self.disconnect(sid, namespace=namespace, ignore_queue=True)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        hooks = self.hooks
        if hooks is None or (namespace or NAMESPACE) != NAMESPACE:
            await super()._handle_connect(eio_sid, namespace, data)
            return
        environ = self.environ.get(eio_sid, {})
        reuse = await hooks.prepare_recovery(environ, data)
        if reuse is not None and self.manager.eio_sid_from_sid(reuse, NAMESPACE) is not None:
            hooks.abandon_recovery(reuse)  # that sid is (still) connected here
            reuse = None
        eio = self.eio
        eio.next_id = reuse
        try:
            await super()._handle_connect(eio_sid, namespace, data)
        except BaseException:
            if reuse is not None:
                hooks.abandon_recovery(reuse)
            raise
        finally:
            eio.next_id = None
        if eio.lean:
            # The handshake is over (for a polling-first client, in an earlier request):
            # what stays of its environ is what a later CONNECT may read.
            slim_environ(self.environ.get(eio_sid))
        sid = self.manager.sid_from_eio_sid(eio_sid, NAMESPACE)
        if reuse is not None and sid != reuse:
            hooks.abandon_recovery(reuse)
        if sid is not None and self.manager.is_connected(sid, NAMESPACE):
            await hooks.after_connect(sid)

    async def _process_eio_message(self, eio_sid: str, data: Any) -> None:
        """What the connection's worker does with each packet (``chatsvc.transport.events``):
        python-socketio's ``_handle_eio_message`` (5.18.1) without binary packets, and
        with a client's garbage counted (``eio.bad_packets``) instead of raised into
        python-engineio's ``logger.exception`` or warned about per packet.

        chatsvc has no binary payloads. Upstream, a BINARY_EVENT/BINARY_ACK is kept until
        as many binary frames as its header announces (up to 10 digits) have arrived, each
        buffered, and every frame in between, text included, is taken as an attachment.
        Here such a packet is refused from its header alone (an ack ``invalid_payload`` when
        it is an event with an ack id), and a binary frame is dropped: nothing is kept
        between frames, so nothing accumulates and no later frame is swallowed.

        Dropped (counted, logged once per connection): undecodable packets; events and acks
        for a namespace the socket is not connected to; a CONNECT for a namespace it is
        already connected to; an event whose data is not ``[name, ...args]`` (an ack
        ``invalid_payload`` if it has an ack id); acks nobody waits for; CONNECT_ERROR and
        unknown packet types. Nothing is handled once the Engine.IO session has ended.
        """
        if eio_sid not in self.environ:
            # Its Engine.IO session has ended (a CLOSE earlier in the same POST batch, or
            # frames read after it): python-socketio's handlers would fail on the environ.
            return
        bad = self.eio.bad_packets
        if not isinstance(data, str):
            bad.report(self.eio.sockets.get(eio_sid), "binary", "binary frame")
            return
        if data[:1] in _BINARY_TYPES:
            kind, namespace, ack_id = packet_head(data)
            bad.report(self.eio.sockets.get(eio_sid), "binary", "binary packet")
            if kind == "5" and ack_id is not None:
                await self._refuse(eio_sid, namespace, ack_id, "binary payloads are not supported")
            return
        try:
            pkt = self.packet_class(encoded_packet=data)
        except DECODE_ERRORS as exc:
            bad.report(self.eio.sockets.get(eio_sid), "sio_undecodable", type(exc).__name__)
            kind, namespace, ack_id = packet_head(data)
            if kind == "2" and ack_id is not None:
                await self._refuse(eio_sid, namespace, ack_id, "not a Socket.IO packet")
            return
        kind_int = pkt.packet_type
        namespace = pkt.namespace or NAMESPACE
        if kind_int == packet.CONNECT:
            if self.manager.sid_from_eio_sid(eio_sid, namespace) is not None:
                bad.report(self.eio.sockets.get(eio_sid), "sio_unexpected", "CONNECT while connected")
                return
            await self._handle_connect(eio_sid, pkt.namespace, pkt.data)
        elif kind_int == packet.DISCONNECT:
            await self._handle_disconnect(eio_sid, pkt.namespace, self.reason.CLIENT_DISCONNECT)
        elif kind_int == packet.EVENT:
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
            if sid is None or not self.manager.is_connected(sid, namespace):
                bad.report(
                    self.eio.sockets.get(eio_sid), "bad_namespace", "event outside a connected namespace"
                )
                return
            event = pkt.data
            if not (isinstance(event, list) and event and isinstance(event[0], str)):
                bad.report(self.eio.sockets.get(eio_sid), "sio_unexpected", "event without a name")
                if pkt.id is not None:
                    # Answered by _handle_event's refusal, which costs the socket's rate
                    # bucket like any refused event it answers (a flood of them is bounded).
                    await self._handle_event(eio_sid, pkt.namespace, pkt.id, event)
                return
            await self._handle_event(eio_sid, pkt.namespace, pkt.id, event)
        elif kind_int == packet.ACK:
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
            waiting = self.manager.callbacks.get(sid, {}) if sid is not None else {}
            if pkt.id not in waiting or not isinstance(pkt.data, list):
                bad.report(self.eio.sockets.get(eio_sid), "sio_unexpected", "ack nobody waits for")
                return
            await self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)
        else:
            bad.report(self.eio.sockets.get(eio_sid), "sio_unexpected", "packet type a client may not send")

    async def _refuse(self, eio_sid: str, namespace: str, ack_id: int, message: str) -> None:
        """Answer ack ``ack_id`` with ``invalid_payload``, if the socket is connected to
        ``namespace`` (an ack elsewhere means nothing to the client)."""
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            return
        error = {"ok": False, "error": InvalidPayload(message).to_wire()}
        await self._send_packet(
            eio_sid, self.packet_class(packet.ACK, namespace=namespace, id=ack_id, data=[error])
        )

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        hooks = self.hooks
        if (
            hooks is not None
            and pkt.packet_type == packet.CONNECT
            and (pkt.namespace or NAMESPACE) == NAMESPACE
            and isinstance(pkt.data, dict)
            and isinstance(pkt.data.get("sid"), str)
        ):
            pid = hooks.pid_for(pkt.data["sid"])
            if pid is not None:
                pkt.data = {**pkt.data, "pid": pid}
        await super()._send_packet(eio_sid, pkt)

    async def send_event(self, sid: str, event: str, args: list[Any]) -> None:
        """Queue ``[event, *args]`` for the local socket ``sid`` (nothing if it is gone)."""
        eio_sid = self.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is None:
            return
        await self._send_packet(
            eio_sid, self.packet_class(packet.EVENT, namespace=NAMESPACE, data=[event, *args])
        )

    def transport_open(self, eio_sid: str) -> bool:
        """Whether the Engine.IO connection ``eio_sid`` is still open here."""
        socket = self.eio.sockets.get(eio_sid)
        return socket is not None and not socket.closed

    async def close_engineio(self, eio_sid: str) -> None:
        """End the Engine.IO connection ``eio_sid`` (a CLOSE packet, then the transport)."""
        await self.eio.disconnect(eio_sid)

    async def drop_transport(self, sid: str) -> None:
        """End ``sid``'s Engine.IO connection at once, as if the network had dropped it
        (disconnect reason ``transport close``): for a socket its client has already
        replaced with a new connection, which python-engineio would only notice at the
        ping timeout."""
        eio_sid = self.manager.eio_sid_from_sid(sid, NAMESPACE)
        socket = self.eio.sockets.get(eio_sid) if eio_sid is not None else None
        if socket is None:
            return
        await socket.close(wait=False, abort=True, reason=self.eio.reason.TRANSPORT_CLOSE)
        if getattr(socket, "upgraded", False):
            socket.queue.put_nowait(None)  # see close_transport
        self.eio.sockets.pop(eio_sid, None)

    async def close_transport(self, sid: str, within: float) -> None:
        """Close ``sid``'s Engine.IO connection once what is queued for it has gone out
        (bounded): the client sees a transport close and reconnects by itself.

        Over long-polling the queue empties when a poll takes the packets; closing before
        that would put the CLOSE in the same response, which socket.io-client handles
        before the events next to it (they are dispatched a tick later and dropped).
        """
        eio_sid = self.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is None:
            return
        socket = self.eio.sockets.get(eio_sid)
        if socket is None:
            return
        try:
            async with asyncio.timeout(within):
                await socket.queue.join()
        except TimeoutError:
            log.info("queued packets of session %s did not go out in time", sid)
        websocket = bool(getattr(socket, "upgraded", False))
        async with asyncio.timeout(within):
            await self.eio.disconnect(eio_sid)
        if websocket:
            # python-engineio sends CLOSE but leaves the websocket open (its own client
            # closes on CLOSE; engine.io-client ignores it over websocket): a None wakes
            # its writer task, which then closes the websocket.
            socket.queue.put_nowait(None)


def create_server(
    *,
    client_manager: Any,
    fast_paths: FastPaths,
    cors_allowed_origins: Any,
    ping_interval: float,
    ping_timeout: float,
    max_http_buffer_size: int,
    compression: bool,
    queued_packets_max: int,
    pending_events_max: int,
    observe_bad_packet: Callable[[str], None],
) -> RecoveringServer:
    """chatsvc's Socket.IO server over ``client_manager`` (the bus), its fast paths as
    ``fast_paths`` says (the security fixes and bounds hold either way)."""
    if isinstance(client_manager, DirectEmitMixin):
        client_manager.direct_emit = fast_paths.direct_emit
        client_manager.lean_rooms = fast_paths.lean_socket
    sio = RecoveringServer(
        async_mode="aiohttp",
        client_manager=client_manager,
        serializer=SocketIOPacket if fast_paths.packet_serializer else "default",
        cors_allowed_origins=cors_allowed_origins,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_http_buffer_size=max_http_buffer_size,
        logger=False,
        engineio_logger=False,
        # A connection's packets are handed to python-socketio inline (no task per event:
        # about a tenth of the CPU per message, bench/README.md); RecoveringServer queues
        # them for the connection's one worker, handled in the order sent (a task per event
        # let a slower store write be overtaken), while its reader goes on reading.
        async_handlers=False,
    )
    sio.eio.configure(
        fast_paths=fast_paths,
        compression=compression,
        queued_packets_max=queued_packets_max,
        observe_bad_packet=observe_bad_packet,
    )
    sio.pending_events_max = pending_events_max
    sio.keep_workers = fast_paths.event_worker
    sio.fast_dispatch = fast_paths.event_dispatch
    # Counted with the client's other refused packets (chatsvc_bad_packets_total).
    sio.observe_refused = lambda _kind: observe_bad_packet("pending_full")
    accept_polling_batches()
    return sio
