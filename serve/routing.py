"""Routing math, free of I/O: weighted choice, sticky choice, shadow sampling.

Sticky keys use weighted rendezvous hashing: each version scores `-weight / ln(u)` with `u` a
stable hash of (key, version) in (0, 1), and the highest score wins. A key lands on a version
with probability weight/100, the same key always lands on the same version for the same
weights, and when one version's weight rises while the others shrink in proportion (a canary
taking traffic) keys only move *to* it, never back and forth.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

from serve.routing_table import RoutingTable

_TWO_64 = float(2**64)


def unit_hash(*parts: str) -> float:
    """A stable number in (0, 1) from the parts (the same on every host and Python run)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _TWO_64


def weighted_choice(weights: Mapping[str, int], draw: float) -> str:
    """The version whose cumulative range holds `draw` (in [0, 1)); versions in name order."""
    point = draw * 100.0
    cumulative = 0.0
    last = None
    for version in sorted(weights):
        weight = weights[version]
        if weight <= 0:
            continue
        cumulative += weight
        last = version
        if point < cumulative:
            return version
    if last is None:
        raise ValueError("no version has weight")
    return last


def sticky_choice(weights: Mapping[str, int], key: str) -> str:
    best, best_score = None, -math.inf
    for version in sorted(weights):
        weight = weights[version]
        if weight <= 0:
            continue
        score = -weight / math.log(unit_hash(key, version))
        if score > best_score:
            best, best_score = version, score
    if best is None:
        raise ValueError("no version has weight")
    return best


def choose_version(table: RoutingTable, sticky_key: str | None, draw: float) -> str:
    if sticky_key:
        return sticky_choice(table.weights, sticky_key)
    return weighted_choice(table.weights, draw)


def shadow_version(table: RoutingTable, primary: str, draw: float) -> str | None:
    """The shadow version this request also goes to, or None."""
    shadow = table.shadow
    if shadow is None or shadow.version == primary or draw >= shadow.fraction:
        return None
    return shadow.version


def fallback_version(table: RoutingTable, failed: str) -> str | None:
    if table.fallback is None or table.fallback == failed:
        return None
    return table.fallback
