"""Metrics: store timer, loop-lag probe, process collectors; a real server's /metrics; the dashboard."""

from __future__ import annotations

import asyncio
import json
import platform
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from chatsvc import metrics as metrics_module
from chatsvc.metrics import LabelledHistogram, LoopLagProbe, Metrics, Tally
from tests.bus.helpers import new_topic, replica_env
from tests.conftest import ServerFactory
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess
from tests.support.services import kafka_env
from tests.support.tokens import token


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


async def test_loop_lag_probe_sees_a_blocked_loop() -> None:
    metrics = Metrics()
    probe = LoopLagProbe(metrics.loop_lag, interval=0.05)
    probe.start()
    await asyncio.sleep(0.12)
    time.sleep(0.3)  # noqa: ASYNC251 - the point: block the loop as a slow callback would
    await asyncio.sleep(0.12)
    await probe.aclose()
    await probe.aclose()  # idempotent
    count = metrics.registry.get_sample_value("chatsvc_event_loop_lag_seconds_count") or 0
    fast = metrics.registry.get_sample_value("chatsvc_event_loop_lag_seconds_bucket", {"le": "0.1"}) or 0
    assert count >= 3
    assert count - fast >= 1, "the 0.3 s block was not observed as lag"


def test_registry_has_process_and_platform_collectors_and_stays_per_app() -> None:
    first, second = Metrics(), Metrics()
    for metrics in (first, second):
        assert metrics.registry.get_sample_value("process_resident_memory_bytes")
        assert metrics.registry.get_sample_value("process_open_fds")
        assert metrics.registry.get_sample_value("process_cpu_seconds_total") is not None
        assert metrics.registry.get_sample_value("python_info", _python_labels()) == 1.0
    first.messages_in.inc()
    assert second.registry.get_sample_value("chatsvc_messages_in_total") == 0


_CREATED = re.compile(r"^(\w+_created(?:\{[^}]*\})?) \S+$", re.MULTILINE)


@pytest.mark.parametrize("render", [generate_latest, generate_openmetrics])
def test_a_tally_is_exposed_as_the_counter_it_replaces(render: Any) -> None:
    ours, theirs = CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)
    tally = Tally("chatsvc_things_total", "Things counted", registry=ours)
    counter = Counter("chatsvc_things_total", "Things counted", registry=theirs)
    for amount in (1, 1, 2.5):
        tally.inc(amount)
        counter.inc(amount)
    with pytest.raises(ValueError):
        tally.inc(-1)
    text = render(ours).decode()
    assert "chatsvc_things_total 4.5" in text
    # Byte for byte the Counter's exposition, but for the creation time (a clock read each).
    assert _CREATED.sub(r"\1 T", text) == _CREATED.sub(r"\1 T", render(theirs).decode())
    assert ours.get_sample_value("chatsvc_things_total") == 4.5


@pytest.mark.parametrize("render", [generate_latest, generate_openmetrics])
def test_a_labelled_histogram_is_exposed_as_the_histogram_it_replaces(render: Any) -> None:
    ours, theirs = CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)
    buckets = (0.001, 0.01, 0.1, 1, 5)
    mine = LabelledHistogram("chatsvc_waits_seconds", "Waits", "op", buckets=buckets, registry=ours)
    stock = Histogram("chatsvc_waits_seconds", "Waits", ["op"], buckets=buckets, registry=theirs)
    observed = {"append": [0, 0.001, 0.0011, 0.5, 1, 5, 7.5, 1e9], "get": [0.02], "edit": []}
    for op, amounts in observed.items():
        for amount in amounts:  # bounds themselves, between, above all (+Inf only), none
            mine.labels(op).observe(amount)
            stock.labels(op).observe(amount)
    text = render(ours).decode()
    assert 'chatsvc_waits_seconds_bucket{le="0.001",op="append"} 2.0' in text
    assert _CREATED.sub(r"\1 T", text) == _CREATED.sub(r"\1 T", render(theirs).decode())
    assert ours.get_sample_value("chatsvc_waits_seconds_count", {"op": "append"}) == 8


def test_created_samples_follow_prometheus_clients_switch() -> None:
    metrics = Metrics()

    async def append() -> None:
        async with metrics.timed_store("append"):
            pass

    asyncio.run(append())
    metrics.messages_in.inc()
    disable_created_metrics()
    try:
        text = metrics.render().decode()
    finally:
        enable_created_metrics()
    assert "chatsvc_messages_in_total 1.0" in text and "chatsvc_messages_in_created" not in text
    assert 'chatsvc_store_latency_seconds_count{op="append"} 1.0' in text
    assert "chatsvc_store_latency_seconds_created" not in text
    assert "chatsvc_store_latency_seconds_created" in metrics.render().decode()


def _python_labels() -> dict[str, str]:
    info = sys.version_info
    return {
        "implementation": platform.python_implementation(),
        "major": str(info.major),
        "minor": str(info.minor),
        "patchlevel": str(info.micro),
        "version": platform.python_version(),
    }


# -- a real server's /metrics, and the dashboard that reads it ---------------------------------

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "chatsvc-dashboard.json"
_METRIC_IN_EXPR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("metrics")) as running:
        yield running


async def _scrape(server: ServerProcess) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def _sample_names(text: str) -> set[str]:
    """Every series name the exposition has or would have (a labelled family with no child
    yet still declares its type)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gauge": ("",),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


async def test_real_server_exposes_runtime_and_latency_metrics(metrics_server: ServerProcess) -> None:
    async with ClientPool() as clients:
        alice = await clients.connect(metrics_server.url, token("metrics-alice"))
        await alice.ok("join", {"room": "metrics"})
        await alice.ok("message", {"room": "metrics", "text": "hello"})
    await asyncio.sleep(1.2)  # two loop-lag probes at least
    text = await _scrape(metrics_server)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return values.get((name, tuple(sorted(labels.items()))))

    assert (value("process_resident_memory_bytes") or 0) > 10_000_000
    assert (value("process_open_fds") or 0) > 3
    assert (value("process_max_fds") or 0) > 0
    assert value("process_cpu_seconds_total") is not None
    assert value("process_start_time_seconds") is not None
    assert any(name == "python_info" for name, _ in values)
    assert (value("chatsvc_event_loop_lag_seconds_count") or 0) >= 2
    assert (value("chatsvc_store_latency_seconds_count", op="append") or 0) >= 1
    # The in-process bus publishes nothing; the histogram is declared for the Kafka bus.
    assert value("chatsvc_bus_publish_latency_seconds_count") == 0
    assert (value("chatsvc_messages_in_total") or 0) >= 1


async def test_every_metric_the_dashboard_queries_exists(metrics_server: ServerProcess) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queried = {name for expr in exprs for name in _METRIC_IN_EXPR.findall(expr)}
    variables = [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    queried |= {name for query in variables for name in _METRIC_IN_EXPR.findall(query + "{")}
    queried -= {"label_values"}
    assert len(queried) >= 15, queried
    missing = queried - _sample_names(await _scrape(metrics_server))
    assert not missing, f"the dashboard queries series /metrics does not have: {sorted(missing)}"
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("connections", "messages", "errors", "loop lag", "store", "bus", "cpu", "memory"):
        assert topic in titles, topic
    assert "file descriptors" in titles and "recoveries" in titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


async def test_kafka_publishes_are_timed(server_factory: ServerFactory) -> None:
    env = replica_env(kafka_env(), tls=False, topic=new_topic())
    server = server_factory(name="kafka-metrics", wait="/readyz", **env)
    async with ClientPool() as clients:
        alice = await clients.connect(server.url, token("metrics-kafka"))
        await alice.ok("join", {"room": "kafka-metrics"})
        for i in range(3):
            await alice.ok("message", {"room": "kafka-metrics", "text": f"m{i}"})
    families = {f.name: f for f in text_string_to_metric_families(await _scrape(server))}
    samples = {s.name: s.value for s in families["chatsvc_bus_publish_latency_seconds"].samples}
    assert samples["chatsvc_bus_publish_latency_seconds_count"] >= 3
    assert samples["chatsvc_bus_publish_latency_seconds_sum"] > 0
