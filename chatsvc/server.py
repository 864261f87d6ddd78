"""Run the app until SIGTERM/SIGINT, then drain within the configured bound."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
from collections.abc import Callable

from aiohttp import web

from chatsvc.app import READINESS, create_app
from chatsvc.errors import StartupError
from chatsvc.logs import AccessLogger
from chatsvc.settings import Settings
from chatsvc.tls import tls_context
from chatsvc.transport import http_errors

log = logging.getLogger(__name__)


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return tls_context(server=True, cert=settings.tls_cert, key=settings.tls_key)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed, else None (asyncio's own).

    uvloop does socket writes and callback scheduling in C: in a room of 1,000 it delivers
    a third more messages per CPU-second (bench/README.md). Nothing else changes.
    """
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


#: CPython's young-generation threshold (700) makes a busy server collect hundreds of times a
#: second and promote in-flight objects to the old generation, whose full passes over every
#: connection's objects stalled all delivery for 0.3-0.5 s: p99 of 250 ms in 500 small rooms,
#: a tenth of the CPU (bench/README.md). Fewer young passes let those objects die young.
GC_THRESHOLDS = (20_000, 20, 10)


def tune_gc() -> None:
    """Collect once and freeze what startup made (it lives as long as the process, so full
    collections need not walk it again), then collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(settings: Settings) -> None:
    """Run :func:`serve` to completion on the fastest event loop available."""
    tune_gc()
    http_errors.install()  # a request aiohttp cannot parse: one line, not a traceback
    factory = event_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        log.info("event loop: %s", "uvloop" if factory is not None else "asyncio")
        runner.run(serve(settings))


async def serve(settings: Settings) -> None:
    """Start every resource, listen, wait for a signal, then shut down in reverse order.

    Raises ``chatsvc.errors.StartupError`` when a backend cannot be reached at startup.
    """
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=AccessLogger,
        shutdown_timeout=settings.shutdown_timeout_seconds,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        tls = _tls_context(settings)
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=tls, backlog=1024)
        try:
            await site.start()
        except OSError as exc:  # e.g. the port is taken: one line, not a traceback
            raise StartupError(
                f"cannot listen on {settings.host}:{settings.port} (CHATSVC_PORT): {exc.strerror or exc}"
            ) from None
        scheme = "https" if tls else "http"
        log.info("listening on %s://%s:%d", scheme, settings.host, settings.port)
        await stop.wait()
        log.info("signal received: draining (at most %.0fs)", settings.shutdown_timeout_seconds)
        app[READINESS].draining = True
        # Run the on_shutdown hooks (gRPC NOT_SERVING, tell every socket, wait for clients to
        # close their websockets) *before* runner.cleanup(): from its first step aiohttp
        # ignores all data clients send, websocket close frames included, and would hold each
        # websocket open until the shutdown timeout, twice over. Meanwhile the listener stays
        # open: /readyz answers 503, new handshakes are refused with shutting_down, and a
        # polling client's next request still collects its session_end. cleanup() runs the
        # hooks again; they are idempotent and find nothing left to do.
        await app.shutdown()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    log.info("stopped")
