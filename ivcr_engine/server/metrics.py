"""The server's Prometheus metrics through ``prometheus_client``, in a registry of the app's own
(two apps in one process count apart): turn latency per intent, micro-batch sizes, index
refreshes; the queue depth, the sessions open and the LLM worker's counters are read when
scraped."""
from __future__ import annotations

from typing import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class _LLMCollector:
    """The LLM responder's ``stats()`` (failures by kind, worker starts, given up), when one is used."""

    def __init__(self, stats: Callable[[], dict] | None):
        self.stats = stats

    def collect(self):
        if self.stats is None:
            return
        s = self.stats()
        failures = CounterMetricFamily("ivcr_llm_failures", "LLM worker failures by kind (each reply it cost kept "
                                                            "the engine's words only)", labels=["kind"])
        for kind, n in sorted(s["failures"].items()):
            failures.add_metric([kind], n)
        yield failures
        yield CounterMetricFamily("ivcr_llm_worker_starts", "LLM worker processes started", value=s["starts"])
        yield GaugeMetricFamily("ivcr_llm_gave_up", "1 when the LLM worker failed too often in a row and is no "
                                                    "longer restarted", value=int(s["gave_up"]))


class ServerMetrics:
    def __init__(self, queue_depth: Callable[[], int], sessions_open: Callable[[], int],
                 llm_stats: Callable[[], dict] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.turns = Histogram("ivcr_turn_seconds", "Dialogue turn latency by intent", ["intent"],
                               buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batches = Histogram("ivcr_batch_size", "Requests per micro-batch (encoder and search)",
                                 buckets=BATCH_BUCKETS, registry=self.registry)
        self.refreshes = Counter("ivcr_index_refreshes", "Times the live index mapped new commits",
                                 registry=self.registry)
        Gauge("ivcr_queue_depth", "Requests waiting for a micro-batch", registry=self.registry).set_function(queue_depth)
        Gauge("ivcr_sessions_open", "Sessions stored and not expired",
              registry=self.registry).set_function(sessions_open)
        self.registry.register(_LLMCollector(llm_stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)
