"""The app factory: every component is chosen and wired here, and nowhere else.

Each resource is one ``cleanup_ctx`` generator (acquire, ``yield``, release), so aiohttp
releases them in reverse order of acquisition. Draining the sockets happens in
``on_shutdown``, which aiohttp runs after the listener stops and before cleanup.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

from chatsvc import __version__
from chatsvc.auth.jwt import JwtVerifier
from chatsvc.bus.base import ManagedBus
from chatsvc.bus.local import LocalManager
from chatsvc.chat.namespace import ChatNamespace
from chatsvc.chat.presence import LocalPresence, PresenceRegistry
from chatsvc.chat.service import ChatService
from chatsvc.errors import ChatError, StartupError
from chatsvc.metrics import Metrics
from chatsvc.settings import Settings
from chatsvc.store.base import MessageStore
from chatsvc.web import health
from chatsvc.web.origins import OriginPolicy

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
READINESS = web.AppKey("readiness", health.Readiness)
STORE = web.AppKey("store", MessageStore)
BUS = web.AppKey("bus", ManagedBus)
SIO = web.AppKey("sio", socketio.AsyncServer)
NAMESPACE = web.AppKey("namespace", ChatNamespace)
SERVICE = web.AppKey("service", ChatService)
PRESENCE = web.AppKey("presence", PresenceRegistry)

STATIC_DIR = Path(__file__).parent / "web" / "static"


def build_store(settings: Settings) -> MessageStore:
    """ScyllaDB when ``SCYLLA_CONTACT_POINTS`` is set, else the embedded SQLite file."""
    if settings.scylla is not None:
        from chatsvc.store.scylla import ScyllaStore  # noqa: PLC0415 - optional dependency

        return ScyllaStore(settings.scylla)
    from chatsvc.store.sqlite import SqliteStore  # noqa: PLC0415

    return SqliteStore(settings.sqlite_path)


def build_bus(settings: Settings, metrics: Metrics) -> Any:
    """Kafka when ``KAFKA_BROKERS`` is set, else in-process fan-out."""
    if settings.kafka is not None:
        from chatsvc.bus.kafka import AsyncKafkaManager  # noqa: PLC0415 - optional dependency

        return AsyncKafkaManager(settings.kafka, metrics=metrics, replica_id=settings.replica_id)
    return LocalManager()


def create_app(settings: Settings, *, store: MessageStore | None = None) -> web.Application:
    """Assemble the whole service for ``settings``. ``store`` overrides the store (tests)."""
    app = web.Application(client_max_size=settings.limits.http_buffer_bytes)
    metrics = Metrics()
    readiness = health.Readiness()
    store = store if store is not None else build_store(settings)
    bus = build_bus(settings, metrics)
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=bus,
        cors_allowed_origins=OriginPolicy(settings.cors_origins),
        ping_interval=settings.ping_interval_seconds,
        ping_timeout=settings.ping_timeout_seconds,
        max_http_buffer_size=settings.limits.http_buffer_bytes,
        logger=False,
        engineio_logger=False,
    )
    presence = LocalPresence()
    service = ChatService(store, sio, metrics, settings.limits)
    namespace = ChatNamespace(
        service,
        JwtVerifier(settings.jwt),
        presence,
        settings.limits,
        metrics,
        is_draining=lambda: readiness.draining,
    )
    sio.register_namespace(namespace)
    if settings.admin_ui_username and settings.admin_ui_password:
        sio.instrument(
            auth={"username": settings.admin_ui_username, "password": settings.admin_ui_password.reveal()},
            mode="production" if settings.is_production else "development",
        )
    sio.attach(app)

    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[READINESS] = readiness
    app[STORE] = store
    app[BUS] = bus
    app[SIO] = sio
    app[NAMESPACE] = namespace
    app[SERVICE] = service
    app[PRESENCE] = presence

    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_bus_ctx)
    app.cleanup_ctx.append(_socketio_ctx)
    app.on_shutdown.append(_drain)

    app.add_routes(health.routes(readiness))
    app.add_routes([web.get("/metrics", _metrics_handler), web.get("/", _index)])
    return app


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
    if not sio.manager_initialized:
        sio.manager_initialized = True
        sio.manager.initialize()
    log.info("chatsvc %s ready (replica %s)", __version__, app[SETTINGS].replica_id)
    yield
    await sio.shutdown()


async def _drain(app: web.Application) -> None:
    app[READINESS].draining = True
    await app[NAMESPACE].drain(app[SETTINGS].shutdown_timeout_seconds)


async def _metrics_handler(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")


async def _index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")
