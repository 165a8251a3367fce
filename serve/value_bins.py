"""Which drift bin a value falls in, given a feature's bin edges (agent/analysis/bins.py says
how the edges are chosen). Here, pure and without the agent, so that a batch job's driver on
the cluster counts its rows on exactly the bins the agent counts online traffic on."""

from __future__ import annotations

import numpy as np


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bin k (1..K) holds (edges[k-2], edges[k-1]]; 0 holds values below the first edge and
    K+1 values above the last."""
    v = np.asarray(values, dtype=float)
    out = np.searchsorted(edges, v, side="left") + 1
    out[v < edges[0]] = 0
    return out.astype(np.int64)
