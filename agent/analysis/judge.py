"""The canary judge: canary against stable, metric by metric, each `pass`, `marginal` or
`fail` with the numbers behind it. Pure: no I/O.

Each metric is an effect with a confidence bound on each side:
- errors: the canary's error rate minus stable's. Fail on the exact conditional test (given
  the errors of both arms, how many fell on the canary: exact for any rate and any split of
  the traffic, and the most powerful there is when errors are rare); pass when the upper
  bound (Agresti and Caffo's) is within the margin, the larger of `max_error_increase` and
  (`max_error_ratio` - 1) x stable's rate.
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
- latency tail: the share of calls above the pooled sample's 99.5th percentile, one arm
  against the other (exact under exchangeability, like Mood's median test): 2% of calls 5x
  slower shows here when nowhere else. A pass bounds the share past the 98th percentile.
  Each arm's calls are measured from its own median first: a canary 8% slower throughout
  (within the latency tolerance) would otherwise put twice stable's share past a pooled
  percentile, and the shift is the latency metric's to judge, not the tail's.
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
    "latency": 0.25,
    "spread": 0.05,
    "tail": 0.1,  # a slow 2% sits closest to its pass bound: the least of the budget
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
    if p < fail_a and xc / nc > 0.75 * gates.max_tail_ratio * xs / ns:
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
