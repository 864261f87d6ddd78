"""Readiness text for a store that fails: which host, and why, in one short line.

The CQL driver reports a node it has given up on as "marked down", without the reason; a
plain TCP connect to that node's address (bounded, only when readiness is already failing)
finds it: ``127.0.0.1:19042: connection refused``. Nothing here imports the driver: the
failure's ``errors`` map is read by duck typing, so this module also serves other stores.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterable
from typing import Final

#: Each probe's bound; readiness gives the whole check 2 s.
PROBE_TIMEOUT_SECONDS: Final = 0.3
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


async def failing_hosts(
    cause: BaseException | None, fallback: str, known_hosts: Iterable[object] = ()
) -> str:
    """``host:port: reason`` for each node in ``cause.errors`` (a driver's per-host failure
    map); when the failure names no host (a timeout), for each of ``known_hosts`` that a TCP
    connect cannot reach. ``fallback`` when no host can be blamed."""
    errors = getattr(cause, "errors", None)
    if isinstance(errors, dict) and errors:
        named = [(host, error) for host, error in errors.items() if _address(host) is not None]
    else:
        named = [(host, None) for host in known_hosts if _address(host) is not None]
    if not named:
        return fallback
    shown = named[:MAX_HOSTS]
    found = await asyncio.gather(*(_probe(*_address_of(host)) for host, _ in shown))
    parts = []
    for (host, error), probed in zip(shown, found, strict=True):
        address, port = _address_of(host)
        if probed is not None:
            parts.append(f"{address}:{port}: {probed}")
        elif error is not None:
            parts.append(f"{address}:{port}: reachable, but the driver reports {type(error).__name__}")
    if not parts:  # every known host answers a TCP connect: not a reachability problem
        return fallback
    if len(named) > MAX_HOSTS:
        parts.append(f"and {len(named) - MAX_HOSTS} more")
    return "; ".join(parts)


def _address_of(host: object) -> tuple[str, int]:
    found = _address(host)
    assert found is not None
    return found
