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
    # The same evidence fails on one window and only marginally at a rollout's tenth look.
    canary, stable = sample(np.ones(300), errors=5), sample(np.ones(3000), errors=5)
    assert judge_errors(canary, stable, GATES).verdict == "fail"
    assert judge_errors(canary, stable, GATES, Look(fail=10, passing=10)).verdict == "marginal"
    assert sum(spent(1.0, k) for k in range(1, 100_000)) < 1.0


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
