"""The records every store shares: wire formats."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from chatsvc.chat.wire import iso_ms


def _reference(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def test_iso_ms_is_rfc3339_with_milliseconds_whatever_order_it_is_asked_in() -> None:
    """A one-second cache sits behind iso_ms: repeated, alternating and backwards seconds
    must all still format as the plain datetime formatting does."""
    rng = random.Random(3)
    samples = [0, 999, 1000, 1001, -1, -1000, -1001, 1_764_680_000_123, 1_764_680_000_999, 1_764_680_001_000]
    samples += [rng.randrange(0, 4 * 10**12) for _ in range(2000)]
    samples += [1_764_680_000_000 + rng.randrange(0, 3000) for _ in range(2000)]
    for ms in samples:
        assert iso_ms(ms) == _reference(ms), ms
    assert iso_ms(1_764_680_000_123) == "2025-12-02T12:53:20.123Z"
