"""Drift statistics from value counts (what DuckDB hands over), checked against scipy run on
the raw samples, and the decision rule (significant after Benjamini-Hochberg AND large)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from agent.analysis.drift_stats import (
    DriftThresholds,
    categorical_drift,
    decide,
    merged_counts,
    numeric_drift,
)


def counts_of(ref: np.ndarray, cur: np.ndarray):
    return merged_counts(*np.unique(ref, return_counts=True), *np.unique(cur, return_counts=True))


def test_merged_counts_align_both_samples_on_one_sorted_grid():
    grid, ref, cur = merged_counts(np.array([1.0, 3.0]), [2, 5], np.array([2.0, 3.0]), [4, 1])
    assert grid.tolist() == [1.0, 2.0, 3.0]
    assert ref.tolist() == [2, 0, 5] and cur.tolist() == [0, 4, 1]


def test_identical_samples_do_not_drift():
    rng = np.random.default_rng(1)
    ref = np.round(rng.normal(0, 1, 2000), 2)
    d = numeric_drift(*counts_of(ref, ref.copy()))
    assert d.statistic == 0 and d.p_value == pytest.approx(1.0)
    assert d.psi == pytest.approx(0, abs=1e-9) and d.wasserstein == pytest.approx(0, abs=1e-12)


def test_numbers_match_scipy_on_the_raw_samples():
    rng = np.random.default_rng(2)
    ref = np.round(rng.normal(0, 1, 3000), 3)
    cur = np.round(rng.normal(0.3, 1.2, 5000), 3)
    d = numeric_drift(*counts_of(ref, cur))
    ks = stats.ks_2samp(ref, cur, method="asymp")
    assert d.statistic == pytest.approx(ks.statistic, abs=1e-12)
    assert d.p_value == pytest.approx(ks.pvalue, rel=1e-9)
    w = stats.wasserstein_distance(ref, cur)
    assert d.wasserstein == pytest.approx(w / ref.std(), rel=1e-9)  # normalised by ref's std
    assert d.psi > 0.1  # a shift of 0.3 sd plus wider spread


def test_psi_on_reference_deciles_matches_a_hand_computation():
    ref = np.repeat(np.arange(10.0), 100)  # ten equal bins
    cur = np.repeat(np.arange(10.0), [50] * 5 + [150] * 5)
    d = numeric_drift(*counts_of(ref, cur))
    p, q = np.full(10, 0.1), np.array([0.05] * 5 + [0.15] * 5)
    assert d.psi == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-9)


def test_a_constant_reference_still_measures_a_move():
    ref = np.zeros(500)
    cur = np.concatenate([np.zeros(250), np.full(250, 4.0)])
    d = numeric_drift(*counts_of(ref, cur))
    assert d.statistic == pytest.approx(0.5)
    assert np.isfinite(d.wasserstein) and d.wasserstein > 0
    # Half the traffic is above anything the reference holds: a bin of its own.
    assert d.psi == pytest.approx((0.5 - 1) * np.log(0.5) + (0.5 - 1e-4) * np.log(0.5 / 1e-4))


def test_traffic_below_the_reference_range_counts_for_psi():
    ref = np.repeat(np.arange(10.0), 100)
    cur = np.concatenate([np.full(500, -5.0), np.repeat(np.arange(10.0), 50)])
    assert numeric_drift(*counts_of(ref, cur)).psi > 1


def test_categorical_matches_scipy():
    ref = {"0": 300, "1": 300, "2": 400}
    cur = {"0": 100, "1": 500, "2": 380, "3": 20}
    d = categorical_drift(ref, cur)
    keys = ["0", "1", "2", "3"]
    table = np.array([[ref.get(k, 0) for k in keys], [cur.get(k, 0) for k in keys]])
    chi2, p, _, _ = stats.chi2_contingency(table)
    assert d.statistic == pytest.approx(chi2) and d.p_value == pytest.approx(p)
    assert d.js == pytest.approx(jensenshannon(table[0] / 1000, table[1] / 1000, base=2))


def test_decision_needs_significance_after_correction_and_a_large_effect():
    rng = np.random.default_rng(3)
    ref = [np.round(rng.normal(0, 1, 1000), 2) for _ in range(20)]
    cur = [np.round(rng.normal(0, 1, 1000), 2) for _ in range(20)]
    cur[7] = np.round(rng.normal(1.0, 1, 1000), 2)  # the one that really moved
    results = [numeric_drift(*counts_of(r, c)) for r, c in zip(ref, cur, strict=True)]
    flags = decide(results, DriftThresholds())
    assert [i for i, f in enumerate(flags) if f.drifted] == [7]
    assert all(f.p_adjusted >= r.p_value for f, r in zip(flags, results, strict=True))


def test_a_tiny_shift_on_a_huge_sample_is_significant_but_not_drift():
    rng = np.random.default_rng(4)
    ref = np.round(rng.normal(0, 1, 200_000), 2)
    cur = np.round(rng.normal(0.03, 1, 200_000), 2)
    (flag,) = decide([numeric_drift(*counts_of(ref, cur))], DriftThresholds())
    assert flag.p_adjusted < 1e-6 and not flag.drifted


def test_no_current_rows_is_not_drift_and_says_so():
    d = numeric_drift(np.array([1.0, 2.0]), np.array([3, 4]), np.array([0, 0]))
    assert d.p_value is None and d.statistic is None
    (flag,) = decide([d], DriftThresholds())
    assert not flag.drifted and flag.p_adjusted is None
