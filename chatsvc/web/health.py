"""Liveness and readiness.

``/healthz`` answers while the process runs. ``/readyz`` is 200 only when every backend
check passes and the server is not draining; otherwise 503 with a JSON body naming what
is not ready, so an operator (or a load balancer) can tell Kafka from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from chatsvc.errors import ChatError

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_SECONDS = 2.0


class Readiness:
    """Named backend checks plus the draining flag."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self.draining = False

    def add(self, name: str, check: Check) -> None:
        """Register a check that raises when ``name`` is not usable."""
        self._checks[name] = check

    def remove(self, name: str) -> None:
        """Forget a check (its resource was released)."""
        self._checks.pop(name, None)

    async def _run(self, check: Check) -> str | None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                await check()
        except TimeoutError:
            return "check timed out"
        except ChatError as exc:
            return exc.message
        except Exception as exc:
            return exc.__class__.__name__
        return None

    async def report(self) -> tuple[bool, dict[str, object]]:
        """(ready, body) for ``/readyz``."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        failing = {n: r for n, r in zip(names, results, strict=True) if r is not None}
        if self.draining:
            failing["server"] = "draining"
        if failing:
            return False, {"status": "not_ready", "failing": failing}
        return True, {"status": "ready", "checks": names}


def routes(readiness: Readiness) -> list[web.RouteDef]:
    """``GET /healthz`` and ``GET /readyz``."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, body = await readiness.report()
        return web.json_response(body, status=200 if ready else 503)

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
