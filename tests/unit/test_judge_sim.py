"""The judge's statistical claims, by the benchmark's own seeded simulation at a size that runs
in seconds (scripts/bench/judge_sim.py prints the full table): healthy canaries pass and are
promoted, harmful ones fail and are rolled back, false alarms stay rare."""

from __future__ import annotations

import numpy as np

from scripts.bench.judge_sim import (
    Arm,
    Host,
    Scenario,
    one_window,
    rollouts,
    scenarios,
    whole_rollout,
)

BY_NAME = {s.name: s for s in scenarios()}


def test_a_healthy_canary_with_rare_errors_passes_one_window_and_is_almost_never_failed():
    # 2 errors a side in 2,000 calls: the errors' exact test alone passes 85% (the most
    # powerful test, knowing stable's rate, 95%); the benchmark measures 81-82%.
    r = one_window(BY_NAME["healthy: errors 0.1%, sigma 0.5"], runs=200, seed=1)
    assert r["pass"] >= 0.75 and r["fail"] <= 0.02, r


def test_harm_is_failed_and_almost_never_passed_in_one_window():
    for name in ("median +20%", "variance x2", "errors 0 -> 0.5%", "2% of calls 5x slower"):
        r = one_window(BY_NAME[name], runs=200, seed=2)
        assert r["fail"] >= 0.8 and r["pass"] <= 0.04, (name, r)


def test_whole_rollouts_promote_the_healthy_and_never_roll_them_back():
    healthy = Scenario("healthy", True, Arm(), Arm())
    r = rollouts(healthy, rps=50, runs=30, seed=3)
    assert r["done"] == 1.0 and r["rolled_back"] == 0.0, r
    assert r["done_median_s"] <= 300, r  # the 5 minutes, at 50 requests/s


def test_a_canary_failing_five_percent_is_rolled_back_before_users_see_it():
    broken = Scenario("broken", False, Arm(error_rate=0.05), Arm())
    rng = np.random.default_rng(4)
    outcomes = [whole_rollout(broken, rps=10, rng=rng) for _ in range(30)]
    assert all(o.state == "rolled_back" for o in outcomes)
    assert all(o.since_users is None for o in outcomes)  # in the shadow stage
    assert np.median([o.seconds for o in outcomes]) <= 60  # (40 s measured: 5 looks' worth)


def test_a_harmful_canary_is_never_promoted_over_a_whole_rollout():
    for canary, stable in ((Arm(0.02), Arm(0.01)), (Arm(slow_share=0.02), Arm())):
        r = rollouts(Scenario("harmful", False, canary, stable), rps=50, runs=20, seed=5)
        assert r["done"] == 0.0 and r["rolled_back"] >= 0.9, r


def test_a_host_whose_load_moves_does_not_roll_a_healthy_canary_back():
    """Latency moved ~30% per half-minute for both arms alike: judged on all calls at once,
    the steps' shifting shares make a healthy canary look slower or wider and it is rolled
    back; judged within time blocks it is promoted, and a slower canary is still caught."""
    healthy = Scenario("healthy", True, Arm(), Arm())
    blocked = rollouts(healthy, rps=50, runs=60, seed=6, host=Host(0.3))
    unblocked = rollouts(healthy, rps=50, runs=60, seed=6, host=Host(0.3, blocked=False))
    print(f"moving load: rolled back {blocked['rolled_back']:.0%} in blocks,"
          f" {unblocked['rolled_back']:.0%} on all calls at once")  # fmt: skip
    assert blocked["rolled_back"] == 0.0 and blocked["done"] >= 0.9, blocked
    assert unblocked["rolled_back"] >= 2 / 60, unblocked  # the flaw the blocks remove
    slower = Scenario("slower", False, Arm(median_factor=1.2), Arm())
    r = rollouts(slower, rps=50, runs=20, seed=7, host=Host(0.3))
    assert r["done"] == 0.0 and r["rolled_back"] >= 0.9, r
