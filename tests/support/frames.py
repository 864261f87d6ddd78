"""What coroutine frames a task holds: the idle-websocket tests (issue 26) check which of
chatsvc's and aiohttp's coroutines stay on a connection's stack."""

from __future__ import annotations

import inspect
import sys


def coroutine_stack() -> list[str]:
    """The coroutines running the caller, outermost first (those of its task: a coroutine's
    frame links back to the one awaiting it)."""
    names = []
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_flags & inspect.CO_COROUTINE:
        names.append(frame.f_code.co_qualname)
        frame = frame.f_back  # type: ignore[assignment]
    return names[::-1]
