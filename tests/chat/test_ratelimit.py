"""The per-connection token bucket, on a fake clock."""

from __future__ import annotations

from chatsvc.chat.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back at 2/s
    assert bucket.allow()
    assert not bucket.allow()


def test_refill_is_capped_at_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10.0, burst=2, clock=clock)
    clock.now += 3600
    assert [bucket.allow() for _ in range(3)] == [True, True, False]


def test_refused_calls_do_not_consume() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=1.0, burst=1, clock=clock)
    assert bucket.allow()
    for _ in range(5):
        assert not bucket.allow()
    clock.now += 1.0
    assert bucket.allow()
