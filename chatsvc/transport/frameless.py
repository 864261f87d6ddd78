"""Request handlers that add no coroutine frame of their own (pinned: aiohttp 3.14.5,
``chatsvc.transport.pins``).

A websocket's request handler stays on the stack for the connection's whole life, so every
coroutine between aiohttp's ``Application._handle`` and the websocket's reader is held by
every idle connection (about 0.3 KiB each). A handler that only decides what runs next can
instead be a plain function returning the awaitable that does the work: aiohttp awaits
whatever a handler returns (``Application._handle``), but a route's handler must look like
a coroutine function, or ``AbstractRoute.__init__`` wraps it in a coroutine of its own (and
warns). :func:`coroutine_handler` marks it as one.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def coroutine_handler(fn: F) -> F:
    """``fn``, a plain function returning an awaitable, marked so that
    ``inspect.iscoroutinefunction`` (3.12+) or ``asyncio.iscoroutinefunction`` (3.11, as
    aiohttp checks there) takes it for a coroutine function."""
    if sys.version_info >= (3, 12):
        return inspect.markcoroutinefunction(fn)
    # Python 3.11's asyncio.iscoroutinefunction: the marker asyncio.coroutines keeps for
    # callables that return a coroutine (what unittest.mock's AsyncMock sets).
    fn._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    return fn
