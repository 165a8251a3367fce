"""Per-version Prometheus series counted at ingest, through the real spool and DuckDB: calls by
the version that answered, fallbacks on the version that failed, the latency histogram, and
no double count when the same files are read again."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.ingest import ingest_once
from agent.store import Store
from agent.traffic_metrics import TrafficMetrics
from serve.spool import SpoolWriter
from tests.records import make_record


def samples(metrics: TrafficMetrics) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_calls_fallbacks_and_latency_per_version(tmp_path):
    store = Store(tmp_path / "agent.duckdb")
    writer = SpoolWriter(tmp_path / "spool", "test")
    for i in range(10):
        writer.append(make_record(i, version="v1", total_ms=3.0))
    for i in range(10, 12):  # v2 failed, v1 answered
        writer.append(make_record(i, version="v1", fallback_from="v2", total_ms=30.0))
    for i in range(12, 15):
        writer.append(make_record(i, version="v2", role="shadow", status=500, total_ms=700.0))
    writer.flush()
    metrics = TrafficMetrics()
    result = ingest_once(store, tmp_path / "spool", delete=False)
    metrics.observe(result.traffic)
    metrics.observe(ingest_once(store, tmp_path / "spool", delete=False).traffic)  # read again
    got = samples(metrics)

    def one(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    base = {"model": "digits"}
    assert one("trackside_requests_total", **base, version="v1", role="primary", code="2xx") == 12
    assert one("trackside_requests_total", **base, version="v2", role="shadow", code="5xx") == 3
    assert one("trackside_request_fallbacks_total", **base, version="v2") == 2
    latency = {**base, "version": "v1", "role": "primary"}
    assert one("trackside_request_duration_seconds_count", **latency) == 12
    assert one("trackside_request_duration_seconds_bucket", **latency, le="0.005") == 10
    assert one("trackside_request_duration_seconds_bucket", **latency, le="0.05") == 12
    assert abs(one("trackside_request_duration_seconds_sum", **latency) - 0.09) < 1e-9
    shadow = {**base, "version": "v2", "role": "shadow"}
    assert one("trackside_request_duration_seconds_bucket", **shadow, le="0.5") == 0
    assert one("trackside_request_duration_seconds_bucket", **shadow, le="1.0") == 3
    store.close()


def test_records_dropped_and_shadows_shed_by_each_router_add_up_per_model(tmp_path):
    """Each router writes its running totals into every file; the agent adds their rises
    (a router that restarts begins again at 0, and its new value counts whole)."""
    store = Store(tmp_path / "agent.duckdb")
    spool = tmp_path / "spool"
    metrics = TrafficMetrics()

    def file(writer: SpoolWriter, i: int, dropped: int, shed: int) -> None:
        writer.dropped, writer.shadows_shed = dropped, shed
        writer.append(make_record(i, replica=writer.writer_id))
        writer.flush()
        metrics.observe(ingest_once(store, spool).traffic)

    a, b = SpoolWriter(spool, "router-a"), SpoolWriter(spool, "router-b")
    file(a, 0, dropped=3, shed=10)
    file(b, 1, dropped=0, shed=5)
    file(a, 2, dropped=4, shed=12)  # +1, +2
    restarted = SpoolWriter(spool, "router-b")
    file(restarted, 3, dropped=2, shed=1)  # began again: +2, +1
    got = samples(metrics)
    assert got[("trackside_spool_dropped_records_total", (("model", "digits"),))] == 3 + 1 + 2
    assert got[("trackside_shadow_shed_total", (("model", "digits"),))] == 10 + 5 + 2 + 1
    store.close()
