"""aiohttp's log of requests it cannot parse (oversize headers, bad request lines).

aiohttp logs each one on ``aiohttp.server`` as an ERROR with a traceback: a client's garbage
costing a traceback per request (issue 22, log amplification). :class:`BadRequestFilter`
keeps one line without traceback per request, at most :attr:`BadRequestFilter.per_minute`
a minute (then one line saying how many were left out); errors of ours keep their traceback.
Relies on aiohttp's ``HttpProcessingError`` (the base of its parser's errors), pinned with
aiohttp's version in chatsvc.transport.pins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

LOGGER = "aiohttp.server"


class BadRequestFilter(logging.Filter):
    """One warning line, no traceback, for a request aiohttp could not parse; bounded."""

    per_minute = 5

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._window = -1
        self._logged = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name != LOGGER or not isinstance(exc, HttpProcessingError):
            return True
        window = int(self._clock() // 60)
        if window != self._window:
            self._window, self._logged = window, 0
        if self._logged >= self.per_minute:
            self._dropped += 1
            return False
        self._logged += 1
        note = f" ({self._dropped} more left out)" if self._dropped else ""
        self._dropped = 0
        reason = str(getattr(exc, "message", "") or exc).splitlines()[0][:200]
        record.msg = f"{record.getMessage()}: {type(exc).__name__}: {reason}{note}"
        record.args, record.exc_info, record.exc_text = None, None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install() -> None:
    """Put one :class:`BadRequestFilter` on aiohttp's server logger (idempotent)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, BadRequestFilter) for f in logger.filters):
        logger.addFilter(BadRequestFilter())
