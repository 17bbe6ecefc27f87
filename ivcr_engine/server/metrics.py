"""Prometheus text exposition for the server, written by hand (a few histograms and gauges are
all it needs): turn latency per intent, batch sizes, queue depth, sessions open."""
from __future__ import annotations

import bisect
import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    def __init__(self, name: str, help_: str, buckets: tuple, label: str | None = None):
        self.name, self.help, self.buckets, self.label = name, help_, buckets, label
        self._series: dict[str, list] = {}  # label value -> [bucket counts..., +Inf count, sum]
        self._lock = threading.Lock()

    def observe(self, value: float, label: str = "") -> None:
        with self._lock:
            s = self._series.setdefault(label, [0] * (len(self.buckets) + 1) + [0.0])
            s[bisect.bisect_left(self.buckets, value)] += 1
            s[-1] += value

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            series = {k: list(v) for k, v in self._series.items()}
        for label, s in sorted(series.items()):
            lab = f'{self.label}="{_escape(label)}",' if self.label else ""
            cum = 0
            for bound, n in zip(self.buckets + ("+Inf",), s[:-1]):
                cum += n
                out.append(f'{self.name}_bucket{{{lab}le="{bound}"}} {cum}')
            brace = f"{{{lab.rstrip(',')}}}" if lab else ""
            out.append(f"{self.name}_sum{brace} {s[-1]:.6f}")
            out.append(f"{self.name}_count{brace} {cum}")
        return out


def gauge(name: str, help_: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {value:g}"]


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ServerMetrics:
    def __init__(self):
        self.turns = Histogram("ivcr_turn_seconds", "Dialogue turn latency by intent", LATENCY_BUCKETS, "intent")
        self.batches = Histogram("ivcr_batch_size", "Requests per micro-batch (encoder and search)", BATCH_BUCKETS)
        self.refreshes = 0

    def render(self, queue_depth: int, sessions_open: int, llm: dict | None = None) -> str:
        """``llm``: the LLM responder's ``stats()`` (failures by kind, worker starts), when one is used."""
        lines = self.turns.render() + self.batches.render()
        lines += gauge("ivcr_queue_depth", "Requests waiting for a micro-batch", queue_depth)
        lines += gauge("ivcr_sessions_open", "Sessions stored and not expired", sessions_open)
        lines += ["# HELP ivcr_index_refreshes_total Times the live index mapped new commits",
                  "# TYPE ivcr_index_refreshes_total counter", f"ivcr_index_refreshes_total {self.refreshes}"]
        if llm is not None:
            lines += ["# HELP ivcr_llm_failures_total LLM worker failures by kind (each reply it cost kept "
                      "the engine's words only)", "# TYPE ivcr_llm_failures_total counter"]
            lines += [f'ivcr_llm_failures_total{{kind="{k}"}} {n}' for k, n in sorted(llm["failures"].items())]
            lines += ["# HELP ivcr_llm_worker_starts_total LLM worker processes started",
                      "# TYPE ivcr_llm_worker_starts_total counter", f"ivcr_llm_worker_starts_total {llm['starts']}"]
            lines += gauge("ivcr_llm_gave_up", "1 when the LLM worker failed too often in a row and is no "
                           "longer restarted", int(llm["gave_up"]))
        return "\n".join(lines) + "\n"
