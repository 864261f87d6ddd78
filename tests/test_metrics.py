"""Metrics: the store timer observes each call once, under its op label, errors included."""

from __future__ import annotations

import pytest

from chatsvc.metrics import Metrics


def _count(metrics: Metrics, op: str) -> float:
    value = metrics.registry.get_sample_value("chatsvc_store_latency_seconds_count", {"op": op})
    return value or 0.0


async def test_timed_store_observes_every_call_under_its_label() -> None:
    metrics = Metrics()
    for _ in range(3):
        async with metrics.timed_store("append"):
            pass
    with pytest.raises(RuntimeError):
        async with metrics.timed_store("history"):
            raise RuntimeError("store down")
    assert _count(metrics, "append") == 3
    assert _count(metrics, "history") == 1
    assert b'chatsvc_store_latency_seconds_count{op="append"} 3.0' in metrics.render()


async def test_overlapping_timers_keep_their_own_start() -> None:
    metrics = Metrics()
    outer = metrics.timed_store("a")
    inner = metrics.timed_store("a")
    async with outer, inner:
        pass
    assert _count(metrics, "a") == 2
    total = metrics.registry.get_sample_value("chatsvc_store_latency_seconds_sum", {"op": "a"})
    assert total is not None and total >= 0
