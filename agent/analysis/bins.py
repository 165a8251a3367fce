"""Fixed bins that make summaries mergeable: every agent bins the same values the same way, so
counts of two hosts or two minutes add up exactly. Pure: no I/O.

Latency: log-spaced bins with ratio GAMMA from LATENCY_FLOOR_MS. A bin's estimate (the
harmonic-mean point of its ends, as DDSketch does) is within (GAMMA-1)/(GAMMA+1) = 0.99% of
every value in it, so a quantile read from merged counts is within 1% of the exact one.

Features: bins fixed from the version's reference sample. A feature with at most MAX_EXACT
distinct reference values (pixels, counts, categories) gets one bin per value; any other
feature gets edges at its reference quantiles (EDGE_BINS bins of about equal reference mass).
Bin k (1..K) holds (edges[k-2], edges[k-1]]; bin 0 holds values below the reference's
minimum and bin K+1 values above its maximum, so traffic leaving the reference's range is
counted apart. KS on these counts is exact within one bin's mass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from serve.value_bins import bin_index

GAMMA = 1.02
LATENCY_FLOOR_MS = 0.01
LATENCY_BINS = 1 + math.ceil(math.log(1e7 / LATENCY_FLOOR_MS) / math.log(GAMMA))  # to ~3 h
MAX_EXACT = 2048
EDGE_BINS = 1024


def latency_bin(ms: np.ndarray) -> np.ndarray:
    """The bin of each latency: 0 for at most LATENCY_FLOOR_MS, then (F·γ^(b-1), F·γ^b]."""
    x = np.maximum(np.asarray(ms, dtype=float), LATENCY_FLOOR_MS)
    b = np.ceil(np.log(x / LATENCY_FLOOR_MS) / math.log(GAMMA) - 1e-9)
    return np.clip(np.nan_to_num(b, nan=0.0), 0, LATENCY_BINS - 1).astype(np.int64)


def latency_value(b: np.ndarray | int) -> np.ndarray:
    """The estimate of bin b: 2·F·γ^b / (γ + 1), within 0.99% of any value in (F·γ^(b-1), F·γ^b]."""
    return LATENCY_FLOOR_MS * 2.0 * np.power(GAMMA, np.asarray(b, dtype=float)) / (GAMMA + 1)


def latency_quantiles(
    bins: np.ndarray, counts: np.ndarray, qs: tuple[float, ...]
) -> list[float | None]:
    """Quantiles (as `np.quantile(..., method="inverted_cdf")` would take them) from counts
    per latency bin."""
    total = int(np.sum(counts))
    if total == 0:
        return [None for _ in qs]
    order = np.argsort(bins)
    b, c = np.asarray(bins)[order], np.cumsum(np.asarray(counts)[order])
    out: list[float | None] = []
    for q in qs:
        rank = max(math.ceil(q * total), 1)
        out.append(float(latency_value(b[np.searchsorted(c, rank)])))
    return out


@dataclass(frozen=True)
class FeatureBins:
    edges: np.ndarray  # sorted, unique
    exact: bool  # one bin per reference value

    @property
    def count(self) -> int:
        """Bins in all, with the two outside the reference's range."""
        return len(self.edges) + 2

    def index(self, values: np.ndarray) -> np.ndarray:
        return bin_index(self.edges, values)

    def values(self, below: float | None = None, above: float | None = None) -> np.ndarray:
        """Where each bin sits on the value axis (for the distances between distributions): a
        bin at its upper edge, the outer two at the mean of what fell in them."""
        span = float(self.edges[-1] - self.edges[0]) or 1.0
        low = below if below is not None else float(self.edges[0]) - span / len(self.edges)
        high = above if above is not None else float(self.edges[-1]) + span / len(self.edges)
        return np.concatenate(
            (
                [min(low, np.nextafter(self.edges[0], -np.inf))],
                self.edges,
                [max(high, np.nextafter(self.edges[-1], np.inf))],
            )
        )


def feature_bins(reference: np.ndarray) -> FeatureBins:
    """Bins from one feature's reference values (NaN and infinities left out)."""
    v = np.asarray(reference, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return FeatureBins(np.array([0.0]), exact=True)
    distinct = np.unique(v)
    if len(distinct) <= MAX_EXACT:
        return FeatureBins(distinct, exact=True)
    # From the minimum (the first edge) up: the reference has nothing below or above.
    levels = np.linspace(0, 1, EDGE_BINS + 1)
    edges = np.unique(np.quantile(v, levels, method="inverted_cdf"))
    return FeatureBins(edges, exact=False)


def bin_counts(bins: FeatureBins, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts and sums of `values` per bin (finite values only)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    where = bins.index(v)
    return (
        np.bincount(where, minlength=bins.count).astype(np.int64),
        np.bincount(where, weights=v, minlength=bins.count),
    )
