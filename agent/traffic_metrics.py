"""Per-version traffic for Prometheus, counted as the agent ingests its host's request log:
calls by model, version, role and status class, a latency histogram, and fallbacks booked on
the version that failed. Counted once per stored call (after the ingest transaction commits,
so a retried batch is not counted twice) and kept in memory: a restart resets them, as
Prometheus counters may. Each agent exposes its own host's share; Prometheus sums the fleet.

The label sets are bounded: models and versions are what is deployed, roles are four, and a
status is its class (2xx, 4xx, 5xx, or none when the version never answered)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# Seconds: a small model answers in a few ms, a large one in hundreds; 10 s is the timeout.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# One row per (model, version, role, status class, failed version) of an ingested batch: the
# calls, their seconds, and how many took at most each bucket's bound (cumulative).
TRAFFIC_SQL = f"""
SELECT model, version, role,
       CASE WHEN status BETWEEN 200 AND 299 THEN '2xx'
            WHEN status BETWEEN 400 AND 499 THEN '4xx'
            WHEN status >= 500 THEN '5xx' ELSE 'none' END AS code,
       fallback_from,
       count(*) AS calls,
       coalesce(sum(total_ms), 0) / 1000.0 AS seconds,
       [{", ".join(f"count(*) FILTER (WHERE total_ms <= {b * 1000})" for b in LATENCY_BUCKETS_S)}]
           AS at_most
FROM {{table}}
GROUP BY ALL
"""


@dataclass(frozen=True)
class TrafficCount:
    model: str
    version: str
    role: str
    code: str
    fallback_from: str | None
    calls: int
    seconds: float
    at_most: tuple[int, ...]  # calls within each of LATENCY_BUCKETS_S, cumulative


def traffic_counts(rows: Sequence[tuple]) -> list[TrafficCount]:
    return [
        TrafficCount(m, v, r, c, f, int(n), float(s), tuple(int(x) for x in at))
        for m, v, r, c, f, n, s, at in rows
    ]


class TrafficMetrics(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str, str, str], int] = {}
        self._fallbacks: dict[tuple[str, str], int] = {}
        # (model, version, role) -> (count, seconds, cumulative bucket counts)
        self._latency: dict[tuple[str, str, str], tuple[int, float, tuple[int, ...]]] = {}

    def observe(self, counts: Sequence[TrafficCount]) -> None:
        with self._lock:
            for c in counts:
                key = (c.model, c.version, c.role, c.code)
                self._calls[key] = self._calls.get(key, 0) + c.calls
                if c.fallback_from:
                    failed = (c.model, c.fallback_from)
                    self._fallbacks[failed] = self._fallbacks.get(failed, 0) + c.calls
                where = (c.model, c.version, c.role)
                n, s, at = self._latency.get(where, (0, 0.0, (0,) * len(LATENCY_BUCKETS_S)))
                summed = tuple(a + b for a, b in zip(at, c.at_most, strict=True))
                self._latency[where] = (n + c.calls, s + c.seconds, summed)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            calls, fallbacks = dict(self._calls), dict(self._fallbacks)
            latency = dict(self._latency)
        requests = CounterMetricFamily(
            "trackside_requests",
            "calls logged by this host's routers, by the version that answered",
            labels=["model", "version", "role", "code"],
        )
        for call_key, n in sorted(calls.items()):
            requests.add_metric(list(call_key), n)
        yield requests
        failed = CounterMetricFamily(
            "trackside_request_fallbacks",
            "calls a version failed that its fallback answered, booked on the failed version",
            labels=["model", "version"],
        )
        for version_key, n in sorted(fallbacks.items()):
            failed.add_metric(list(version_key), n)
        yield failed
        histogram = HistogramMetricFamily(
            "trackside_request_duration_seconds",
            "a call's time through the router, as logged",
            labels=["model", "version", "role"],
        )
        for where, (n, seconds, at_most) in sorted(latency.items()):
            buckets = [(repr(b), float(x)) for b, x in zip(LATENCY_BUCKETS_S, at_most, strict=True)]
            histogram.add_metric(list(where), [*buckets, ("+Inf", float(n))], sum_value=seconds)
        yield histogram
