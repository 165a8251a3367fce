"""Drift statistics from value counts: DuckDB aggregates the samples into (value, count) pairs
per feature, and these functions need nothing else. Pure: no I/O, tested against scipy run
on the raw samples.

Numeric features: two-sample Kolmogorov-Smirnov (statistic and p-value, Smirnov's
asymptotic distribution as in scipy's `ks_2samp(method="asymp")`), PSI on the reference's
deciles, and the Wasserstein-1 distance divided by the reference's standard deviation (so
one threshold fits every feature). Categorical features (and the predicted label):
chi-square on the contingency table and the Jensen-Shannon distance (base 2, 0..1).

A feature has drifted when its p-value, corrected for testing every feature at once
(Benjamini-Hochberg), is below alpha AND its effect size is large: with a million rows a
shift nobody cares about is always "significant".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from agent.schemas.drift import DriftThresholds

PSI_BINS = 10
PSI_FLOOR = 1e-4  # an empty bin would make PSI infinite


@dataclass(frozen=True)
class NumericDrift:
    n_ref: int
    n_cur: int
    statistic: float | None  # KS D
    p_value: float | None
    psi: float | None
    wasserstein: float | None  # normalised

    kind = "numeric"
    test = "ks"


@dataclass(frozen=True)
class CategoricalDrift:
    n_ref: int
    n_cur: int
    statistic: float | None  # chi-square
    p_value: float | None
    js: float | None

    kind = "categorical"
    test = "chi2"


@dataclass(frozen=True)
class Decision:
    p_adjusted: float | None
    drifted: bool


def merged_counts(
    ref_values: np.ndarray,
    ref_counts: np.ndarray | Sequence[int],
    cur_values: np.ndarray,
    cur_counts: np.ndarray | Sequence[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both samples' counts on one sorted grid of values."""
    grid = np.union1d(ref_values, cur_values)
    ref = np.zeros(len(grid), dtype=np.int64)
    cur = np.zeros(len(grid), dtype=np.int64)
    ref[np.searchsorted(grid, ref_values)] = ref_counts
    cur[np.searchsorted(grid, cur_values)] = cur_counts
    return grid, ref, cur


def numeric_drift(grid: np.ndarray, ref: np.ndarray, cur: np.ndarray) -> NumericDrift:
    """KS, PSI and normalised Wasserstein from counts on a sorted grid of values."""
    grid = np.asarray(grid, dtype=float)
    ref, cur = np.asarray(ref, dtype=float), np.asarray(cur, dtype=float)
    n, m = int(ref.sum()), int(cur.sum())
    if n == 0 or m == 0:
        return NumericDrift(n, m, None, None, None, None)
    f_ref, f_cur = np.cumsum(ref) / n, np.cumsum(cur) / m
    gap = np.abs(f_ref - f_cur)
    d = float(gap.max())
    big, small = max(n, m), min(n, m)
    p = float(stats.kstwo.sf(d, np.round(big * small / (big + small))))
    # W1 = integral of |F_ref - F_cur| between consecutive values.
    w = float(np.sum(gap[:-1] * np.diff(grid)))
    return NumericDrift(
        n, m, d, min(p, 1.0), _psi(f_ref, ref, cur, n, m), w / _scale(grid, ref, cur)
    )


def _scale(grid: np.ndarray, ref: np.ndarray, cur: np.ndarray) -> float:
    """The reference's standard deviation; the pooled one if the reference is constant."""
    for weights in (ref, ref + cur):
        mean = np.average(grid, weights=weights)
        sd = float(np.sqrt(np.average((grid - mean) ** 2, weights=weights)))
        if sd > 0:
            return sd
    return 1.0


def _psi(f_ref: np.ndarray, ref: np.ndarray, cur: np.ndarray, n: int, m: int) -> float:
    """PSI over the reference's deciles: grid values grouped where the reference's CDF
    crosses k/10 (ties keep a value in one bin, so a bin may hold more than a tenth).
    Values below the reference's minimum or above its maximum get bins of their own, so
    traffic leaving the reference's range counts even when the reference is constant."""
    bins = np.minimum(np.ceil(f_ref * PSI_BINS - 1e-9).astype(int), PSI_BINS)
    seen = np.flatnonzero(ref)
    bins[seen[-1] + 1 :] = PSI_BINS + 1  # above the reference's maximum
    p = np.bincount(bins, weights=ref, minlength=PSI_BINS + 2) / n
    q = np.bincount(bins, weights=cur, minlength=PSI_BINS + 2) / m
    used = (p > 0) | (q > 0)
    p, q = np.maximum(p[used], PSI_FLOOR), np.maximum(q[used], PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def categorical_drift(ref: dict[str, int], cur: dict[str, int]) -> CategoricalDrift:
    keys = sorted(set(ref) | set(cur))
    table = np.array([[ref.get(k, 0) for k in keys], [cur.get(k, 0) for k in keys]], dtype=float)
    n, m = int(table[0].sum()), int(table[1].sum())
    if n == 0 or m == 0:
        return CategoricalDrift(n, m, None, None, None)
    js = float(jensenshannon(table[0] / n, table[1] / m, base=2))
    if len(keys) < 2:
        return CategoricalDrift(n, m, 0.0, 1.0, js)
    chi2, p, _, _ = stats.chi2_contingency(table)
    return CategoricalDrift(n, m, float(chi2), float(p), js)


def decide(
    results: Sequence[NumericDrift | CategoricalDrift], thresholds: DriftThresholds
) -> list[Decision]:
    """Benjamini-Hochberg over the features that could be tested, then the effect size."""
    tested = [i for i, r in enumerate(results) if r.p_value is not None]
    adjusted: dict[int, float] = {}
    if tested:
        pvalues = np.array([results[i].p_value for i in tested], dtype=float)
        for i, q in zip(tested, stats.false_discovery_control(pvalues, method="bh"), strict=True):
            adjusted[i] = float(q)
    out = []
    for i, r in enumerate(results):
        q = adjusted.get(i)
        out.append(Decision(q, q is not None and q < thresholds.alpha and _large(r, thresholds)))
    return out


def _large(r: NumericDrift | CategoricalDrift, t: DriftThresholds) -> bool:
    if isinstance(r, NumericDrift):
        return (r.psi or 0) >= t.psi or (r.wasserstein or 0) >= t.wasserstein
    return (r.js or 0) >= t.js
