"""Summaries folded at ingest, on a real DuckDB file from real spool files: calls booked on
the version they were routed to (a fallback is the failing version's error and fallback),
inputs in either documented form counted, nothing folded twice, and two hosts' summaries
adding up to the summary of all their calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pytest

from agent.analysis.bins import bin_counts
from agent.ingest import ingest_once
from agent.local_log import LocalRequestLog
from agent.request_log import DriftSource
from agent.store import Store
from scripts.bench.synthetic_model import FEATURES, MODEL, register
from serve.spool import SpoolWriter
from tests.records import make_record

T0 = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0)
RNG = np.random.default_rng(5)


@pytest.fixture(scope="module")
def model_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synthetic")
    reference = tmp / "reference.parquet"
    cols = {f: RNG.normal(0, 1, 5000) for f in FEATURES}
    cols["f19"] = RNG.poisson(3, 5000).astype(float)
    cols["prediction"] = (cols["f0"] > 0).astype(np.int64)
    con = duckdb.connect()
    con.register("ref", cols)
    con.execute(f"COPY ref TO '{reference}' (FORMAT parquet)")
    con.close()
    return register(tmp / "models", reference)


@pytest.fixture
def store(tmp_path, model_store):
    s = Store(tmp_path / "agent.duckdb", model_store=model_store)
    yield s
    s.close()


def body(row: np.ndarray, keyed: bool = False) -> str:
    if keyed:
        return json.dumps({"instances": [dict(zip(FEATURES, row.tolist(), strict=True))]})
    return json.dumps({"instances": [row.tolist()]})


def spool_calls(tmp_path, records, writer="rep") -> None:
    w = SpoolWriter(tmp_path / "spool", writer)
    for r in records:
        w.append(r)
    w.flush()


def call(i: int, **kw):
    row = kw.pop("row", RNG.normal(0, 1, len(FEATURES)))
    fields = {
        "model": MODEL,
        "version": "v1",
        "ts": T0 + timedelta(seconds=i % 120),
        "input": body(row, kw.pop("keyed", False)),
        "output": json.dumps({"predictions": [{"label": int(row[0] > 0)}]}),
        "total_ms": 5.0 + i % 7,
    }
    fields.update(kw)
    return make_record(i, **fields)


def calls_table(store) -> dict:
    rows = store.query(
        "SELECT version, role, sum(calls) c, sum(errors) e, sum(fallbacks) f"
        " FROM summary_calls GROUP BY ALL"
    )
    return {(r["version"], r["role"]): (r["c"], r["e"], r["f"]) for r in rows}


def test_a_fallback_is_the_failing_versions_error_and_fallback(store, tmp_path):
    records = [call(i) for i in range(10)]
    records += [call(10 + i, version="v1", fallback_from="v2") for i in range(4)]  # v2 failed
    records += [call(20 + i, version="v2") for i in range(6)]
    records += [call(30, version="v2", status=503)]  # no fallback configured
    records += [call(40 + i, version="v2", role="shadow") for i in range(3)]
    spool_calls(tmp_path, records)
    result = ingest_once(store, tmp_path / "spool")
    assert result.folded == len(records)
    assert calls_table(store) == {
        ("v1", "primary"): (10, 0, 0),
        ("v2", "primary"): (11, 5, 4),
        ("v2", "shadow"): (3, 0, 0),
    }
    # The label of a fallback's answer is the answering version's.
    labels = store.query("SELECT version, sum(n) n FROM summary_labels GROUP BY ALL ORDER BY 1")
    assert [(r["version"], r["n"]) for r in labels] == [("v1", 14), ("v2", 6)]


def test_inputs_as_lists_and_as_objects_are_both_counted(store, tmp_path):
    rows = RNG.normal(0, 1, (40, len(FEATURES)))
    spool_calls(tmp_path, [call(i, row=rows[i], keyed=i % 2 == 1) for i in range(40)])
    ingest_once(store, tmp_path / "spool")
    per_feature = store.query(
        "SELECT feature, sum(n) n FROM summary_features GROUP BY ALL ORDER BY feature"
    )
    assert [r["n"] for r in per_feature] == [40] * len(FEATURES)
    bins = store.summaries.bins(MODEL, "v1")
    expected, _ = bin_counts(bins.bins[3], rows[:, 3])
    got = store.query("SELECT bin, n FROM summary_features WHERE feature = 3")
    assert {r["bin"]: r["n"] for r in got} == {i: n for i, n in enumerate(expected) if n}


def test_reingested_files_are_not_folded_twice(store, tmp_path):
    spool_calls(tmp_path, [call(i) for i in range(25)])
    assert ingest_once(store, tmp_path / "spool", delete=False).folded == 25
    assert ingest_once(store, tmp_path / "spool").folded == 0
    assert calls_table(store)[("v1", "primary")] == (25, 0, 0)


def test_a_duplicate_client_request_id_is_two_calls(store, tmp_path):
    spool_calls(tmp_path, [call(i, request_id="same-id") for i in range(3)])
    assert ingest_once(store, tmp_path / "spool").rows_inserted == 3
    assert calls_table(store)[("v1", "primary")] == (3, 0, 0)


def test_two_hosts_summaries_add_up_to_the_summary_of_all_calls(tmp_path, model_store):
    records = [call(i) for i in range(60)]
    apart = []
    for name, part in (("a", records[:25]), ("b", records[25:])):
        s = Store(tmp_path / f"{name}.duckdb", model_store=model_store)
        spool_calls(tmp_path / name, part, writer=name)
        ingest_once(s, tmp_path / name / "spool")
        apart.append(s)
    together = Store(tmp_path / "all.duckdb", model_store=model_store)
    spool_calls(tmp_path / "all", records)
    ingest_once(together, tmp_path / "all" / "spool")
    q = "SELECT feature, bin, sum(n) n, sum(vsum) v FROM summary_features GROUP BY ALL"
    merged: dict = {}
    for s in apart:
        for r in s.query(q):
            n, v = merged.get((r["feature"], r["bin"]), (0, 0.0))
            merged[(r["feature"], r["bin"])] = (n + r["n"], v + r["v"])
    whole = {(r["feature"], r["bin"]): (r["n"], r["v"]) for r in together.query(q)}
    assert merged.keys() == whole.keys()
    for key, (n, v) in whole.items():
        assert merged[key][0] == n and merged[key][1] == pytest.approx(v)
    for s in [*apart, together]:
        s.close()


def test_latency_telemetry_reads_the_summaries(store, tmp_path):
    ms = RNG.lognormal(np.log(12), 0.5, 3000)
    spool_calls(tmp_path, [call(i, total_ms=float(ms[i])) for i in range(3000)])
    ingest_once(store, tmp_path / "spool")
    log = LocalRequestLog(store)
    points = log.latency(MODEL, None, T0, T0 + timedelta(minutes=2), 120)
    (p,) = points
    assert p.requests == 3000 and p.error_rate == 0
    assert p.p50_ms == pytest.approx(np.quantile(ms, 0.5), rel=0.011)
    assert p.p99_ms == pytest.approx(np.quantile(ms, 0.99), rel=0.011)
    assert p.rps == pytest.approx(3000 / 120)


def test_drift_counts_come_from_the_summaries_on_the_versions_bins(store, tmp_path, model_store):
    spool_calls(tmp_path, [call(i) for i in range(200)])
    ingest_once(store, tmp_path / "spool")
    source = DriftSource(MODEL, "v1", model_store / MODEL / "v1" / "reference.parquet", FEATURES)
    counts = LocalRequestLog(store).feature_counts(source, T0, T0 + timedelta(minutes=2))
    values, current = counts[(0, 0)]
    ref_values, reference = counts[(-1, 0)]
    assert current.sum() == 200 and reference.sum() == 5000
    assert np.array_equal(values, ref_values) and np.all(np.diff(values) > 0)
