"""The canary judge: canary against stable, metric by metric, each `pass`, `marginal` or
`fail` with the numbers behind it. Pure: no I/O.

Each metric is an effect with a confidence bound on each side:
- errors: the canary's error rate minus stable's. Fail on the exact conditional test (given
  the errors of both arms, how many fell on the canary: exact for any rate and any split of
  the traffic, and the most powerful there is when errors are rare); pass when the upper
  bound (Agresti and Caffo's) is within the margin, the larger of `max_error_increase` and
  (`max_error_ratio` - 1) x stable's rate.
- latency shift: the difference of mean log-latency (a ratio of geometric means), Welch's
  interval. Pass within `latency_tolerance`, fail when surely slower by more than half of it.
- latency spread: the ratio of log-latency standard deviations; the interval of the log of
  the variance ratio is widened by the pooled kurtosis (Layard's), so heavy tails do not make
  it lie. A doubled variance with the same median does not pass.
- latency tail: the share of calls above the pooled sample's 99.5th percentile, one arm
  against the other (exact under exchangeability, like Mood's median test): 2% of calls 5x
  slower shows here when nowhere else. A pass bounds the share past the 98th percentile.
- disagreement: the share of paired answers (a canary call and its shadow on stable, paired by
  the router's own id) whose labels differ, against `max_disagreement`.

The false-fail budget `fail_p` is shared out between the metrics (errors get most: their
harms are the subtle ones), and so is the false-pass budget `pass_p`. A fail needs the bound
beyond zero (surely worse) and a pass needs it within the margin (surely not much worse):
between them is marginal (watch longer).

Repeated looks: a rollout judges its canary every few seconds, and a test at level a on each
look would fail a healthy canary far more often than a. Look k of a rollout spends
a x 6 / (pi^2 k^2) of each budget (the sum over all looks is a: Bonferroni over looks, valid
whatever the dependence between them), so the bounds are a confidence sequence: the chance
that a healthy canary is ever failed, over all the looks of the whole rollout, is at most
`fail_p`. Looks are cheap and evidence grows with the calls, so a clearly broken canary fails
on its first look and a healthy one passes as soon as its calls allow. A pass is acted on
only once a step has lasted its dwell, so the false-pass budget is spent only on those looks
(`Look.passing`, counted by the rollout): a pass shown before the dwell is information, not a
decision, and costs nothing. `judge(...)` with no look is one window on its own (the whole
budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from agent.schemas.rollouts import RANK, Judgement, MetricVerdict, Verdict
from serve.model_config import RolloutGates

# Shares of the false-fail and the false-pass budgets (each adds up to 1). Errors take most
# of the false-fail budget: their harms are the subtle ones (a few calls in thousands), while
# a slower or wider latency shows at any level.
FAIL_SHARES = {
    "error_rate": 0.8,
    "latency": 0.06,
    "spread": 0.02,
    "tail": 0.06,
    "disagreement": 0.04,
    "accuracy": 0.02,  # labelled calls (ground truth), when a rollout has enough
}
PASS_SHARES = {
    "error_rate": 0.35,
    "latency": 0.15,
    "spread": 0.05,
    "tail": 0.2,
    "disagreement": 0.2,
    "accuracy": 0.05,
}
# Failing looks where 2% of calls 5x slower show most (past the 99.5th percentile); passing
# looks where there are enough calls to bound (past the 98th), at most twice stable's share.
TAIL_FAIL_QUANTILE = 0.995
# A canary is failed on errors only once it has this many: one error in 40 calls against none
# in 5,000 is rare under "no worse" (0.8%), but no one should be rolled back for one call.
MIN_FAIL_ERRORS = 3
TAIL_PASS_QUANTILE = 0.98


@dataclass(frozen=True)
class VersionSample:
    latencies_ms: np.ndarray  # one per call
    errors: int = 0  # calls that failed (5xx, or answered by the fallback)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)


def spent(budget: float, look: int | None) -> float:
    """The part of `budget` look `look` (1, 2, ...) of a rollout may use; None: all."""
    return budget if look is None else budget * 6 / (math.pi**2 * look**2)


def _z(alpha: float) -> float:
    return float(stats.norm.isf(alpha))


def wilson(successes: int, trials: int, z: float) -> tuple[float, float]:
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float) -> tuple[float, float]:
    """Bounds of p1 - p2 (Newcombe's hybrid score interval, method 10): good coverage even
    with no events at all, where the Wald interval collapses to a point."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def agresti_caffo_upper(x1: int, n1: int, x2: int, n2: int, z: float) -> float:
    """Upper bound of p1 - p2, one success and one failure added to each arm (Agresti and
    Caffo): close to its nominal level even with a handful of events, where Wald's is too
    short and the score intervals, at a look's small level, far too long."""
    q1, q2 = (x1 + 1) / (n1 + 2), (x2 + 1) / (n2 + 2)
    return q1 - q2 + z * math.sqrt(q1 * (1 - q1) / (n1 + 2) + q2 * (1 - q2) / (n2 + 2))


def _too_few(metric: str, n: int, needed: int, what: str) -> MetricVerdict | None:
    if n >= needed:
        return None
    return MetricVerdict(
        metric=metric,
        verdict="marginal",
        note=f"only {n} {what} (at least {needed} needed)",
        details={"n": float(n), "needed": float(needed)},
    )


@dataclass(frozen=True)
class Look:
    """Which look of a rollout this is, for the fail budget and for the pass budget (the
    looks at which a pass would be acted on); None: one window with the whole budget."""

    fail: int | None = None
    passing: int | None = None


ONE_WINDOW = Look()


def _budgets(metric: str, gates: RolloutGates, look: Look) -> tuple[float, float]:
    fail = spent(gates.fail_p * FAIL_SHARES[metric], look.fail)
    return fail, spent(gates.pass_p * PASS_SHARES[metric], look.passing)


def judge_errors(
    canary: VersionSample,
    stable: VersionSample,
    gates: RolloutGates,
    look: Look = ONE_WINDOW,
    metric: str = "error_rate",
) -> MetricVerdict:
    if canary.requests == 0:
        return MetricVerdict(metric=metric, verdict="marginal", note="no canary calls yet")
    nc, xc, ns, xs = canary.requests, canary.errors, max(stable.requests, 1), stable.errors
    rate_c, rate_s = xc / nc, xs / ns
    fail_a, pass_a = _budgets(metric, gates, look)
    # Given the errors of both arms, how many fell on the canary (exact; conditional).
    share = nc / (nc + ns)
    p = float(stats.binom.sf(xc - 1, xc + xs, share)) if xc else 1.0
    high = agresti_caffo_upper(xc, nc, xs, ns, _z(pass_a))
    low, _ = newcombe(xc, nc, xs, ns, _z(fail_a))
    margin = max(gates.max_error_increase, (gates.max_error_ratio - 1) * rate_s)
    details = {
        "upper": high,
        "margin": margin,
        "fail_alpha": fail_a,
        "pass_alpha": pass_a,
        "canary_n": float(nc),
        "stable_n": float(ns),
    }
    # A fail needs no minimum of calls (3 errors in 20 calls against none in 2,000 is a
    # fail now); a pass does.
    if p < fail_a and rate_c > rate_s and xc >= MIN_FAIL_ERRORS:
        verdict: Verdict = "fail"
        note = f"canary fails {rate_c:.2%} of calls, stable {rate_s:.2%} (p={p:.1e})"
    elif nc < gates.min_requests:
        verdict = "marginal"
        note = f"only {nc} canary requests (at least {gates.min_requests} to pass)"
    elif high <= margin:
        verdict = "pass"
        note = f"canary's errors are at most {high:+.2%} over stable's (margin {margin:.2%})"
    else:
        verdict = "marginal"
        note = f"canary's errors could be up to {high:+.2%} over stable's (margin {margin:.2%})"
    return MetricVerdict(
        metric=metric,
        verdict=verdict,
        canary=rate_c,
        stable=rate_s,
        p_value=p,
        low=low,
        high=high,
        limit=margin,
        note=note,
        details=details,
    )


def judge_accuracy(
    canary_labelled: int,
    canary_wrong: int,
    stable_labelled: int,
    stable_wrong: int,
    gates: RolloutGates,
    look: Look = ONE_WINDOW,
) -> MetricVerdict:
    """Ground truth: a wrong answer is a failed call, judged by the errors' own rules (exact
    conditional test to fail, the bound within the margin to pass) on its own budget."""
    v = judge_errors(
        VersionSample(latencies_ms=np.zeros(canary_labelled), errors=canary_wrong),
        VersionSample(latencies_ms=np.zeros(stable_labelled), errors=stable_wrong),
        gates,
        look,
        metric="accuracy",
    )
    note = (
        f"{1 - (v.canary or 0):.2%} of {canary_labelled} labelled canary answers right,"
        f" {1 - (v.stable or 0):.2%} of stable's {stable_labelled}: {v.verdict}"
    )
    return v.model_copy(update={"note": note})


def _logs(sample: VersionSample) -> np.ndarray:
    return np.log(np.maximum(sample.latencies_ms, 1e-3))


def judge_latency(
    canary: VersionSample, stable: VersionSample, gates: RolloutGates, look: Look = ONE_WINDOW
) -> list[MetricVerdict]:
    """Shift, spread and tail of the latency: three verdicts."""
    for n, what in ((canary.requests, "canary requests"), (stable.requests, "stable requests")):
        few = _too_few("latency", n, gates.min_requests, what)
        if few is not None:
            return [few]
    c, s = _logs(canary), _logs(stable)
    return [_shift(c, s, gates, look), _spread(c, s, gates, look), _tail(c, s, gates, look)]


def _shift(c: np.ndarray, s: np.ndarray, gates: RolloutGates, look: Look) -> MetricVerdict:
    fail_a, pass_a = _budgets("latency", gates, look)
    d = float(c.mean() - s.mean())
    se = math.sqrt(c.var(ddof=1) / len(c) + s.var(ddof=1) / len(s)) or 1e-12
    low, high = d - _z(fail_a) * se, d + _z(pass_a) * se
    tol = math.log1p(gates.latency_tolerance)
    if low > tol / 4:  # surely slower, by more than a quarter of the tolerance
        verdict: Verdict = "fail"
    elif high <= tol:
        verdict = "pass"
    else:
        verdict = "marginal"
    med_c, med_s = float(np.exp(np.median(c))), float(np.exp(np.median(s)))
    p99_c, p99_s = float(np.exp(np.percentile(c, 99))), float(np.exp(np.percentile(s, 99)))
    return MetricVerdict(
        metric="latency",
        verdict=verdict,
        canary=med_c,
        stable=med_s,
        p_value=float(stats.norm.sf(d / se)),
        low=math.exp(low),
        high=math.exp(high),
        limit=1 + gates.latency_tolerance,
        note=f"median {med_c:.1f} vs {med_s:.1f} ms; typical call x{math.exp(d):.3f}"
        f" (at most x{math.exp(high):.3f}, allowed x{1 + gates.latency_tolerance:.2f})",
        details={
            "ratio": math.exp(d),
            "ratio_low": math.exp(low),
            "ratio_high": math.exp(high),
            "allowed": 1 + gates.latency_tolerance,
            "canary_p99_ms": p99_c,
            "stable_p99_ms": p99_s,
        },
    )


def _spread(c: np.ndarray, s: np.ndarray, gates: RolloutGates, look: Look) -> MetricVerdict:
    fail_a, pass_a = _budgets("spread", gates, look)
    vc, vs = float(c.var(ddof=1)), float(s.var(ddof=1))
    if vs <= 0 or vc <= 0:
        verdict: Verdict = "pass" if vc <= vs else "marginal"
        return MetricVerdict(metric="spread", verdict=verdict, note="no spread to compare")
    pooled = np.concatenate([c - c.mean(), s - s.mean()])
    kurtosis = float(np.mean(pooled**4) / np.mean(pooled**2) ** 2)
    se = math.sqrt(max(kurtosis - 1, 2.0 / 3) * (1 / (len(c) - 1) + 1 / (len(s) - 1)))
    log_ratio = math.log(vc / vs)  # of variances: the SD ratio is its half
    low, high = log_ratio - _z(fail_a) * se, log_ratio + _z(pass_a) * se
    limit = 2 * math.log(gates.spread_ratio)
    if low > limit / 2:
        verdict = "fail"
    elif high <= limit:
        verdict = "pass"
    else:
        verdict = "marginal"
    return MetricVerdict(
        metric="spread",
        verdict=verdict,
        canary=math.sqrt(vc),
        stable=math.sqrt(vs),
        low=math.exp(low / 2),
        high=math.exp(high / 2),
        limit=gates.spread_ratio,
        note=f"log-latency spread x{math.exp(log_ratio / 2):.2f} of stable's (at most"
        f" x{math.exp(high / 2):.2f}, allowed x{gates.spread_ratio:.2f})",
        details={
            "ratio": math.exp(log_ratio / 2),
            "ratio_low": math.exp(low / 2),
            "ratio_high": math.exp(high / 2),
            "allowed": gates.spread_ratio,
        },
    )


def _past(c: np.ndarray, s: np.ndarray, quantile: float) -> tuple[float, int, int]:
    threshold = float(np.quantile(np.concatenate([c, s]), quantile))
    return threshold, int((c > threshold).sum()), int((s > threshold).sum())


def _tail(c: np.ndarray, s: np.ndarray, gates: RolloutGates, look: Look) -> MetricVerdict:
    fail_a, pass_a = _budgets("tail", gates, look)
    nc, ns = len(c), len(s)
    threshold, xc, xs = _past(c, s, TAIL_FAIL_QUANTILE)
    # Under "no worse", which arm a call past the pooled threshold came from is a coin with
    # the arms' shares: exact whatever the latency's distribution.
    p = float(stats.binom.sf(xc - 1, xc + xs, nc / (nc + ns))) if xc else 1.0
    _, pc, ps = _past(c, s, TAIL_PASS_QUANTILE)
    high = agresti_caffo_upper(pc, nc, ps, ns, _z(pass_a))
    margin = (gates.max_tail_ratio - 1) * (1 - TAIL_PASS_QUANTILE)
    if p < fail_a and xc / nc > 0.75 * gates.max_tail_ratio * xs / ns:
        verdict: Verdict = "fail"
    elif high <= margin:
        verdict = "pass"
    else:
        verdict = "marginal"
    return MetricVerdict(
        metric="tail",
        verdict=verdict,
        canary=xc / nc,
        stable=xs / ns,
        p_value=p,
        high=high,
        limit=margin,
        note=f"{xc / nc:.2%} of canary calls and {xs / ns:.2%} of stable's slower than"
        f" {math.exp(threshold):.1f} ms (the pooled p{TAIL_FAIL_QUANTILE * 100:g})",
        details={"upper": high, "margin": margin, "threshold_ms": math.exp(threshold)},
    )


def judge_disagreement(
    disagreements: int, pairs: int, gates: RolloutGates, look: Look = ONE_WINDOW
) -> MetricVerdict:
    """Paired answers (a canary call shadowed to stable) whose labels differ."""
    few = _too_few("disagreement", pairs, gates.min_pairs, "paired answers")
    if few is not None:
        return few
    fail_a, pass_a = _budgets("disagreement", gates, look)
    low, _ = wilson(disagreements, pairs, _z(fail_a))
    _, high = wilson(disagreements, pairs, _z(pass_a))
    limit = gates.max_disagreement
    verdict: Verdict = "fail" if low > limit else "pass" if high <= limit else "marginal"
    return MetricVerdict(
        metric="disagreement",
        verdict=verdict,
        canary=disagreements / pairs,
        low=low,
        high=high,
        limit=limit,
        note=f"{disagreements} of {pairs} labels differ from stable"
        f" (between {low:.1%} and {high:.1%}, limit {limit:.0%})",
        details={"low": low, "high": high, "limit": limit},
    )


def judge(
    canary: VersionSample,
    stable: VersionSample,
    disagreements: int,
    pairs: int,
    gates: RolloutGates,
    extra: list[MetricVerdict] | None = None,
    look: Look = ONE_WINDOW,
) -> Judgement:
    """One window (the whole budget), or a look of a rollout (its share of the budget)."""
    metrics = [
        judge_errors(canary, stable, gates, look),
        *judge_latency(canary, stable, gates, look),
        judge_disagreement(disagreements, pairs, gates, look),
        *(extra or []),
    ]
    worst = max(metrics, key=lambda m: RANK[m.verdict]).verdict
    return Judgement(verdict=worst, metrics=metrics)
