"""Drift of a version's primary traffic against its reference sample.

DuckDB does the heavy part: it parses the logged request bodies, unnests every instance into
(feature, value) pairs beside the reference sample's, and hands back counts per value (per
time bucket). The statistics run on those counts (agent/analysis/drift_stats.py). Only
`primary` rows with status 200 count: replay and shadow rows are not the users' traffic.

A feature with more than GRID distinct values is counted on GRID equal-width bins between
its minimum and maximum: the KS statistic is then exact up to the mass of one bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from agent.analysis.drift_stats import (
    CategoricalDrift,
    Decision,
    DriftThresholds,
    NumericDrift,
    categorical_drift,
    decide,
    merged_counts,
    numeric_drift,
)
from agent.store import Store

GRID = 2048
REFERENCE = -1  # the bucket number of the reference sample


@dataclass(frozen=True)
class FeatureResult:
    feature: str
    result: NumericDrift | CategoricalDrift
    decision: Decision


@dataclass(frozen=True)
class BucketReport:
    start: datetime
    end: datetime
    rows: int  # instances of current traffic
    features: list[FeatureResult]
    prediction: FeatureResult | None


@dataclass(frozen=True)
class DriftSource:
    """What one version's drift needs: its reference sample and input feature names."""

    model: str
    version: str
    reference: Path
    features: list[str]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _current_sql(buckets: int) -> str:
    return f"""
        SELECT least(floor((epoch(ts) - epoch(?::TIMESTAMP)) / ?), {buckets - 1})::INTEGER
                   AS bucket,
               from_json(input, '{{"instances": "DOUBLE[][]"}}').instances AS xs,
               from_json(output, '{{"predictions": [{{"label": "VARCHAR"}}]}}').predictions
                   AS ps
        FROM requests
        WHERE model = ? AND version = ? AND role = 'primary' AND status = 200
          AND ts >= ? AND ts < ?
    """


def value_counts(
    store: Store,
    source: DriftSource,
    since: datetime,
    until: datetime,
    buckets: int = 1,
    only: list[int] | None = None,
) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """(bucket, feature index) → (values, counts); bucket REFERENCE is the reference sample."""
    indexes = only if only is not None else list(range(len(source.features)))
    columns = ", ".join(f"{_quote(source.features[i])}::DOUBLE" for i in indexes)
    width = max((until - since).total_seconds() / buckets, 1e-6)
    rows = store.query(
        f"""
        WITH ref AS (SELECT [{columns}] AS x FROM read_parquet(?)),
        instances AS (SELECT bucket, unnest(xs) AS x FROM ({_current_sql(buckets)})),
        cur AS (SELECT bucket, list_select(x, ?::INTEGER[]) AS x FROM instances),
        long AS (
            SELECT {REFERENCE} AS bucket, f, x[f + 1] AS v FROM ref, range(?) t(f)
            UNION ALL
            SELECT bucket, f, x[f + 1] AS v FROM cur, range(?) t(f)
        ),
        clean AS (SELECT * FROM long WHERE v IS NOT NULL AND isfinite(v)),
        bounds AS (
            SELECT f, count(DISTINCT v) AS nd, min(v) AS lo, max(v) AS hi FROM clean GROUP BY f
        )
        SELECT bucket, f,
               CASE WHEN nd <= {GRID} OR hi = lo THEN v
                    ELSE lo + (least(floor((v - lo) / (hi - lo) * {GRID}), {GRID - 1}) + 0.5)
                              * (hi - lo) / {GRID}
               END AS v,
               count(*) AS n
        FROM clean JOIN bounds USING (f)
        GROUP BY ALL
        ORDER BY bucket, f, v
        """,
        [
            str(source.reference),
            since,
            width,
            source.model,
            source.version,
            since,
            until,
            [i + 1 for i in indexes],
            len(indexes),
            len(indexes),
        ],
    )
    grouped: dict[tuple[int, int], tuple[list[float], list[int]]] = {}
    for r in rows:
        values, counts = grouped.setdefault((r["bucket"], indexes[r["f"]]), ([], []))
        values.append(r["v"])
        counts.append(r["n"])
    return {k: (np.array(v, dtype=float), np.array(c)) for k, (v, c) in grouped.items()}


def label_counts(
    store: Store, source: DriftSource, since: datetime, until: datetime, buckets: int = 1
) -> dict[int, dict[str, int]] | None:
    """Predicted labels per bucket, or None when the reference sample has no predictions."""
    columns = {
        r["column_name"]
        for r in store.query("DESCRIBE SELECT * FROM read_parquet(?)", [str(source.reference)])
    }
    if "prediction" not in columns:
        return None
    width = max((until - since).total_seconds() / buckets, 1e-6)
    rows = store.query(
        f"""
        SELECT {REFERENCE} AS bucket, prediction::VARCHAR AS label, count(*) AS n
        FROM read_parquet(?) GROUP BY ALL
        UNION ALL
        SELECT bucket, p.label, count(*) AS n
        FROM (SELECT bucket, unnest(ps) AS p FROM ({_current_sql(buckets)}))
        WHERE p.label IS NOT NULL
        GROUP BY ALL
        """,
        [str(source.reference), since, width, source.model, source.version, since, until],
    )
    out: dict[int, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["bucket"], {})[r["label"]] = r["n"]
    return out


def drift_reports(
    store: Store,
    source: DriftSource,
    since: datetime,
    until: datetime,
    thresholds: DriftThresholds,
    buckets: int = 1,
) -> list[BucketReport]:
    """One report per time bucket of [since, until)."""
    counts = value_counts(store, source, since, until, buckets)
    labels = label_counts(store, source, since, until, buckets)
    empty = (np.array([]), np.array([], dtype=int))
    width = (until - since) / buckets
    reports = []
    for b in range(buckets):
        results = []
        for i in range(len(source.features)):
            grid, ref, cur = merged_counts(
                *counts.get((REFERENCE, i), empty), *counts.get((b, i), empty)
            )
            results.append(numeric_drift(grid, ref, cur))
        names = list(source.features)
        if labels is not None:
            results.append(categorical_drift(labels.get(REFERENCE, {}), labels.get(b, {})))
            names.append("prediction")
        decisions = decide(results, thresholds)
        features = [
            FeatureResult(n, r, d) for n, r, d in zip(names, results, decisions, strict=True)
        ]
        prediction = features.pop() if labels is not None else None
        rows = max((r.n_cur for r in results), default=0)
        reports.append(
            BucketReport(since + width * b, since + width * (b + 1), rows, features, prediction)
        )
    return reports


def histogram(
    store: Store, source: DriftSource, feature: str, since: datetime, until: datetime, bins: int
) -> tuple[list[float], np.ndarray, np.ndarray]:
    """Bin edges and the reference's and current traffic's fractions in each bin."""
    i = source.features.index(feature)
    counts = value_counts(store, source, since, until, only=[i])
    empty = (np.array([]), np.array([], dtype=int))
    grid, ref, cur = merged_counts(*counts.get((REFERENCE, i), empty), *counts.get((0, i), empty))
    if len(grid) == 0:
        return [], np.array([]), np.array([])
    lo, hi = float(grid[0]), float(grid[-1])
    if len(grid) <= bins:  # few distinct values (pixels, categories): one bar each
        edges = [*grid.tolist(), hi + 1.0]
        where = np.arange(len(grid))
    else:
        edges = np.linspace(lo, hi, bins + 1).tolist()
        where = np.minimum(((grid - lo) / (hi - lo) * bins).astype(int), bins - 1)
    n_bins = len(edges) - 1
    ref_bins = np.bincount(where, weights=ref, minlength=n_bins)
    cur_bins = np.bincount(where, weights=cur, minlength=n_bins)
    return (
        edges,
        ref_bins / max(ref_bins.sum(), 1),
        cur_bins / max(cur_bins.sum(), 1),
    )
