"""Cashtags and sentiment on a message (issue 25).

The server extracts cashtags (``$AAPL``, ``$005930``, ``$BRK.B``) from the text with the
pattern of ``CHATSVC_CASHTAG_PATTERN`` into ``tickers`` (upper case, without the ``$``,
repeats dropped, at most ``CHATSVC_MAX_TICKERS``); an edit extracts them again. A client
may mark a message ``sentiment: "bullish" | "bearish"``; anything else is refused.
"""

from __future__ import annotations

import re
from typing import Any

from chatsvc.errors import InvalidPayload
from chatsvc.model.modes import SENTIMENTS


class Cashtags:
    """Extracts a message's tickers with the configured pattern."""

    def __init__(self, pattern: str, maximum: int) -> None:
        self._pattern = re.compile(pattern)
        self._max = maximum

    def extract(self, text: str) -> tuple[str, ...]:
        """The cashtags of ``text`` in order of appearance, each once, at most the maximum.

        A pattern with a capturing group yields the group (the symbol), one without the
        whole match with a leading ``$`` removed."""
        if not self._max or "$" not in text:
            return ()
        found: dict[str, None] = {}
        for match in self._pattern.finditer(text):
            value = match.group(1) if self._pattern.groups else match.group(0)
            if not value:
                continue
            found.setdefault(value.lstrip("$").upper(), None)
            if len(found) >= self._max:
                break
        return tuple(found)


def sentiment(payload: dict[str, Any]) -> str | None:
    """The optional ``sentiment`` field: ``bullish``, ``bearish`` or absent/null."""
    value = payload.get("sentiment")
    if value is None:
        return None
    if value not in SENTIMENTS:
        raise InvalidPayload('\'sentiment\' must be "bullish" or "bearish"')
    return str(value)
