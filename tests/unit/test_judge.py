"""The canary judge: pass only on evidence that the canary is no worse; fail on clear harm;
marginal when the data cannot tell (sparse errors, too few pairs, a wider spread)."""

from __future__ import annotations

import math

import numpy as np

from agent.analysis.judge import (
    Look,
    VersionSample,
    judge,
    judge_disagreement,
    judge_errors,
    judge_latency,
    spent,
)
from serve.model_config import RolloutGates

RNG = np.random.default_rng(7)
GATES = RolloutGates()


def sample(latencies, errors=0) -> VersionSample:
    return VersionSample(latencies_ms=np.asarray(latencies, dtype=float), errors=errors)


def test_the_same_behaviour_passes():
    stable = sample(RNG.lognormal(3, 0.3, 3000), errors=3)
    canary = sample(RNG.lognormal(3, 0.3, 3000), errors=3)
    j = judge(canary, stable, disagreements=2, pairs=1000, gates=GATES)
    assert j.verdict == "pass", j
    assert {m.metric for m in j.metrics} == {
        "error_rate",
        "latency",
        "spread",
        "tail",
        "disagreement",
    }


def test_an_error_spike_fails():
    v = judge_errors(sample(np.ones(800), errors=40), sample(np.ones(3000), errors=3), GATES)
    assert v.verdict == "fail" and v.p_value < 0.001


def test_sparse_errors_on_few_requests_do_not_pass():
    # 1 error in 40 calls: no proof of harm, but no proof of safety either.
    v = judge_errors(sample(np.ones(40), errors=1), sample(np.ones(5000), errors=0), GATES)
    assert v.verdict == "marginal", v


def test_no_errors_on_enough_requests_passes():
    v = judge_errors(sample(np.ones(2000)), sample(np.ones(5000), errors=2), GATES)
    assert v.verdict == "pass", v


def by_metric(verdicts: list) -> dict[str, str]:
    return {v.metric: v.verdict for v in verdicts}


def test_a_slower_canary_fails_on_latency():
    canary, stable = RNG.lognormal(3.3, 0.3, 1000), RNG.lognormal(3.0, 0.3, 3000)
    (shift, *_) = judge_latency(sample(canary), sample(stable), GATES)
    assert shift.metric == "latency" and shift.verdict == "fail" and shift.canary > shift.stable


def test_a_rise_in_variance_with_the_same_median_fails():
    # Twice the variance (1.41x the spread, within the allowed 1.5x): its wider tail fails
    # it. Twice the spread is surely beyond what is allowed: the spread fails too.
    stable = RNG.lognormal(3.0, 0.3, 3000)
    canary = RNG.lognormal(3.0, 0.3 * 2**0.5, 2000)
    verdicts = by_metric(judge_latency(sample(canary), sample(stable), GATES))
    assert verdicts["tail"] == "fail", verdicts
    canary = RNG.lognormal(3.0, 0.6, 2000)
    verdicts = by_metric(judge_latency(sample(canary), sample(stable), GATES))
    assert verdicts["spread"] == "fail", verdicts


def test_a_slow_two_percent_fails_on_the_tail_alone():
    stable = RNG.lognormal(3.0, 0.5, 2000)
    canary = RNG.lognormal(3.0, 0.5, 2000)
    canary[:40] *= 5  # 2% of calls five times slower: the median and the mean barely move
    verdicts = by_metric(judge_latency(sample(canary), sample(stable), GATES))
    assert verdicts["tail"] == "fail" and verdicts["latency"] != "fail", verdicts


def test_a_faster_canary_passes():
    # Its tail is judged on its own shape (each arm over its median): being faster buys no
    # pass there, so it needs the calls to bound its tail like any canary.
    verdicts = judge_latency(
        sample(RNG.lognormal(2.8, 0.3, 3000)), sample(RNG.lognormal(3.0, 0.3, 3000)), GATES
    )
    assert all(v.verdict == "pass" for v in verdicts), verdicts


def test_looks_spend_their_share_of_the_budget():
    # Latency: the same evidence fails on one window and only marginally at a rollout's 40th
    # look (its share of the budget there is 1/1600 of the first's).
    rng = np.random.default_rng(10)
    stable, canary = rng.lognormal(3.0, 0.3, 600), rng.lognormal(3.0, 0.3, 600) * 1.2
    one = by_metric(judge_latency(sample(canary), sample(stable), GATES))
    late = by_metric(judge_latency(sample(canary), sample(stable), GATES, Look(40, 40)))
    assert one["latency"] == "fail" and late["latency"] == "marginal", (one, late)
    assert sum(spent(1.0, k) for k in range(1, 100_000)) < 1.0


def test_errors_are_held_to_the_same_bar_at_every_look():
    """The errors' test martingale spends nothing per look: a broken canary's first handful of
    errors fail it at the hundredth look as at the first."""
    canary, stable = sample(np.ones(50), errors=5), sample(np.ones(100), errors=0)
    for look in (1, 2, 10, 100):
        v = judge_errors(canary, stable, GATES, Look(fail=look, passing=look))
        assert v.verdict == "fail", (look, v)
    # Too little to tell at any look: 2 errors against none.
    few = judge_errors(sample(np.ones(50), errors=2), stable, GATES, Look(1, 1))
    assert few.verdict == "marginal", few


def test_a_healthy_canary_seldom_takes_the_error_martingale_past_its_bar():
    """Seeded: 500 rollouts of 60 looks, both arms failing 1% of calls (the canary a third
    of the calls): the share ever failed on errors stays within their budget (0.8%)."""
    rng = np.random.default_rng(11)
    budget = GATES.fail_p * 0.8
    ever = 0
    for _ in range(500):
        xc = xs = 0
        for k in range(1, 61):
            xc, xs = xc + rng.binomial(25, 0.01), xs + rng.binomial(50, 0.01)
            v = judge_errors(
                VersionSample(np.ones(1), errors=xc, calls=25 * k),
                VersionSample(np.ones(1), errors=xs, calls=50 * k),
                GATES,
                Look(fail=k, passing=k),
            )
            if v.verdict == "fail":
                ever += 1
                break
    print(f"healthy canaries ever failed on errors over 60 looks: {ever / 500:.2%}")
    assert ever / 500 <= budget


def test_a_canary_at_the_relative_margin_is_seldom_passed():
    """Stable fails 1% of 2,000 calls, the canary 1.8% (exactly `max_error_ratio` times):
    judged against stable's observed rate, such a canary passed 3.3% of windows at a nominal
    0.7%; the exact conditional form keeps it within the pass budget."""
    rng = np.random.default_rng(12)
    passed = 0
    for _ in range(4000):
        canary = VersionSample(np.ones(2000), errors=int(rng.binomial(2000, 0.018)))
        stable = VersionSample(np.ones(2000), errors=int(rng.binomial(2000, 0.01)))
        passed += judge_errors(canary, stable, GATES).verdict == "pass"
    print(f"a canary at 1.8x stable's 1% passed {passed / 4000:.2%} of windows")
    assert passed / 4000 <= GATES.pass_p


def test_errors_rare_on_both_arms_pass_with_enough_calls():
    # 1% on both arms: the margin is 0.8 x stable's rate, so enough calls prove it.
    v = judge_errors(
        sample(np.ones(20_000), errors=200), sample(np.ones(20_000), errors=200), GATES
    )
    assert v.verdict == "pass", v


def test_disagreement_needs_enough_pairs_and_a_low_rate():
    assert judge_disagreement(0, 500, GATES).verdict == "pass"
    assert judge_disagreement(0, 10, GATES).verdict == "marginal"  # too few to tell
    assert judge_disagreement(60, 500, GATES).verdict == "fail"  # 12% of answers differ


def test_too_few_canary_requests_is_marginal_with_the_reason():
    j = judge(sample([10.0] * 5), sample(RNG.normal(10, 1, 1000)), 0, 0, GATES)
    assert j.verdict == "marginal"
    assert any("requests" in (m.note or "") for m in j.metrics)


def test_the_worst_metric_decides():
    stable = sample(RNG.lognormal(3, 0.3, 3000))
    canary = sample(RNG.lognormal(3, 0.3, 1000), errors=60)
    assert judge(canary, stable, 0, 500, GATES).verdict == "fail"


def test_a_shift_within_the_tolerance_is_not_also_a_tail():
    """Measured on the real stack: a canary in the shadow stage ran 8.5% slower per call (it
    batched less), the same artifact. Its calls past a pooled percentile are then twice
    stable's share; judged each over its own median, its tail is stable's, and the shift is
    the latency metric's alone (within the 15% allowed)."""
    rng = np.random.default_rng(11)
    canary = sample(rng.lognormal(3 + math.log(1.085), 0.3, 6000))
    stable = sample(rng.lognormal(3, 0.3, 12000))
    by = {v.metric: v for v in judge_latency(canary, stable, GATES)}
    assert by["latency"].verdict == "pass" and by["tail"].verdict == "pass", by["tail"].note


def test_the_absolute_margin_exact_test_agrees_with_enumerating_every_outcome():
    """The bisection for each stable count against a brute-force sum over every (canary,
    stable) outcome, at the same stable rates."""
    from scipy import stats

    from agent.analysis.judge import NUISANCE_SHARE, _ac_z, absolute_margin_p

    nc, ns, delta, alpha = 300, 400, 0.02, 0.01
    for xc, xs in ((0, 0), (2, 1), (5, 6), (9, 2)):
        got = absolute_margin_p(xc, nc, xs, ns, delta, alpha)
        gamma = alpha * NUISANCE_SHARE
        low = stats.beta.ppf(gamma / 2, xs, ns - xs + 1) if xs else 0.0
        high = stats.beta.isf(gamma / 2, xs + 1, ns - xs)
        c, s = np.meshgrid(np.arange(nc + 1), np.arange(ns + 1), indexing="ij")
        as_good = _ac_z(c, nc, s, ns, delta) <= _ac_z(np.array(xc), nc, np.array(xs), ns, delta)
        want = max(
            float(
                (
                    stats.binom.pmf(c, nc, rate + delta) * stats.binom.pmf(s, ns, rate) * as_good
                ).sum()
            )
            for rate in np.linspace(low, min(high, 1 - delta), 41)
        )
        assert abs(got - min(1.0, want + gamma)) < 1e-9, (xc, xs, got, want)


def test_three_errors_against_none_do_not_prove_a_canary_within_half_a_point():
    """2,000 calls each: a canary failing 0.5% (the margin) shows 3 or fewer errors 1.03% of
    the time, so passing on 3 against none would pass it more often than the level allows
    (Agresti and Caffo's bound does); 2 against none is proof."""
    stable = VersionSample(np.ones(2000), errors=0)
    three = judge_errors(VersionSample(np.ones(2000), errors=3), stable, GATES)
    two = judge_errors(VersionSample(np.ones(2000), errors=2), stable, GATES)
    assert three.verdict == "marginal" and "too few to be sure" in (three.note or ""), three
    assert two.verdict == "pass", two
