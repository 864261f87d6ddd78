"""The app factory: every component is chosen and wired here, and nowhere else.

Each resource is one ``cleanup_ctx`` generator (acquire, ``yield``, release), so aiohttp
releases them in reverse order of acquisition. Draining the sockets happens in
``on_shutdown``, which ``chatsvc.server`` runs as soon as the signal arrives (while aiohttp
still reads from clients) and aiohttp runs again, finding nothing left, before cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web

from chatsvc import __version__
from chatsvc.admin.server import AdminServer
from chatsvc.admin.servicer import AdminServicer
from chatsvc.auth.jwks import JwksKeys
from chatsvc.auth.jwt import JwkKey, JwtVerifier, parse_jwk
from chatsvc.bus.base import ManagedBus
from chatsvc.bus.local import LocalManager
from chatsvc.bus.log import RoomLog
from chatsvc.chat.blocks import Blocks
from chatsvc.chat.cluster import ClusterActions, ControlRouter
from chatsvc.chat.cluster_presence import ClusterPresence
from chatsvc.chat.coalesce import Coalescer
from chatsvc.chat.conversations import USER_ROOM_PREFIX, Conversations
from chatsvc.chat.crossposts import StreamPosts
from chatsvc.chat.directory import Directory
from chatsvc.chat.moderation import ModerationRecords, Moderator
from chatsvc.chat.namespace import ChatNamespace
from chatsvc.chat.notify import Notifier
from chatsvc.chat.notify_relay import NotificationRelay
from chatsvc.chat.online import OnlineUsers
from chatsvc.chat.recovery_pos import PositionRecovery
from chatsvc.chat.routed_members import RoutedMembers
from chatsvc.chat.service import ChatService
from chatsvc.chat.spam import SpamFilter
from chatsvc.errors import ChatError, StartupError
from chatsvc.metrics import LoopLagProbe, Metrics
from chatsvc.settings import Settings
from chatsvc.store.base import MessageStore, NotificationOutbox, NotificationRelayState
from chatsvc.transport.fast_paths import FastPaths
from chatsvc.transport.sioserver import RecoveringServer, create_server
from chatsvc.web import admin_ui, health, requestid, webapp
from chatsvc.web.drain import OpenTransports
from chatsvc.web.origins import OriginPolicy

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
READINESS = web.AppKey("readiness", health.Readiness)
STORE = web.AppKey("store", MessageStore)
BUS = web.AppKey("bus", ManagedBus)
SIO = web.AppKey("sio", RecoveringServer)
NAMESPACE = web.AppKey("namespace", ChatNamespace)
CLUSTER = web.AppKey("cluster", ClusterPresence)
SERVICE = web.AppKey("service", ChatService)
COALESCER = web.AppKey("coalescer", Coalescer)
ADMIN = web.AppKey("admin", AdminServer)
TRANSPORTS = web.AppKey("transports", OpenTransports)
JWKS: web.AppKey[JwksKeys[JwkKey] | None] = web.AppKey("jwks")
NOTIFIER: web.AppKey[Notifier | None] = web.AppKey("notifier")


def build_store(settings: Settings) -> MessageStore:
    """ScyllaDB when ``SCYLLA_CONTACT_POINTS`` is set, memory for ``CHATSVC_STORE=memory``,
    else the embedded SQLite file."""
    if settings.scylla is not None:
        from chatsvc.store.scylla.store import ScyllaStore  # noqa: PLC0415 - optional dependency

        # Positions need one writer per room: not yet with several replicas (issue 21 step 2).
        return ScyllaStore(settings.scylla, positions=settings.kafka is None)
    if settings.store == "memory":
        from chatsvc.store.memory import MemoryStore  # noqa: PLC0415

        return MemoryStore()
    from chatsvc.store.sqlite import SqliteStore  # noqa: PLC0415

    return SqliteStore(settings.sqlite_path)


def build_jwks(settings: Settings) -> JwksKeys[JwkKey] | None:
    """The JWKS key cache when ``CHATSVC_JWT_JWKS_URL`` is set."""
    jwt = settings.jwt
    if jwt.jwks_url is None:
        return None
    return JwksKeys(jwt.jwks_url, min_interval=jwt.jwks_min_interval_seconds, parse=parse_jwk)


def build_bus(settings: Settings, metrics: Metrics) -> Any:
    """Kafka when ``KAFKA_BROKERS`` is set, else in-process fan-out."""
    if settings.kafka is not None:
        from chatsvc.bus.kafka import AsyncKafkaManager  # noqa: PLC0415 - optional dependency

        return AsyncKafkaManager(settings.kafka, metrics=metrics, replica_id=settings.replica_id)
    return LocalManager()


def build_room_log(
    settings: Settings, bus: Any, metrics: Metrics, members: RoutedMembers | None = None
) -> RoomLog | None:
    """Cluster mode's room streams: the Kafka events topic, on the fan-out bus's connection
    settings (issue 21, docs/delivery.md); None in the embedded default. ``members``: with
    routing, the private and direct rooms of local users are interest too."""
    if settings.kafka is None:
        return None
    from chatsvc.bus.kafka_log import KafkaRoomLog  # noqa: PLC0415 - optional dependency

    routing = settings.kafka.events_routing
    room_log = KafkaRoomLog(
        settings.kafka.events_topic,
        bus.client_options,
        probe=bus.check,
        metrics=metrics,
        backoff_seconds=settings.kafka.retry_backoff_ms / 1000,
        min_retention_hours=settings.kafka.events_min_retention_hours,
        routing=routing,
        interest=lambda: _routed_rooms(bus, members),
    )
    if routing:  # KAFKA_EVENTS_ROUTING (docs/scaling.md): a join reads its room's partition first
        if members is not None:
            members.use_log(room_log)

        async def follow(room: str) -> None:
            if not room.startswith(USER_ROOM_PREFIX):
                await room_log.follow(room)
            elif members is not None:  # a socket connecting: its private rooms first
                await members.connected(room.removeprefix(USER_ROOM_PREFIX))

        bus.on_enter(follow)
    return room_log


def _routed_rooms(bus: Any, members: RoutedMembers | None) -> Iterator[str]:
    """Routing's interest: the rooms local sockets are in, and the private and direct rooms
    of the users with a socket here (they receive them through their user room)."""
    yield from _stream_rooms(bus)
    if members is not None:
        local = bus.rooms.get("/", {})
        yield from members.interest(lambda user: bool(local.get(USER_ROOM_PREFIX + user)))


def _stream_rooms(bus: Any) -> Iterator[str]:
    """The rooms this replica's sockets are in that have a room stream (not a socket's own
    room, not a user's room)."""
    for rooms in list(bus.rooms.values()):
        for room, members in list(rooms.items()):
            if isinstance(room, str) and room not in members and not room.startswith(USER_ROOM_PREFIX):
                yield room


def create_app(settings: Settings, *, store: MessageStore | None = None) -> web.Application:
    """Assemble the whole service for ``settings``. ``store`` overrides the store (tests)."""
    app = requestid.install(web.Application(client_max_size=settings.limits.http_buffer_bytes))
    metrics = Metrics()
    readiness = health.Readiness()
    store = store if store is not None else build_store(settings)
    bus = build_bus(settings, metrics)
    sio = create_server(
        client_manager=bus,
        fast_paths=FastPaths.without(settings.fast_paths_off),
        cors_allowed_origins=OriginPolicy(
            settings.cors_origins, scheme="https" if settings.tls_cert is not None else "http"
        ),
        ping_interval=settings.ping_interval_seconds,
        ping_timeout=settings.ping_timeout_seconds,
        max_http_buffer_size=settings.limits.http_buffer_bytes,
        compression=settings.ws_compression,
        queued_packets_max=settings.limits.queued_packets_max,
        pending_events_max=settings.limits.pending_events_max,
        observe_bad_packet=lambda reason: metrics.bad_packets.labels(reason).inc(),
    )
    # Cluster state beyond Socket.IO packets (presence, moderation, admin actions) travels
    # as control messages on the bus; one router hands each type to its owner.
    router = ControlRouter(bus.publish_control, settings.replica_id)
    bus.on_control(router.dispatch)
    presence = ClusterPresence(
        router,
        version=__version__,
        connections=lambda: namespace.connection_count,
        heartbeat_seconds=settings.cluster_heartbeat_seconds,
        bus_ready=bus.check,
    )
    metrics.rooms.labels("local").set_function(presence.local_room_count)
    metrics.rooms.labels("cluster").set_function(presence.room_count)
    records = ModerationRecords(store, router)
    conversations = _conversations(store, sio, router, bus, settings)
    routed = _routed_members(settings, conversations)
    service = ChatService(
        store,
        sio,
        metrics,
        settings.limits,
        audience=conversations.audience,
        spam=(spam := SpamFilter(settings.spam, metrics, store)),
        room_log=build_room_log(settings, bus, metrics, routed),
        host=getattr(bus, "host_id", settings.replica_id),
        present=bus.has_members,
    )
    verifier = JwtVerifier(settings.jwt, jwks := build_jwks(settings))
    recovery = _recovery(store, settings, conversations, service)
    namespace = ChatNamespace(
        service,
        verifier,
        presence,
        settings.limits,
        metrics,
        is_draining=lambda: readiness.draining,
        is_banned=records.is_banned,
        is_muted=records.is_muted,
        recovery=recovery,
        trusted_proxies=settings.trusted_proxies,
        conversations=conversations,
        modes=settings.modes,
    )
    sio.register_namespace(namespace)
    sio.declare_events(namespace.namespace, namespace.client_events, namespace.refuse_event)
    _install_recovery(sio, bus, namespace, recovery)
    _install_coalescer(app, settings, sio, bus, presence)
    moderator = Moderator(records, _cluster_actions(router, presence, namespace, routed), namespace)
    conversations.use_kick(moderator.kick)  # removed members leave the room on every replica
    _use_local_sockets(namespace, conversations, service, spam)
    if settings.admin_ui_username and settings.admin_ui_password:
        sio.instrument(
            auth={"username": settings.admin_ui_username, "password": settings.admin_ui_password.reveal()},
            mode="production" if settings.is_production else "development",
        )
    transports = OpenTransports(lambda: readiness.draining)
    transports.attach(app, sio.request_handler())

    app[SETTINGS] = settings
    app[TRANSPORTS] = transports
    app[METRICS] = metrics
    app[READINESS] = readiness
    app[STORE] = store
    app[BUS] = bus
    app[SIO] = sio
    app[NAMESPACE] = namespace
    app[CLUSTER] = presence
    app[SERVICE] = service
    app[JWKS] = jwks
    app[NOTIFIER] = conversations.notifier
    if settings.grpc.enabled:
        servicer = AdminServicer(
            service,
            presence,
            moderator,
            settings.limits,
            version=__version__,
            conversations=conversations,
            modes=namespace.modes,
        )
        app[ADMIN] = AdminServer(settings.grpc, servicer, verifier)

    _add_lifecycle(app)
    app.add_routes(health.routes(readiness))
    _serve_metrics(app, settings)
    app.add_routes(webapp.routes(settings))
    app.add_routes(admin_ui.routes(settings))
    return app


def _add_lifecycle(app: web.Application) -> None:
    """One cleanup_ctx per resource, acquired in this order and released in reverse."""
    # Loop lag and JWKS before the store: /readyz and /metrics see them from the start.
    app.cleanup_ctx.extend((_loop_lag_ctx, _jwks_ctx))
    # Notifications before the events log: its history writer judges who is online with the
    # registry, which must be up before the writer starts and until it has stopped.
    app.cleanup_ctx.extend((_store_ctx, _bus_ctx, _socketio_ctx, _notify_ctx, _room_log_ctx, _cluster_ctx))
    app.cleanup_ctx.extend((_modes_ctx, _grpc_ctx))
    app.on_shutdown.append(_grpc_not_serving)
    app.on_shutdown.append(_drain)


def _use_local_sockets(
    namespace: ChatNamespace, conversations: Conversations, service: ChatService, spam: SpamFilter
) -> None:
    """Who has a socket on this replica, for the parts that act on it: offline notifications
    (written by the history writer in cluster mode), and (issue 25, chatsvc.chat.crossposts)
    slow mode and the duplicate rule remembering other replicas' posts of this replica's
    users, so that both hold cluster-wide."""
    notifier = conversations.notifier
    if notifier is not None and notifier.users is not None:
        notifier.users.local = namespace.has_sockets
    if notifier is not None:  # cluster mode: from the events log's history writer (issue 24)
        notifier.from_log = service.on_message_written(notifier.written)
    service.watch_stream(StreamPosts(namespace.has_sockets, namespace.modes.slow, spam))


def _cluster_actions(
    router: ControlRouter, presence: ClusterPresence, namespace: ChatNamespace, routed: RoutedMembers | None
) -> ClusterActions:
    """Actions run on every replica: the moderator's, and routing's ``follow_members``."""
    actions = ClusterActions(router, presence.peers)
    if routed is not None:  # a user added to a room: her replicas read it before the answer
        routed.use_actions(actions, namespace.has_sockets)
    return actions


def _routed_members(settings: Settings, conversations: Conversations) -> RoutedMembers | None:
    """With ``KAFKA_EVENTS_ROUTING``: local users' private and direct rooms as interest."""
    if settings.kafka is None or not settings.kafka.events_routing:
        return None
    limits = settings.limits
    return RoutedMembers(conversations, limits.rooms_per_user, limits.members_per_room)


def _conversations(
    store: MessageStore, sio: RecoveringServer, router: ControlRouter, bus: Any, settings: Settings
) -> Conversations:
    """Private and direct rooms, blocking (its recipient filter on the broadcast path) and
    the directory."""
    blocks = Blocks(store, router, settings.limits)
    bus.use_filter(blocks)
    directory = Directory(store, blocks, settings.limits)
    notifier = _notifier(store, router, bus, settings, blocks)
    return Conversations(store, sio, settings.limits, blocks=blocks, directory=directory, notifier=notifier)


def _recovery(
    store: MessageStore, settings: Settings, conversations: Conversations, service: ChatService
) -> PositionRecovery:
    """Connection state recovery by position (docs/delivery.md), records read through the
    service: in cluster mode it completes the store from the events log's tail."""
    recovery = PositionRecovery(store, settings.limits, streams=service)
    recovery.use_filter(conversations.blocks)  # replays leave out blocked authors too
    return recovery


def _notifier(
    store: MessageStore, router: ControlRouter, bus: Any, settings: Settings, blocks: Blocks
) -> Notifier | None:
    """Offline notifications (chatsvc.chat.notify): to the store's outbox, relayed to
    CHATSVC_NOTIFY_TOPIC when set; offline meaning no socket on any replica (chatsvc.chat.online)."""
    online = OnlineUsers(router, version=__version__, heartbeat_seconds=settings.cluster_heartbeat_seconds)
    if not isinstance(store, NotificationOutbox):
        return None
    kafka = settings.kafka
    relay = None
    if kafka is not None and kafka.notify_topic is not None and isinstance(store, NotificationRelayState):
        from chatsvc.bus.notify_kafka import KafkaNotifications  # noqa: PLC0415 - optional dependency

        topic = KafkaNotifications(
            kafka.notify_topic, bus.client_options, retry_window_ms=kafka.notify_retry_window_ms
        )
        owner = f"{settings.replica_id}:{uuid.uuid4().hex[:12]}"  # a restarted process is a new owner
        relay = NotificationRelay(store, topic, owner=owner, lease_seconds=kafka.notify_lease_seconds)
    return Notifier(store, settings.limits, outbox=store, relay=relay, online=online, blocks=blocks)


def _serve_metrics(app: web.Application, settings: Settings) -> None:
    """``/metrics`` on the public listener in development; on ``CHATSVC_METRICS_PORT``, a
    listener of its own, when set (always in production: the Ingress routes ``/`` to the
    public one)."""
    if settings.metrics_port is None:
        app.add_routes([web.get("/metrics", _metrics_handler)])
    else:
        app.cleanup_ctx.append(_metrics_listener_ctx)


def _install_coalescer(
    app: web.Application, settings: Settings, sio: RecoveringServer, bus: Any, presence: ClusterPresence
) -> None:
    """Big rooms' presence/typing/read, aggregated where the bus delivers them locally
    (chatsvc.chat.coalesce), with its cleanup context."""

    async def deliver_here(event: str, data: dict[str, Any], room: str) -> None:
        # ignore_queue: to this replica's sockets only; every replica aggregates its own.
        await sio.emit(event, data, room=room, namespace="/", ignore_queue=True)

    app[COALESCER] = coalescer = Coalescer(
        deliver_here,
        presence.online_now,
        big_room=settings.big_room_members,
        typing_off=settings.typing_off_members,
        presence_window=settings.presence_coalesce_ms / 1000,
    )
    bus.use_absorber(coalescer)
    presence.watch(coalescer.touch)
    app.cleanup_ctx.append(_coalescer_ctx)


def _install_recovery(
    sio: RecoveringServer, bus: Any, namespace: ChatNamespace, recovery: PositionRecovery
) -> None:
    """Connection state recovery, unless ``CHATSVC_RECOVERY_WINDOW=0``: the broadcast path
    appends offsets for opted-in sockets (and adds them to their tails), CONNECT handling asks the
    namespace about pids."""
    if recovery.enabled:
        bus.use_offsets(recovery)
        sio.hooks = namespace


async def _loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    probe = LoopLagProbe(app[METRICS].loop_lag)
    probe.start()
    yield
    await probe.aclose()


async def _jwks_ctx(app: web.Application) -> AsyncIterator[None]:
    jwks = app[JWKS]
    if jwks is None:  # keys from CHATSVC_JWT_SECRET or CHATSVC_JWT_PUBLIC_KEY
        yield
        return
    await jwks.start()
    app[READINESS].add("jwks", jwks.check)
    yield
    app[READINESS].remove("jwks")
    await jwks.aclose()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store, settings = app[STORE], app[SETTINGS]
    try:
        await store.open()
        if settings.auto_migrate:
            await store.migrate()
    except ChatError as exc:
        await store.aclose()
        raise StartupError(f"history store unavailable at startup: {exc.message}") from None
    app[READINESS].add("store", store.ping)
    yield
    app[READINESS].remove("store")
    await store.aclose()


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    bus = app[BUS]
    await bus.start()
    app[READINESS].add("bus", bus.check)
    yield
    app[READINESS].remove("bus")
    await bus.aclose()


async def _socketio_ctx(app: web.Application) -> AsyncIterator[None]:
    sio = app[SIO]
    # Start the manager now rather than at the first connection, so a replica with no
    # clients still hears the bus (admin publishes, disconnects) from the start.
    sio.start_manager()
    log.info("chatsvc %s ready (replica %s)", __version__, app[SETTINGS].replica_id)
    yield
    await sio.shutdown()
    app[NAMESPACE].close()


async def _room_log_ctx(app: web.Application) -> AsyncIterator[None]:
    # Cluster mode's events log: after the bus (its connection settings) and the sockets
    # (it delivers to them); a no-op in the embedded default.
    service = app[SERVICE]
    try:
        await service.start_streams()
    except BaseException:
        await service.aclose_streams()
        raise
    if app[SETTINGS].kafka is not None:
        app[READINESS].add("stream", service.check_streams)
    yield
    app[READINESS].remove("stream")
    await service.aclose_streams()


async def _cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    # After the bus: presence heartbeats need it; released before it, saying goodbye.
    cluster = app[CLUSTER]
    await cluster.start()
    yield
    await cluster.aclose()


async def _notify_ctx(app: web.Application) -> AsyncIterator[None]:
    # After the bus (the producer and the online registry use it), before the events log
    # (its history writer notifies) and gRPC (its stream).
    notifier = app[NOTIFIER]
    if notifier is None:
        yield
        return
    await notifier.start()
    yield
    await notifier.aclose()


async def _modes_ctx(app: web.Application) -> AsyncIterator[None]:
    # After the store and the bus (surge reads the one, sentiment events use the other).
    task = asyncio.create_task(app[NAMESPACE].modes.run(), name="chatsvc-room-modes")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _coalescer_ctx(app: web.Application) -> AsyncIterator[None]:
    # Acquired first, so released last: a window that fires while the others shut down
    # reaches no socket (ignore_queue: never the bus) and costs nothing; then all stop.
    yield
    await app[COALESCER].aclose()


async def _grpc_ctx(app: web.Application) -> AsyncIterator[None]:
    admin = app.get(ADMIN)
    if admin is None:  # CHATSVC_GRPC_ENABLED=false
        yield
        return
    await admin.start()
    yield
    await admin.stop()


async def _grpc_not_serving(app: web.Application) -> None:
    # First thing at SIGTERM: gRPC health says NOT_SERVING while the sockets drain.
    admin = app.get(ADMIN)
    if admin is not None:
        await admin.enter_graceful_shutdown()


async def _drain(app: web.Application) -> None:
    if app[TRANSPORTS].settled:  # chatsvc.server ran this already, before aiohttp's shutdown
        return
    app[READINESS].draining = True
    bound = app[SETTINGS].shutdown_timeout_seconds
    deadline = asyncio.get_running_loop().time() + bound
    await app[NAMESPACE].drain(bound)
    # Clients close their transports once told; wait for that while aiohttp still reads
    # (chatsvc.server runs this hook before aiohttp's own shutdown for that reason).
    remaining = deadline - asyncio.get_running_loop().time()
    stragglers = await app[TRANSPORTS].settle(remaining, app[SIO].transport_open)
    if stragglers:
        log.warning("cut %d connection(s) whose clients did not leave within the drain", stragglers)


async def _metrics_listener_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.metrics_port is not None
    metrics_app = web.Application()
    metrics_app[METRICS] = app[METRICS]
    metrics_app.add_routes([web.get("/metrics", _metrics_handler)])
    runner = web.AppRunner(metrics_app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.metrics_port).start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"cannot serve /metrics on port {settings.metrics_port}: {exc.strerror}") from None
    log.info("/metrics on %s:%d", settings.host, settings.metrics_port)
    yield
    await runner.cleanup()


async def _metrics_handler(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")
