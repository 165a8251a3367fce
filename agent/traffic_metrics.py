"""Per-version traffic for Prometheus, counted as the agent ingests its host's request log:
calls by model, version, role and status class (shadow copies sent are role="shadow"), a
latency histogram, fallbacks booked on the version that failed, and per model the records
its routers dropped (a full spool) and the shadow copies they shed (too busy). Counted once
per stored call (after the ingest transaction commits,
so a retried batch is not counted twice) and kept in memory: a restart resets them, as
Prometheus counters may. Each agent exposes its own host's share; Prometheus sums the fleet.

The label sets are bounded: models and versions are what is deployed, roles are four, and a
status is its class (2xx, 4xx, 5xx, or none when the version never answered)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

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


# Each router's running totals as its latest file in the batch carried them.
ROUTER_SQL = """
SELECT model, replica, max(dropped_total), max(shadows_shed_total)
FROM {table} WHERE replica IS NOT NULL GROUP BY ALL
"""


@dataclass(frozen=True)
class RouterTotals:
    model: str
    replica: str
    dropped: int  # records the router dropped since it started
    shed: int  # shadow copies it shed since it started


@dataclass(frozen=True)
class Traffic:
    """What one ingested batch adds to the counters."""

    calls: list[TrafficCount] = field(default_factory=list)
    routers: list[RouterTotals] = field(default_factory=list)


def traffic_of(cur: Any, table: str) -> Traffic:
    """The counts of the calls in `table` (a DuckDB cursor inside the ingest transaction)."""
    calls = [
        TrafficCount(m, v, r, c, f, int(n), float(s), tuple(int(x) for x in at))
        for m, v, r, c, f, n, s, at in cur.execute(TRAFFIC_SQL.format(table=table)).fetchall()
    ]
    routers = [
        RouterTotals(m, rep, int(d or 0), int(s or 0))
        for m, rep, d, s in cur.execute(ROUTER_SQL.format(table=table)).fetchall()
    ]
    return Traffic(calls, routers)


class TrafficMetrics(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str, str, str], int] = {}
        self._fallbacks: dict[tuple[str, str], int] = {}
        # (model, version, role) -> (count, seconds, cumulative bucket counts)
        self._latency: dict[tuple[str, str, str], tuple[int, float, tuple[int, ...]]] = {}
        # (model, replica) -> its totals as last seen; model -> what they added up to
        self._routers: dict[tuple[str, str], RouterTotals] = {}
        self._dropped: dict[str, int] = {}
        self._shed: dict[str, int] = {}

    def observe(self, traffic: Traffic) -> None:
        with self._lock:
            self._count_routers(traffic.routers)
            for c in traffic.calls:
                key = (c.model, c.version, c.role, c.code)
                self._calls[key] = self._calls.get(key, 0) + c.calls
                if c.fallback_from:
                    failed = (c.model, c.fallback_from)
                    self._fallbacks[failed] = self._fallbacks.get(failed, 0) + c.calls
                where = (c.model, c.version, c.role)
                n, s, at = self._latency.get(where, (0, 0.0, (0,) * len(LATENCY_BUCKETS_S)))
                summed = tuple(a + b for a, b in zip(at, c.at_most, strict=True))
                self._latency[where] = (n + c.calls, s + c.seconds, summed)

    def _count_routers(self, totals: Sequence[RouterTotals]) -> None:
        """A router's totals rise, or start again from 0 when it restarts (its new value
        then counts whole), as Prometheus' increase() reads a counter."""
        for t in totals:
            last = self._routers.get((t.model, t.replica))
            for kept, now, before in (
                (self._dropped, t.dropped, last.dropped if last else 0),
                (self._shed, t.shed, last.shed if last else 0),
            ):
                rise = now - before if now >= before else now
                kept[t.model] = kept.get(t.model, 0) + rise
            self._routers[(t.model, t.replica)] = t

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            calls, fallbacks = dict(self._calls), dict(self._fallbacks)
            latency = dict(self._latency)
            dropped, shed = dict(self._dropped), dict(self._shed)
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
        for name, doc, values in (
            (
                "trackside_spool_dropped_records",
                "request records routers dropped (spool full)",
                dropped,
            ),
            (
                "trackside_shadow_shed",
                "shadow copies routers shed (too many calls in flight)",
                shed,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["model"])
            for model, n in sorted(values.items()):
                family.add_metric([model], n)
            yield family
