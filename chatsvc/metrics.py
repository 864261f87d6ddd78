"""Prometheus metrics, one registry per app (no process-global state)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from bisect import bisect_left
from collections.abc import Iterator
from time import time as wall_clock
from types import TracebackType

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

#: Latency buckets shared by the store and the bus (seconds).
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class _StoreTimer:
    """Observes the duration of one store call into a histogram child (``async with``).

    A plain class: ``asynccontextmanager`` costs a generator and two awaits per call, on
    every message's path.
    """

    __slots__ = ("_child", "_started")

    def __init__(self, child: _HistogramChild) -> None:
        self._child = child
        self._started = 0.0

    async def __aenter__(self) -> None:
        self._started = time.perf_counter()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._child.observe(time.perf_counter() - self._started)


class Tally(Collector):
    """An unlabelled counter counted in a plain attribute and read at scrape time.

    Exposed exactly as a ``prometheus_client.Counter`` of the same name is (``<name>_total``
    and ``<name>_created``, its HELP and TYPE), but :meth:`inc` is one Python call where
    ``Counter.inc`` is six (the observability check, a lock around the value): two of them
    count every chat message. For counters only touched from the event loop's thread, as
    everything on the message path is (no lock needed: nothing else writes it).
    """

    __slots__ = ("_created", "_documentation", "_name", "value")

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        # As Counter: a trailing ``_total`` is the sample's suffix, not the family's name.
        self._name = name.removesuffix("_total")
        self._documentation = documentation
        self._created = wall_clock()
        self.value = 0.0
        registry.register(self)

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (non-negative, as for a Counter)."""
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The counter's samples, as ``Counter`` exposes them."""
        created = self._created if _use_created() else None
        yield CounterMetricFamily(self._name, self._documentation, value=self.value, created=created)


def _use_created() -> bool:
    """Whether prometheus_client exposes ``_created`` samples (its
    ``disable_created_metrics()``, ``PROMETHEUS_DISABLE_CREATED_SERIES``), as its own
    counters and histograms ask it."""
    return bool(getattr(prometheus_metrics, "_use_created", True))


class _HistogramChild:
    """One label value's buckets (not cumulative: one count per bound), sum and creation."""

    __slots__ = ("_bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = wall_clock()

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose bound it does not exceed (a NaN in
        none, as prometheus_client's loop does) and add it to the sum."""
        self.sum += amount
        bounds = self._bounds
        i = bisect_left(bounds, amount)
        if i < len(bounds) and amount <= bounds[i]:
            self.counts[i] += 1.0


class LabelledHistogram(Collector):
    """A histogram with one label, exposed exactly as ``prometheus_client.Histogram`` with
    that label is, whose children observe with one Python call and a bisect where
    ``Histogram.observe`` makes about eight (the observability check, a lock per value, a
    loop over the bounds): the store's latency is observed once per chat message. Like
    :class:`Tally`, for the event loop's thread only."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelname: str,
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelname = labelname
        bounds = tuple(float(b) for b in buckets)
        self._bounds = bounds if bounds[-1] == math.inf else (*bounds, math.inf)
        self._children: dict[str, _HistogramChild] = {}
        registry.register(self)

    def labels(self, value: str) -> _HistogramChild:
        """The child for label value ``value`` (created on first use, as ``Histogram.labels``)."""
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = _HistogramChild(self._bounds)
        return child

    def collect(self) -> Iterator[Metric]:
        """The samples ``Histogram`` exposes: cumulative buckets, count, sum, created."""
        name, label, created = self._name, self._labelname, _use_created()
        metric = Metric(name, self._documentation, "histogram")
        les = [floatToGoString(bound) for bound in self._bounds]  # type: ignore[no-untyped-call]
        for value, child in list(self._children.items()):
            acc = 0.0
            for le, count in zip(les, child.counts, strict=True):
                acc += count
                metric.add_sample(f"{name}_bucket", {label: value, "le": le}, acc)
            metric.add_sample(f"{name}_count", {label: value}, acc)
            metric.add_sample(f"{name}_sum", {label: value}, child.sum)
            if created:
                metric.add_sample(f"{name}_created", {label: value}, child.created)
        yield metric


class Metrics:
    """The service's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge("chatsvc_connections", "Open Socket.IO connections", registry=self.registry)
        # Read from presence's O(1) counts at scrape time (chatsvc.app), never set per join.
        self.rooms = Gauge(
            "chatsvc_rooms",
            "Rooms with at least one member: scope=local on this replica, scope=cluster on any",
            ["scope"],
            registry=self.registry,
        )
        # Counted once each per chat message: tallies, the cheapest exact counter (Tally).
        self.messages_in = Tally(
            "chatsvc_messages_in_total",
            "Chat messages accepted from clients and the admin API",
            registry=self.registry,
        )
        self.messages_out = Tally(
            "chatsvc_messages_out_total", "Chat messages emitted to rooms", registry=self.registry
        )
        self.errors = Counter(
            "chatsvc_errors_total", "Errors returned to clients, by code", ["code"], registry=self.registry
        )
        self.connect_rejections = Counter(
            "chatsvc_connect_rejections_total",
            "Refused connections, by code",
            ["code"],
            registry=self.registry,
        )
        self.bad_packets = Counter(
            "chatsvc_bad_packets_total",
            "Undecodable or unexpected packets from clients, by reason (chatsvc.transport.bad_packets)",
            ["reason"],
            registry=self.registry,
        )
        # Observed once per chat message (the append): the cheaper, identically exposed kind.
        self.store_latency = LabelledHistogram(
            "chatsvc_store_latency_seconds",
            "History store call latency",
            "op",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bus_latency = Histogram(
            "chatsvc_bus_publish_latency_seconds",
            "Fan-out bus publish latency, until the broker acknowledged (or the publish failed)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "chatsvc_event_loop_lag_seconds",
            "How late the event loop ran a timer: time every callback waits for a busy loop",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        # CPU, memory, open fds, start time (process_*), the Python version (python_info) and
        # garbage collections (python_gc_*): the process-global collectors read /proc and the
        # interpreter, so registering them on this registry too costs nothing extra.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.bus_published = Counter(
            "chatsvc_bus_published_total", "Messages published to the fan-out bus", registry=self.registry
        )
        self.bus_skipped = Counter(
            "chatsvc_bus_records_skipped_total",
            "Bus records skipped undecoded: own, or a room emit for a room with no local member",
            ["reason"],
            registry=self.registry,
        )
        self.bus_errors = Counter(
            "chatsvc_bus_errors_total", "Fan-out bus failures", ["op"], registry=self.registry
        )
        self.events_read = Counter(
            "chatsvc_events_records_read_total",
            "Records of the events topic this replica read (all partitions, or the wanted ones)",
            registry=self.registry,
        )
        self.events_unheard = Tally(
            "chatsvc_events_records_unheard_total",
            "Events-topic records applied here (dedup window, tail) with nobody here to deliver them to",
            registry=self.registry,
        )
        self.events_partitions_read = Gauge(
            "chatsvc_events_partitions_read",
            "Events topic partitions this replica fetches under KAFKA_EVENTS_ROUTING",
            registry=self.registry,
        )
        self.recoveries = Counter(
            "chatsvc_recoveries_total",
            "Reconnects naming a session (pid): recovered, or fresh (expired, over the bounds, other user)",
            ["outcome"],
            registry=self.registry,
        )
        self.spam_refused = Counter(
            "chatsvc_spam_refused_total",
            "Messages and edits the spam filters refused",
            ["rule"],
            registry=self.registry,
        )
        self.spam_masked = Counter(
            "chatsvc_spam_masked_total",
            "Messages and edits stored with blocklisted words masked",
            registry=self.registry,
        )
        self.replayed = Counter(
            "chatsvc_recovery_replayed_total", "Events replayed to recovered sockets", registry=self.registry
        )

        self._store_ops: dict[str, _HistogramChild] = {}

    def timed_store(self, op: str) -> _StoreTimer:
        """``async with`` around one store call: observes its duration, labelled ``op``."""
        child = self._store_ops.get(op)
        if child is None:
            child = self._store_ops[op] = self.store_latency.labels(op)
        return _StoreTimer(child)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


#: How often the loop-lag probe wakes. Each wake is one timer callback: negligible work.
LOOP_LAG_INTERVAL_SECONDS = 0.5


async def probe_loop_lag(histogram: Histogram, interval: float = LOOP_LAG_INTERVAL_SECONDS) -> None:
    """Until cancelled: sleep ``interval`` and observe how much later than asked the loop
    woke us. A blocked or saturated loop shows here before clients notice."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        histogram.observe(max(0.0, loop.time() - started - interval))


class LoopLagProbe:
    """Runs :func:`probe_loop_lag` as a task between :meth:`start` and :meth:`aclose`."""

    def __init__(self, histogram: Histogram, interval: float = LOOP_LAG_INTERVAL_SECONDS) -> None:
        self._histogram = histogram
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start probing on the running loop."""
        self._task = asyncio.create_task(probe_loop_lag(self._histogram, self._interval), name="loop-lag")

    async def aclose(self) -> None:
        """Stop probing; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
