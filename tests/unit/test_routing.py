"""Routing math: split, stickiness and monotone movement, shadow sampling, fallback."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError
from scipy.stats import chisquare

from serve.routing import (
    choose_version,
    fallback_version,
    shadow_version,
    sticky_choice,
    weighted_choice,
)
from serve.routing_table import RoutingTable


def table(weights, **kw) -> RoutingTable:
    return RoutingTable.model_validate({"route_version": 1, "weights": weights, **kw})


@pytest.mark.parametrize(
    "weights", [{"v1": 90, "v2": 10}, {"v1": 50, "v2": 50}, {"a": 20, "b": 30, "c": 50}]
)
def test_random_split_matches_weights(weights):
    rng = random.Random(1)
    n = 20000
    counts = dict.fromkeys(weights, 0)
    for _ in range(n):
        counts[weighted_choice(weights, rng.random())] += 1
    observed = [counts[v] for v in sorted(weights)]
    expected = [n * weights[v] / 100 for v in sorted(weights)]
    assert chisquare(observed, expected).pvalue > 0.001


@pytest.mark.parametrize("weights", [{"v1": 90, "v2": 10}, {"a": 20, "b": 30, "c": 50}])
def test_sticky_split_matches_weights(weights):
    n = 20000
    counts = dict.fromkeys(weights, 0)
    for i in range(n):
        counts[sticky_choice(weights, f"user-{i}")] += 1
    observed = [counts[v] for v in sorted(weights)]
    expected = [n * weights[v] / 100 for v in sorted(weights)]
    assert chisquare(observed, expected).pvalue > 0.001


def test_zero_weight_never_chosen_and_full_weight_always():
    assert {weighted_choice({"v1": 0, "v2": 100}, d / 100) for d in range(100)} == {"v2"}
    assert {sticky_choice({"v1": 100, "v2": 0}, f"k{i}") for i in range(500)} == {"v1"}


def test_same_key_same_version_for_same_table():
    t = table({"v1": 70, "v2": 30})
    for i in range(200):
        key = f"user-{i}"
        assert len({choose_version(t, key, random.random()) for _ in range(5)}) == 1


def test_keys_only_move_from_stable_to_canary_as_canary_weight_rises():
    keys = [f"user-{i}" for i in range(3000)]
    previous = {k: sticky_choice({"stable": 100, "canary": 0}, k) for k in keys}
    for canary in (1, 5, 10, 25, 50, 75, 90, 100):
        current = {k: sticky_choice({"stable": 100 - canary, "canary": canary}, k) for k in keys}
        moved_back = [k for k in keys if previous[k] == "canary" and current[k] == "stable"]
        assert not moved_back, f"{len(moved_back)} keys moved back at canary={canary}"
        previous = current
    assert set(previous.values()) == {"canary"}


def test_three_versions_keys_only_move_to_the_growing_version():
    # The others shrink in proportion (60:30 stays 2:1), as when a canary takes traffic.
    keys = [f"k{i}" for i in range(3000)]
    before = {k: sticky_choice({"a": 60, "b": 30, "c": 10}, k) for k in keys}
    after = {k: sticky_choice({"a": 30, "b": 15, "c": 55}, k) for k in keys}
    assert all(after[k] in (before[k], "c") for k in keys)


def test_shadow_sampling_and_never_shadowing_itself():
    t = table({"v1": 100}, shadow={"version": "v2", "fraction": 0.1})
    rng = random.Random(3)
    n = 20000
    hits = sum(shadow_version(t, "v1", rng.random()) == "v2" for _ in range(n))
    assert chisquare([hits, n - hits], [n * 0.1, n * 0.9]).pvalue > 0.001
    assert shadow_version(t, "v2", 0.0) is None
    assert shadow_version(table({"v1": 100}), "v1", 0.0) is None


def test_fallback_never_to_the_failed_version():
    t = table({"v1": 50, "v2": 50}, fallback="v1")
    assert fallback_version(t, "v2") == "v1"
    assert fallback_version(t, "v1") is None
    assert fallback_version(table({"v1": 100}), "v1") is None


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"route_version": 1, "weights": {"v1": 90, "v2": 20}}, "sum to 110"),
        ({"route_version": 1, "weights": {}}, "at least 1 item"),
        ({"route_version": 1, "weights": {"v1": 99.5, "v2": 0.5}}, "integer"),
        ({"route_version": 1, "weights": {"v1": True}}, "integer"),
        ({"route_version": 1, "weights": {"v1": 101, "v2": -1}}, "less than or equal to 100"),
        ({"route_version": 1, "weights": {"v1": "100"}}, "integer"),
        ({"route_version": 1, "weights": {"../x": 100}}, "not allowed"),
        (
            {
                "route_version": 1,
                "weights": {"v1": 100},
                "shadow": {"version": "v2", "fraction": 2},
            },
            "fraction",
        ),
        ({"route_version": 1, "weights": {"v1": 100}, "extra": 1}, "extra"),
    ],
)
def test_bad_tables_are_refused(doc, needle):
    with pytest.raises(ValidationError, match=needle):
        RoutingTable.model_validate(doc)


def test_a_weight_written_100_0_is_the_integer_100():
    """As every JSON Schema validator reads "integer": a client's 100.0 is 100, 99.5 is not."""
    table = RoutingTable.model_validate({"route_version": 1, "weights": {"v1": 100.0}})
    assert table.weights == {"v1": 100} and type(table.weights["v1"]) is int
