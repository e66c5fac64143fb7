"""Prometheus metrics, in a registry of the app's own (per worker; `metrics_group` adds workers up)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# `*_created` timestamps double the output and no dashboard here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Tally:
    """A counter for the hot path: a plain int, read by Prometheus at scrape time.

    Writers bump it once per wake-up, tens of thousands of times a
    second; a `Counter` takes a lock and three calls for each.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class _DeliveredCollector(Collector):
    """Exports `realtime_events_delivered_total` from one `Tally` per transport."""

    def __init__(self, tallies: dict[str, Tally]) -> None:
        self._tallies = tallies

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for transport, tally in self._tallies.items():
            family.add_metric([transport], tally.count)
        return [family]

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "realtime_events_delivered", "Events written to clients.", labels=["transport"]
        )


class Metrics:
    """The service's metrics; `transport` labels are the transports it serves."""

    def __init__(self, transports: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "realtime_connections",
            "Open client connections.",
            ["transport"],
            registry=self.registry,
        )
        self.events_published = Counter(
            "realtime_events_published",
            "Events accepted for publishing by this worker.",
            registry=self.registry,
        )
        transports = tuple(transports)
        self.events_delivered = {transport: Tally() for transport in transports}
        self.registry.register(_DeliveredCollector(self.events_delivered))
        self.slow_consumer_disconnects = Counter(
            "realtime_slow_consumer_disconnects",
            "Clients disconnected because their outbound queue was full.",
            ["transport"],
            registry=self.registry,
        )
        self.rejected_connections = Counter(
            "realtime_rejected_connections",
            "Connections refused because the worker was at MAX_CONNECTIONS or shutting down.",
            ["transport"],
            registry=self.registry,
        )
        self.broadcaster_up = Gauge(
            "realtime_broadcaster_up",
            "1 while the broadcaster can publish and deliver, else 0.",
            registry=self.registry,
        )
        for transport in transports:
            # Export every series from the start, at zero.
            self.connections.labels(transport)
            self.slow_consumer_disconnects.labels(transport)
            self.rejected_connections.labels(transport)

    def track_broadcaster(self, is_up: Callable[[], bool]) -> None:
        """Read `realtime_broadcaster_up` from `is_up` at every scrape."""
        self.broadcaster_up.set_function(lambda: 1.0 if is_up() else 0.0)
