"""Prometheus metrics, one registry per app (no process-global state)."""

from __future__ import annotations

import time
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class _StoreTimer:
    """Observes the duration of one store call into a histogram child (``async with``).

    A plain class: ``asynccontextmanager`` costs a generator and two awaits per call, on
    every message's path.
    """

    __slots__ = ("_child", "_started")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._started = 0.0

    async def __aenter__(self) -> None:
        self._started = time.perf_counter()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._child.observe(time.perf_counter() - self._started)


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
        self.messages_in = Counter(
            "chatsvc_messages_in_total",
            "Chat messages accepted from clients and the admin API",
            registry=self.registry,
        )
        self.messages_out = Counter(
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
        self.store_latency = Histogram(
            "chatsvc_store_latency_seconds",
            "History store call latency",
            ["op"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.bus_published = Counter(
            "chatsvc_bus_published_total", "Messages published to the fan-out bus", registry=self.registry
        )
        self.bus_errors = Counter(
            "chatsvc_bus_errors_total", "Fan-out bus failures", ["op"], registry=self.registry
        )
        self.recoveries = Counter(
            "chatsvc_recoveries_total",
            "Reconnects naming a session (pid): recovered, or fresh (expired, over the bounds, other user)",
            ["outcome"],
            registry=self.registry,
        )
        self.replayed = Counter(
            "chatsvc_recovery_replayed_total", "Events replayed to recovered sockets", registry=self.registry
        )

        self._store_ops: dict[str, Histogram] = {}

    def timed_store(self, op: str) -> _StoreTimer:
        """``async with`` around one store call: observes its duration, labelled ``op``."""
        child = self._store_ops.get(op)
        if child is None:
            child = self._store_ops[op] = self.store_latency.labels(op)
        return _StoreTimer(child)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
