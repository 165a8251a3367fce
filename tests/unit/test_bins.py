"""The fixed bins behind mergeable summaries, pure: latency quantiles within 1% of the exact
ones (merged across hosts as well as alone), and feature bins from a reference sample on
which KS is exact (few distinct values) or within one bin's mass (continuous)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from agent.analysis.bins import (
    EDGE_BINS,
    bin_counts,
    feature_bins,
    latency_bin,
    latency_quantiles,
)
from agent.analysis.drift_stats import merged_counts, numeric_drift

RNG = np.random.default_rng(11)


def histogram(ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bins, counts = np.unique(latency_bin(ms), return_counts=True)
    return bins, counts


@pytest.mark.parametrize("sigma", [0.2, 0.5, 1.0, 2.0])
def test_latency_quantiles_are_within_one_percent(sigma):
    ms = RNG.lognormal(np.log(20), sigma, 50_000)
    qs = (0.5, 0.9, 0.95, 0.99, 0.999)
    got = latency_quantiles(*histogram(ms), qs)
    for q, value in zip(qs, got, strict=True):
        exact = float(np.quantile(ms, q, method="inverted_cdf"))
        assert abs(value - exact) / exact <= 0.01, (q, value, exact)


def test_two_hosts_histograms_merge_into_the_histogram_of_all_calls():
    a, b = RNG.lognormal(3, 0.5, 7_000), RNG.lognormal(3.4, 0.3, 3_000)
    merged: dict[int, int] = {}
    for part in (a, b):
        for k, n in zip(*histogram(part), strict=True):
            merged[int(k)] = merged.get(int(k), 0) + int(n)
    together = dict(zip(*(x.tolist() for x in histogram(np.concatenate([a, b]))), strict=True))
    assert merged == together


def test_latency_extremes_land_in_the_first_and_last_bins():
    assert latency_bin(np.array([0.0, 0.001, 0.01]))[0] == 0
    assert latency_bin(np.array([1e12]))[0] == latency_bin(np.array([1e13]))[0]
    assert latency_quantiles(np.array([], dtype=int), np.array([], dtype=int), (0.5,)) == [None]


def test_few_distinct_values_get_a_bin_each_and_ks_is_exact():
    ref = RNG.poisson(3, 20_000).astype(float)
    cur = RNG.poisson(3.4, 5_000).astype(float)
    bins = feature_bins(ref)
    assert bins.exact and len(bins.edges) == len(np.unique(ref))
    (rc, _), (cc, _) = bin_counts(bins, ref), bin_counts(bins, cur)
    values = bins.values()
    d = numeric_drift(*merged_counts(values, rc, values, cc)).statistic
    assert d == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)


def test_continuous_features_get_quantile_bins_and_ks_within_one_bins_mass():
    ref = RNG.normal(0, 1, 100_000)
    cur = RNG.normal(0.05, 1.1, 40_000)
    bins = feature_bins(ref)
    assert not bins.exact and len(bins.edges) <= EDGE_BINS + 1
    (rc, _), (cc, _) = bin_counts(bins, ref), bin_counts(bins, cur)
    assert rc[0] == rc[-1] == 0  # the reference is inside its own range
    assert rc[1:-1].max() / len(ref) <= 2.0 / EDGE_BINS
    values = bins.values()
    d = numeric_drift(*merged_counts(values, rc, values, cc)).statistic
    exact = stats.ks_2samp(ref, cur).statistic
    one_bin = max(rc.max() / len(ref), cc[1:-1].max() / len(cur))
    assert abs(d - exact) <= one_bin


def test_traffic_outside_the_reference_range_is_counted_apart():
    bins = feature_bins(np.arange(10, dtype=float))
    counts, sums = bin_counts(bins, np.array([-5.0, -1.0, 3.0, 42.0, np.nan, np.inf]))
    assert counts[0] == 2 and counts[-1] == 1 and counts.sum() == 4  # NaN and inf left out
    assert sums[0] == -6.0
    values = bins.values(below=sums[0] / counts[0], above=sums[-1] / counts[-1])
    assert values[0] == -3.0 and values[-1] == 42.0 and np.all(np.diff(values) > 0)
