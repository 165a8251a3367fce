"""The canary judge: canary against stable, metric by metric, each `pass`, `marginal` or
`fail` with the numbers behind it. Pure: no I/O.

Each metric is an effect with a confidence bound on each side:
- errors: the canary's error rate against stable's. Fail on the exact conditional test
  (given the errors of both arms, how many fell on the canary: exact for any rate and any
  split of the traffic, and the most powerful there is when errors are rare). Pass when the
  canary is surely within the margin, the larger of `max_error_increase` over stable's rate
  and `max_error_ratio` times it: either form shown at half the pass budget, the absolute by
  Agresti and Caffo's bound of the difference, the relative exactly (the same conditional
  binomial), so that stable's own noisy rate never widens the margin it is judged by
  (measured: judged against its observed rate, a canary 1.8 times stable's 1% passed 3.3%
  of the time at a nominal 0.7%).
- latency shift: the difference of mean log-latency (a ratio of geometric means), Welch's
  interval. Pass within `latency_tolerance`, fail when surely slower by more than three
  quarters of it (a canary with a small share of the traffic batches less: measured, the
  very same artifact ran 8.5% slower per call in the shadow stage).
- latency spread: the ratio of log-latency standard deviations of the body of the
  distribution (deviations clipped at the pooled 1st and 99th percentiles: what lies beyond
  is the tail's to judge, and a replica's pauses made the kurtosis 29 here, 8 clipped); the
  interval of the log of the variance ratio is widened by the pooled kurtosis (Layard's), so
  heavy tails do not make it lie. A doubled variance with the same median does not pass; a
  fail needs the spread surely wider than allowed (the arms' spreads differ by up to 17% on
  a busy host for the very same artifact: the traffic share, agent/rollout_judge.py).
- latency tail: the share of calls above the pooled sample's 99th percentile, one arm
  against the other (exact under exchangeability, like Mood's median test): 2% of calls 5x
  slower shows here when nowhere else. A pass bounds the share past the 99.5th percentile,
  at most `max_tail_ratio` times stable's. Each arm's calls are measured from its own median
  first: a canary 8% slower throughout (within the latency tolerance) would otherwise put
  twice stable's share past a pooled percentile, and the shift is the latency metric's to
  judge, not the tail's.
- disagreement: the share of paired answers (a canary call and its shadow on stable, paired by
  the router's own id) whose labels differ, against `max_disagreement`.

Latency is compared within time blocks (`Blocks`) when the samples carry them: a host's load
moves every call's latency by tens of percent within a minute (measured: the same version's
geometric mean went from 15 to 27 ms between two 30 s blocks), and a rollout sends the
arms different shares of the traffic at different times, so comparing all of one arm's calls
with all of the other's confounds the version with the time. Within a block both arms meet
the same load; the blocks' differences are weighted by their information (shift), their
within-block deviations pooled (spread), and each block's tail counted against its own
threshold (tail). With one block this is exactly the unblocked test.

The false-fail budget `fail_p` is shared out between the metrics (errors get most: their
harms are the subtle ones): a fail needs one metric's, so the chances add up. The false-pass
budget `pass_p` is not: a pass needs every metric's, so a canary harmful on one metric is
passed only if that metric's own test errs (the intersection-union principle: each test at
the whole level, no split). A fail needs the bound beyond zero (surely worse) and a pass
needs it within the margin (surely not much worse): between them is marginal (watch longer).

Repeated looks: a rollout judges its canary every few seconds, and a test at level a on each
look would fail a healthy canary far more often than a. Two remedies, each valid whatever
the dependence between looks:
- errors, the metric an outright broken canary fails on: a test martingale (a mixture of
  likelihood ratios, `errors_evidence`) that a canary no worse than stable takes to 1/a with
  chance at most a over all looks together (Ville's inequality). It spends nothing per look,
  so its evidence is judged against the same bar at the hundredth look as at the first: a
  canary failing 5% of its calls is rolled back on its first handful of errors.
- every other bound: look k spends a x 6 / (pi^2 k^2) of its budget (the sum over all looks
  is a: Bonferroni over looks), so the bounds are a confidence sequence.
So the chance that a healthy canary is ever failed, over all the looks of the whole rollout,
is at most `fail_p`. A clearly broken canary fails within its first looks and a healthy one
passes as soon as its calls allow. A pass is acted on only once a step has lasted its dwell,
so the false-pass budget is spent only on those looks (`Look.passing`, counted by the
rollout): a pass shown before the dwell is information, not a decision, and costs nothing.
`judge(...)` with no look is one window on its own (the whole budget, the exact test for
errors).

What one window of 2,000 calls per arm cannot do (scripts/bench/judge_sim.py measures the
rest): pass a healthy canary with 1% errors 95% of the time while passing one with 1.8%
(the margin) at most 1%. Even knowing stable's rate exactly, the most powerful such test (a
Poisson count of 20 against 36) passes the healthy one 74% of the time; at 0.1% errors (2
against 12), 95.4%, before any other metric has had its say. A rollout gathers more calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from agent.schemas.rollouts import RANK, Judgement, MetricVerdict, Verdict
from serve.model_config import RolloutGates

# Shares of the false-fail budget (they add up to 1: a fail needs only one metric's, so the
# chance that any metric fails a healthy canary is at most the sum). Errors take most of it:
# their harms are the subtle ones (a few calls in thousands), while a slower or wider
# latency shows at any level. The false-pass budget is not shared: a pass needs every
# metric's (an intersection-union test), so a canary harmful on one metric is passed only
# if that metric's own test is wrong, at most `pass_p`.
FAIL_SHARES = {
    "error_rate": 0.8,
    "latency": 0.04,
    "spread": 0.01,
    "tail": 0.12,  # its exact test counts a few dozen calls: it needs the larger level
    "disagreement": 0.02,
    "accuracy": 0.01,  # labelled calls (ground truth), when a rollout has enough
}
# A canary is failed on errors only once it has this many: one error in 40 calls against none
# in 5,000 is rare under "no worse" (0.8%), but no one should be rolled back for one call.
MIN_FAIL_ERRORS = 3
# Failing looks past the 99th percentile (2% of calls 5x slower put three times stable's
# share there; measured, past the 98th the canary's body dilutes them and past the 99.5th
# too few calls remain for an exact test at a look's level); a fail needs the canary's share
# there at least TAIL_FAIL_RATIO times stable's. Passing looks past the 99.5th, where such
# calls stand out most against a margin a healthy canary clears.
TAIL_FAIL_QUANTILE = 0.99
TAIL_FAIL_RATIO = 1.5
TAIL_PASS_QUANTILE = 0.995
# The spread is the body's: deviations clipped at these pooled quantiles.
SPREAD_CLIP = (0.01, 0.99)


@dataclass(frozen=True)
class VersionSample:
    latencies_ms: np.ndarray  # one per timed call
    errors: int = 0  # calls that failed (5xx, or answered by the fallback)
    # The time block of each timed call (any integers), or None: one block. Latency is
    # compared block by block when both arms have them (see `Blocks`).
    blocks: np.ndarray | None = None
    calls: int | None = None  # every call, when not all of them were timed (failed ones)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) if self.calls is None else self.calls


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


def agresti_caffo_upper(
    x1: int, n1: int, x2: int, n2: int, z: float, extra_var: float = 0.0
) -> float:
    """Upper bound of p1 - p2, one success and one failure added to each arm (Agresti and
    Caffo): close to its nominal level even with a handful of events, where Wald's is too
    short and the score intervals, at a look's small level, far too long. `extra_var`: any
    further variance of the difference (the tail's, from centring each arm)."""
    q1, q2 = (x1 + 1) / (n1 + 2), (x2 + 1) / (n2 + 2)
    var = q1 * (1 - q1) / (n1 + 2) + q2 * (1 - q2) / (n2 + 2) + extra_var
    return q1 - q2 + z * math.sqrt(var)


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
    """A metric's share of the false-fail budget at this look, and the false-pass budget at
    this look, all of it: a pass needs every metric's (see the module's docstring)."""
    fail = spent(gates.fail_p * FAIL_SHARES[metric], look.fail)
    return fail, spent(gates.pass_p, look.passing)


def errors_evidence(xc: int, nc: int, xs: int, ns: int) -> float:
    """The evidence that the canary fails more often than stable, as a test martingale: the
    likelihood of where the errors fell (given both arms' errors, each is on the canary with
    its share of the calls under "no worse") against a mixture of canaries 1 to 1,000 times
    worse, spread evenly in the log of the ratio. Under "no worse" its chance of ever
    reaching 1/a, at any look and however many, is at most a (Ville's inequality): no budget
    is spent per look, so a canary failing every tenth call is rolled back on the evidence of
    its first handful of errors, not once a look's shrinking share of the budget allows."""
    total = xc + xs
    if not xc or not total:
        return 0.0
    share = nc / (nc + ns)
    ratios = np.exp(np.linspace(0.0, math.log(1000.0), 200))
    worse = ratios * share / (ratios * share + 1 - share)  # a call's error on the canary
    log_lr = xc * np.log(worse / share) + (total - xc) * np.log((1 - worse) / (1 - share))
    peak = float(log_lr.max())
    return float(np.exp(peak) * np.mean(np.exp(log_lr - peak)))


# The least favourable stable rate is sought within its interval at this share of the test's
# level (Berger and Boos), which is added to the exact test's p-value.
NUISANCE_SHARE = 0.01


def _ac_z(c: np.ndarray, nc: int, s: np.ndarray, ns: int, delta: float) -> np.ndarray:
    """Agresti and Caffo's statistic of "the canary's rate is `delta` over stable's"."""
    q1, q2 = (c + 1) / (nc + 2), (s + 1) / (ns + 2)
    var = q1 * (1 - q1) / (nc + 2) + q2 * (1 - q2) / (ns + 2)
    return np.asarray((q1 - q2 - delta) / np.sqrt(var))


def absolute_margin_p(
    xc: int, nc: int, xs: int, ns: int, delta: float, alpha: float = 0.01
) -> float:
    """The exact p-value of "the canary fails `delta` or more of calls over stable's": the
    chance, at the least favourable stable rate, of data at least as favourable (by Agresti
    and Caffo's statistic) as what was seen. Their bound alone is liberal when errors are a
    handful: measured, a canary at the margin was passed twice as often as its level said
    (3 errors against none pass it, and a canary failing 0.5% against a stable failing none
    shows 3 or fewer in 2,000 calls 1.03% of the time). `alpha`: the level it is for."""
    gamma = alpha * NUISANCE_SHARE
    z_obs = float(_ac_z(np.array(xc), nc, np.array(xs), ns, delta))
    low = float(stats.beta.ppf(gamma / 2, xs, ns - xs + 1)) if xs else 0.0
    high = float(stats.beta.isf(gamma / 2, xs + 1, ns - xs)) if xs < ns else 1.0
    rates = np.linspace(low, min(high, 1 - delta), 41)
    s = np.arange(
        int(stats.binom.ppf(1e-12, ns, low)), int(stats.binom.isf(1e-12, ns, rates[-1])) + 1
    )
    # For each stable count, the most canary errors whose statistic is at most z_obs (the
    # statistic rises with the canary's count): found by bisection over c, all s at once.
    lo, hi = np.full(len(s), -1), np.full(len(s), nc)
    while np.any(hi > lo):
        mid = (lo + hi + 1) // 2
        ok = _ac_z(np.maximum(mid, 0), nc, s, ns, delta) <= z_obs + 1e-9  # the seen one too
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid - 1)
    most = lo  # -1: no count is as favourable
    worst = max(
        float((stats.binom.pmf(s, ns, rate) * stats.binom.cdf(most, nc, rate + delta)).sum())
        for rate in rates
    )
    return min(1.0, worst + gamma)


@dataclass(frozen=True)
class ErrorBound:
    """How much worse the canary's error rate may be than stable's, against its margin."""

    within: bool  # surely within the margin (a pass, errors-wise)
    high: float  # the excess over stable's rate, at most
    margin: float
    exact_p: float | None = None  # the absolute margin's exact test, when it was needed


def _errors_bound(
    xc: int, nc: int, xs: int, ns: int, gates: RolloutGates, alpha: float
) -> ErrorBound:
    """The canary's error rate over stable's, at most, against the margin, in the tighter of
    the two margins' forms. Each form is tested at half of `alpha` (a pass needs either):
    the absolute `max_error_increase` by Agresti and Caffo's bound of the difference
    confirmed by its exact test, the relative `max_error_ratio` exactly, by the share of both
    arms' errors that fell on the canary (a binomial given their sum, whatever the rates),
    so that stable's own noisy rate never widens the margin it is judged by."""
    rate_s, delta = xs / ns, gates.max_error_increase
    absolute = ErrorBound(False, agresti_caffo_upper(xc, nc, xs, ns, _z(alpha / 2)), delta)
    if absolute.high <= delta:  # the exact test only ever refuses what the bound allows
        p = absolute_margin_p(xc, nc, xs, ns, delta, alpha / 2)
        absolute = ErrorBound(p <= alpha / 2, absolute.high, delta, p)
    total, ratio = xc + xs, gates.max_error_ratio
    if total == 0 or xc == total:
        return absolute
    share_high = float(stats.beta.isf(alpha / 2, xc + 1, total - xc))  # Clopper-Pearson
    ratio_high = share_high / (1 - share_high) * ns / nc
    relative = ErrorBound(ratio_high <= ratio, (ratio_high - 1) * rate_s, (ratio - 1) * rate_s)
    if absolute.within or (
        not relative.within and absolute.high - delta < relative.high - relative.margin
    ):
        return absolute
    return relative


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
    if look.fail is None:  # one window: the exact test at the whole budget
        worse, why = p < fail_a, f"p={p:.1e}"
    else:  # a rollout's looks: the test martingale, valid at every look (no budget spent)
        fail_a = gates.fail_p * FAIL_SHARES[metric]
        evidence = errors_evidence(xc, nc, xs, ns)
        worse, why = evidence >= 1 / fail_a, f"evidence {evidence:.0f}x, {1 / fail_a:.0f}x needed"
    bound = _errors_bound(xc, nc, xs, ns, gates, pass_a)
    high, margin = bound.high, bound.margin
    low, _ = newcombe(xc, nc, xs, ns, _z(fail_a))
    details = {
        "upper": high,
        "margin": margin,
        "fail_alpha": fail_a,
        "pass_alpha": pass_a,
        "canary_n": float(nc),
        "stable_n": float(ns),
    }
    if bound.exact_p is not None:
        details["exact_p"] = bound.exact_p
    # A fail needs no minimum of calls (3 errors in 20 calls against none in 2,000 is a
    # fail now); a pass does.
    if worse and rate_c > rate_s and xc >= MIN_FAIL_ERRORS:
        verdict: Verdict = "fail"
        note = f"canary fails {rate_c:.2%} of calls, stable {rate_s:.2%} ({why})"
    elif nc < gates.min_requests:
        verdict = "marginal"
        note = f"only {nc} canary requests (at least {gates.min_requests} to pass)"
    elif bound.within:
        verdict = "pass"
        note = f"canary's errors are at most {high:+.2%} over stable's (margin {margin:.2%})"
    elif bound.exact_p is not None and high <= margin:  # the bound allows it, the exact test not
        verdict = "marginal"
        note = (
            f"canary's errors are at most {high:+.2%} over stable's (margin {margin:.2%}),"
            f" but too few to be sure (exact p={bound.exact_p:.3f})"
        )
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


@dataclass(frozen=True)
class Blocks:
    """Both arms' log-latencies cut into the time blocks they share (calls in a block that
    only one arm has are left out: nothing of the other to compare them with)."""

    canary: list[np.ndarray]
    stable: list[np.ndarray]

    @classmethod
    def of(cls, canary: VersionSample, stable: VersionSample) -> Blocks:
        c, s = _logs(canary), _logs(stable)
        if canary.blocks is None or stable.blocks is None:
            return cls([c], [s])
        shared = np.intersect1d(canary.blocks, stable.blocks)
        return cls([c[canary.blocks == b] for b in shared], [s[stable.blocks == b] for b in shared])

    @property
    def n(self) -> tuple[int, int]:
        return sum(map(len, self.canary)), sum(map(len, self.stable))

    def centred(self) -> Blocks:
        """Each arm's calls in each block measured from that arm's median there."""
        return Blocks(
            [x - np.median(x) for x in self.canary], [y - np.median(y) for y in self.stable]
        )

    def pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each shared block's (canary, stable) log-latencies."""
        return list(zip(self.canary, self.stable, strict=True))

    def residuals(self, clip: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each call's deviation from its arm's mean in its block; with `clip`, held within
        those quantiles of both arms' deviations pooled."""
        rc = np.concatenate([x - x.mean() for x in self.canary])
        rs = np.concatenate([x - x.mean() for x in self.stable])
        if clip is not None and len(rc) and len(rs):
            low, high = np.quantile(np.concatenate([rc, rs]), clip)
            rc, rs = np.clip(rc, low, high), np.clip(rs, low, high)
        return rc, rs

    def variances(
        self, residuals: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[float, float, int, int]:
        """Within-block variance of each arm, pooled over blocks, and its degrees of freedom
        (of `residuals`, default the plain ones)."""
        rc, rs = residuals if residuals is not None else self.residuals()
        dc, ds = len(rc) - len(self.canary), len(rs) - len(self.stable)
        vc = float((rc**2).sum() / dc) if dc > 0 else 0.0
        vs = float((rs**2).sum() / ds) if ds > 0 else 0.0
        return vc, vs, dc, ds


def judge_latency(
    canary: VersionSample, stable: VersionSample, gates: RolloutGates, look: Look = ONE_WINDOW
) -> list[MetricVerdict]:
    """Shift, spread and tail of the latency: three verdicts."""
    blocks = Blocks.of(canary, stable)
    nc, ns = blocks.n
    for n, what in ((nc, "canary requests"), (ns, "stable requests")):
        few = _too_few("latency", n, gates.min_requests, what)
        if few is not None:
            if (nc, ns) != (len(canary.latencies_ms), len(stable.latencies_ms)):
                few = few.model_copy(update={"note": f"{few.note}, in time blocks both share"})
            return [few]
    c, s = _logs(canary), _logs(stable)
    vc, vs, _, _ = blocks.variances()
    return [
        _shift(blocks, (vc, vs), c, s, gates, look),
        _spread(blocks, gates, look),
        _tail(blocks, (vc, vs), gates, look),
    ]


def _shift(
    blocks: Blocks,
    variances: tuple[float, float],
    c: np.ndarray,
    s: np.ndarray,
    gates: RolloutGates,
    look: Look,
) -> MetricVerdict:
    fail_a, pass_a = _budgets("latency", gates, look)
    vc, vs = variances  # within blocks, of each arm
    # Each block's difference of means, weighted by the inverse of its variance.
    weights = np.array([1 / (vc / len(x) + vs / len(y) or 1e-24) for x, y in blocks.pairs()])
    diffs = np.array([x.mean() - y.mean() for x, y in blocks.pairs()])
    d = float((weights * diffs).sum() / weights.sum())
    se = math.sqrt(1 / weights.sum()) or 1e-12
    low, high = d - _z(fail_a) * se, d + _z(pass_a) * se
    tol = math.log1p(gates.latency_tolerance)
    if low > 0.75 * tol:  # surely slower, by more than three quarters of the tolerance
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
            "blocks": float(len(blocks.canary)),
        },
    )


def _spread(blocks: Blocks, gates: RolloutGates, look: Look) -> MetricVerdict:
    fail_a, pass_a = _budgets("spread", gates, look)
    body = blocks.residuals(SPREAD_CLIP)
    vc, vs, dc, ds = blocks.variances(body)
    if vs <= 0 or vc <= 0:
        verdict: Verdict = "pass" if vc <= vs else "marginal"
        return MetricVerdict(metric="spread", verdict=verdict, note="no spread to compare")
    pooled = np.concatenate(body)
    kurtosis = float(np.mean(pooled**4) / np.mean(pooled**2) ** 2)
    se = math.sqrt(max(kurtosis - 1, 2.0 / 3) * (1 / dc + 1 / ds))
    log_ratio = math.log(vc / vs)  # of variances: the SD ratio is its half
    low, high = log_ratio - _z(fail_a) * se, log_ratio + _z(pass_a) * se
    limit = 2 * math.log(gates.spread_ratio)
    if low > limit:
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


@dataclass(frozen=True)
class Past:
    """Calls past each block's pooled quantile, per arm, summed over the blocks."""

    canary: int
    stable: int
    blocks: list[tuple[int, float]]  # per block: calls past it, the canary's share of calls
    threshold: float  # the log threshold, of the last block (for the note)
    near: int = 0  # calls within `width` of their block's threshold (the density there)


def _past(blocks: Blocks, quantile: float, width: float = 0.0) -> Past:
    xc = xs = near = 0
    per_block, threshold = [], 0.0
    for c, s in blocks.pairs():
        both = np.concatenate([c, s])
        threshold = float(np.quantile(both, quantile))
        bc, bs = int((c > threshold).sum()), int((s > threshold).sum())
        xc, xs = xc + bc, xs + bs
        near += int((np.abs(both - threshold) < width).sum())
        per_block.append((bc + bs, len(c) / (len(c) + len(s))))
    return Past(xc, xs, per_block, threshold, near)


def _more_on_canary(past: Past) -> float:
    """P(at least `past.canary` of the calls past the thresholds on the canary) under "no
    worse": in each block which arm such a call came from is a coin with the arms' shares,
    so the count is a sum of binomials (summed exactly by convolution)."""
    if not past.canary:
        return 1.0
    if len(past.blocks) == 1:
        t, share = past.blocks[0]
        return float(stats.binom.sf(past.canary - 1, t, share))
    pmf = np.ones(1)
    for t, share in past.blocks:
        if t:
            pmf = np.convolve(pmf, stats.binom.pmf(np.arange(t + 1), t, share))
    return float(min(1.0, pmf[past.canary :].sum()))


def _tail(
    raw: Blocks, variances: tuple[float, float], gates: RolloutGates, look: Look
) -> MetricVerdict:
    fail_a, pass_a = _budgets("tail", gates, look)
    blocks = raw.centred()
    nc, ns = blocks.n
    worst = _past(blocks, TAIL_FAIL_QUANTILE)
    xc, xs = worst.canary, worst.stable
    # Exact whatever the latency's distribution (under exchangeability within a block).
    p = _more_on_canary(worst)
    # Centring moves each arm by its sample median, which has its own error: the shares past
    # the threshold move with it by the density there times that error (a median's standard
    # error is 1.2533 sigma / sqrt(n) for a normal sample), added to the pass bound's variance.
    vc, vs = variances
    width = 0.25 * math.sqrt((vc + vs) / 2)
    passing = _past(blocks, TAIL_PASS_QUANTILE, width)
    density = passing.near / ((nc + ns) * 2 * width) if width > 0 else 0.0
    centring_var = density**2 * 1.2533**2 * (vc / nc + vs / ns)
    high = agresti_caffo_upper(
        passing.canary, nc, passing.stable, ns, _z(pass_a), extra_var=centring_var
    )
    margin = (gates.max_tail_ratio - 1) * (1 - TAIL_PASS_QUANTILE)
    if p < fail_a and xc / nc > TAIL_FAIL_RATIO * xs / ns:
        verdict: Verdict = "fail"
    elif high <= margin:
        verdict = "pass"
    else:
        verdict = "marginal"
    where = (
        f"x{math.exp(worst.threshold):.2f} their median (the pooled p{TAIL_FAIL_QUANTILE * 100:g})"
        if len(blocks.canary) == 1
        else f"each block's pooled p{TAIL_FAIL_QUANTILE * 100:g} of calls over their median"
        f" ({len(blocks.canary)} blocks)"
    )
    return MetricVerdict(
        metric="tail",
        verdict=verdict,
        canary=xc / nc,
        stable=xs / ns,
        p_value=p,
        high=high,
        limit=margin,
        note=f"{xc / nc:.2%} of canary calls and {xs / ns:.2%} of stable's slower than {where}",
        details={"upper": high, "margin": margin, "threshold_ratio": math.exp(worst.threshold)},
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
