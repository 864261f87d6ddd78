"""Metrics: the store timer observes each call once, under its op label, errors included."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from chatsvc import metrics as metrics_module
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


async def test_overlapping_timers_keep_their_own_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two calls of one op in flight at once: each is timed from its own start. A shared
    start (one timer object per op, say) would time the outer call from the inner's start."""
    now = [0.0]
    monkeypatch.setattr(metrics_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    metrics = Metrics()
    outer = metrics.timed_store("a")
    inner = metrics.timed_store("a")
    now[0] = 10.0
    await outer.__aenter__()
    now[0] = 20.0
    await inner.__aenter__()
    now[0] = 25.0
    await inner.__aexit__(None, None, None)  # 5 s
    now[0] = 40.0
    await outer.__aexit__(None, None, None)  # 30 s
    assert _count(metrics, "a") == 2
    total = metrics.registry.get_sample_value("chatsvc_store_latency_seconds_sum", {"op": "a"})
    assert total == 35.0
