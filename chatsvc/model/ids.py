"""Message ids: unique, time-sortable strings (ULID layout).

48 bits of milliseconds then 80 random bits, in Crockford base32, 26 characters. Strings
sort in creation order, so stores can cluster on them and cursors compare as text.
Within one process ids are strictly increasing even inside one millisecond.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_RANDOM_BITS = 80
ID_LENGTH = 26
#: Every 10-bit value as its two digits: an id is 13 lookups instead of 26 digit steps.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_PAIR_SHIFTS = tuple(range(10 * (ID_LENGTH // 2 - 1), -1, -10))


def _encode(value: int) -> str:
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def is_message_id(value: object) -> bool:
    """Whether ``value`` has the shape of a message id (cheap; no lookup)."""
    return (
        isinstance(value, str)
        and len(value) == ID_LENGTH
        and value[0] in "01234567"
        and all(c in _DECODE for c in value)
    )


def timestamp_ms(message_id: str) -> int:
    """The creation time, in Unix milliseconds, encoded in an id."""
    value = 0
    for c in message_id[:10]:
        value = (value << 5) | _DECODE[c]
    return value


def lowest_id_at(ms: int) -> str:
    """The smallest id that could be created at ``ms`` (for range queries)."""
    return _encode(ms << _RANDOM_BITS)


def id_at(ms: int) -> str:
    """A fresh random id stamped ``ms`` (imports, backfills and tests that need old ids)."""
    return _encode((ms << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big"))


def id_value(message_id: str) -> int:
    """The 128-bit integer an id encodes; orders exactly like the id strings."""
    value = 0
    for c in message_id:
        value = (value << 5) | _DECODE[c]
    return value


class MessageIdGenerator:
    """Makes strictly increasing ids; one instance per process."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0
        # Ids need to be unique, not secret: a generator seeded from the OS once, instead
        # of a getrandom() system call per message.
        self._random = random.Random(os.urandom(32))  # noqa: S311 - uniqueness, not secrecy

    def new(self) -> str:
        """Return a fresh id, later than every id this generator returned before."""
        ms = int(self._clock() * 1000)
        candidate = (ms << _RANDOM_BITS) | self._random.getrandbits(_RANDOM_BITS)
        if candidate <= self._last:
            candidate = self._last + 1
        self._last = candidate
        return _encode(candidate)
