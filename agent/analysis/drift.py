"""Drift of a version's primary traffic against its reference sample.

The request log (agent/request_log.py) hands over counts per value of every feature and of the
predicted label, per time bucket, beside the reference sample's; the statistics run on those
counts (agent/analysis/drift_stats.py). Only `primary` calls with status 200 count: replay and
shadow calls are not the users' traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from agent.analysis.drift_stats import (
    CategoricalDrift,
    Decision,
    NumericDrift,
    categorical_drift,
    decide,
    merged_counts,
    numeric_drift,
)
from agent.request_log import REFERENCE, DriftSource, FeatureCounts, LabelCounts, RequestLog
from agent.schemas.coverage import Coverage
from agent.schemas.drift import DriftThresholds, FeatureDrift
from agent.summaries import minute_window

__all__ = [
    "BucketReport",
    "DriftSource",
    "FeatureResult",
    "drift_reports",
    "drifted_first",
    "feature_drift",
    "histogram",
]


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


def feature_drift(f: FeatureResult) -> FeatureDrift:
    """One feature's result as the API reports it (online traffic's drift and a batch job's)."""
    r = f.result
    return FeatureDrift(
        feature=f.feature,
        kind=r.kind,
        test=r.test,
        reference_rows=r.n_ref,
        current_rows=r.n_cur,
        statistic=r.statistic,
        p_value=r.p_value,
        p_adjusted=f.decision.p_adjusted,
        psi=getattr(r, "psi", None),
        wasserstein=getattr(r, "wasserstein", None),
        js=getattr(r, "js", None),
        drifted=f.decision.drifted,
    )


def drifted_first(features: list[FeatureDrift]) -> list[str]:
    """The drifted features, most shifted first (PSI, or Jensen-Shannon for the label)."""
    ranked = sorted((f for f in features if f.drifted), key=lambda f: -(f.psi or f.js or 0))
    return [f.feature for f in ranked]


def drift_reports(
    log: RequestLog,
    source: DriftSource,
    since: datetime,
    until: datetime,
    thresholds: DriftThresholds,
    buckets: int = 1,
    coverage: Coverage | None = None,
) -> list[BucketReport]:
    """One report per time bucket of [since, until) (widened to whole minutes)."""
    since, until = minute_window(since, until)
    counts = log.feature_counts(source, since, until, buckets, coverage=coverage)
    labels = log.label_counts(source, since, until, buckets, coverage=coverage)
    width = (until - since) / buckets
    reports = []
    for b in range(buckets):
        features, prediction, rows = bucket_results(
            list(source.features), counts, labels, b, thresholds
        )
        reports.append(
            BucketReport(since + width * b, since + width * (b + 1), rows, features, prediction)
        )
    return reports


def bucket_results(
    names: list[str],
    counts: FeatureCounts,
    labels: LabelCounts | None,
    bucket: int,
    thresholds: DriftThresholds,
) -> tuple[list[FeatureResult], FeatureResult | None, int]:
    """One bucket's features (and predicted label) tested against the reference's counts:
    the results, the label's, and the bucket's rows."""
    empty = (np.array([]), np.array([], dtype=int))
    results: list[NumericDrift | CategoricalDrift] = []
    for i in range(len(names)):
        grid, ref, cur = merged_counts(
            *counts.get((REFERENCE, i), empty), *counts.get((bucket, i), empty)
        )
        results.append(numeric_drift(grid, ref, cur))
    names = list(names)
    if labels is not None:
        results.append(categorical_drift(labels.get(REFERENCE, {}), labels.get(bucket, {})))
        names.append("prediction")
    decisions = decide(results, thresholds)
    features = [FeatureResult(n, r, d) for n, r, d in zip(names, results, decisions, strict=True)]
    prediction = features.pop() if labels is not None else None
    rows = max((r.n_cur for r in results), default=0)
    return features, prediction, rows


def histogram(
    log: RequestLog,
    source: DriftSource,
    feature: str,
    since: datetime,
    until: datetime,
    bins: int,
    coverage: Coverage | None = None,
) -> tuple[list[float], np.ndarray, np.ndarray]:
    """Bin edges and the reference's and current traffic's fractions in each bin."""
    i = source.features.index(feature)
    counts = log.feature_counts(source, since, until, only=[i], coverage=coverage)
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
