"""Readiness text for a store that fails: which host, and why, in one short line.

The CQL driver reports a node it has given up on as "marked down", without the reason; a
plain TCP connect to that node's address (bounded, only when readiness is already failing)
finds it: ``127.0.0.1:19042: connection refused``. Nothing here imports the driver: the
failure's ``errors`` map is read by duck typing, so this module also serves other stores.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Final

#: Each probe's bound; readiness gives the whole check 2 s.
PROBE_TIMEOUT_SECONDS: Final = 0.4
#: Hosts named at most (the rest are counted).
MAX_HOSTS: Final = 3


def _address(host: object) -> tuple[str, int] | None:
    endpoint = getattr(host, "endpoint", None)
    address, port = getattr(endpoint, "address", None), getattr(endpoint, "port", None)
    if isinstance(address, str) and isinstance(port, int):
        return address, port
    return None


def _os_cause(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if exc.errno in {errno.EHOSTUNREACH, errno.ENETUNREACH}:
        return "host unreachable"
    return (exc.strerror or type(exc).__name__).lower()


async def _probe(address: str, port: int) -> str | None:
    """Why a TCP connect to ``address:port`` fails, or None when it succeeds."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            _, writer = await asyncio.open_connection(address, port)
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT_SECONDS:.1f}s"
    except OSError as exc:
        return _os_cause(exc)
    writer.close()
    return None


async def failing_hosts(cause: BaseException | None, fallback: str) -> str:
    """``host:port: reason`` for each node in ``cause.errors`` (a driver's per-host failure
    map), or ``fallback`` when the failure names no host."""
    errors = getattr(cause, "errors", None)
    if not isinstance(errors, dict) or not errors:
        return fallback
    hosts = [(host, error) for host, error in errors.items() if _address(host) is not None]
    if not hosts:
        return fallback
    shown = hosts[:MAX_HOSTS]
    found = await asyncio.gather(*(_probe(*_address_of(host)) for host, _ in shown))
    parts = []
    for (host, error), probed in zip(shown, found, strict=True):
        address, port = _address_of(host)
        reason = probed or f"reachable, but the driver reports {type(error).__name__}"
        parts.append(f"{address}:{port}: {reason}")
    if len(hosts) > MAX_HOSTS:
        parts.append(f"and {len(hosts) - MAX_HOSTS} more")
    return "; ".join(parts)


def _address_of(host: object) -> tuple[str, int]:
    found = _address(host)
    assert found is not None
    return found
