"""The canary judge: canary against stable over the same window, metric by metric, each
`pass`, `marginal` or `fail` with the numbers behind it. Pure: no I/O.

The judge passes only on evidence that the canary is no worse, not on a lack of evidence
that it is: a canary with one error in forty calls has not shown it is safe (the upper end of
its error rate's confidence interval is far above stable's), so it is marginal, not passed.
Latency is judged on location (one-sided Mann-Whitney U and the median ratio), tail (p99
ratio) and spread (Brown-Forsythe), so a rise in variance with the same median does not pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from agent.schemas.rollouts import RANK, Judgement, MetricVerdict, Verdict
from serve.model_config import RolloutGates


@dataclass(frozen=True)
class VersionSample:
    latencies_ms: np.ndarray  # one per call
    errors: int = 0  # calls that failed (5xx, or answered by the fallback)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)


def _too_few(metric: str, canary: VersionSample, gates: RolloutGates) -> MetricVerdict | None:
    if canary.requests >= gates.min_requests:
        return None
    return MetricVerdict(
        metric=metric,
        verdict="marginal",
        note=f"only {canary.requests} canary requests (at least {gates.min_requests} needed)",
    )


def _interval(successes: int, trials: int) -> tuple[float, float]:
    ci = stats.binomtest(successes, trials).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def judge_errors(
    canary: VersionSample, stable: VersionSample, gates: RolloutGates
) -> MetricVerdict:
    if (few := _too_few("error_rate", canary, gates)) is not None:
        return few
    rate_c = canary.errors / canary.requests
    rate_s = stable.errors / stable.requests if stable.requests else 0.0
    table = [
        [canary.errors, canary.requests - canary.errors],
        [stable.errors, stable.requests - stable.errors],
    ]
    p = float(stats.fisher_exact(table, alternative="greater").pvalue)
    _, high = _interval(canary.errors, canary.requests)
    allowed = rate_s + gates.max_error_increase
    details = {"canary_upper_95": high, "allowed": allowed}
    if p < gates.fail_p and rate_c - rate_s > gates.max_error_increase:
        verdict: Verdict = "fail"
        note = f"canary fails {rate_c:.2%} of calls, stable {rate_s:.2%}"
    elif high <= allowed:
        verdict, note = "pass", f"canary's error rate is at most {high:.2%} (allowed {allowed:.2%})"
    else:
        verdict = "marginal"
        note = f"canary's error rate could be up to {high:.2%} (allowed {allowed:.2%}): more data"
    return MetricVerdict(
        metric="error_rate",
        verdict=verdict,
        canary=rate_c,
        stable=rate_s,
        p_value=p,
        note=note,
        details=details,
    )


def judge_latency(
    canary: VersionSample, stable: VersionSample, gates: RolloutGates
) -> MetricVerdict:
    if (few := _too_few("latency", canary, gates)) is not None:
        return few
    c, s = canary.latencies_ms, stable.latencies_ms
    if len(s) < gates.min_requests:
        return MetricVerdict(
            metric="latency", verdict="marginal", note=f"only {len(s)} stable requests"
        )
    med_c, med_s = float(np.median(c)), float(np.median(s))
    p99_c, p99_s = float(np.percentile(c, 99)), float(np.percentile(s, 99))
    iqr_c = float(np.subtract(*np.percentile(c, [75, 25])))
    iqr_s = float(np.subtract(*np.percentile(s, [75, 25])))
    p_loc = float(stats.mannwhitneyu(c, s, alternative="greater").pvalue)
    p_spread = float(stats.levene(c, s, center="median").pvalue)
    ratio_med = med_c / med_s if med_s > 0 else 1.0
    ratio_p99 = p99_c / p99_s if p99_s > 0 else 1.0
    ratio_iqr = iqr_c / iqr_s if iqr_s > 0 else (1.0 if iqr_c == 0 else np.inf)
    tol = gates.latency_tolerance
    details = {
        "canary_p99_ms": p99_c,
        "stable_p99_ms": p99_s,
        "median_ratio": ratio_med,
        "p99_ratio": ratio_p99,
        "iqr_ratio": float(min(ratio_iqr, 1e9)),  # JSON has no infinity
        "spread_p": p_spread,
    }
    slower = p_loc < gates.fail_p and ratio_med > 1 + tol
    wider = p_spread < gates.fail_p and ratio_iqr > gates.spread_ratio
    if slower or wider or ratio_p99 > 1 + 2 * tol:
        verdict: Verdict = "fail"
    elif ratio_med <= 1 + tol and ratio_p99 <= 1 + tol and ratio_iqr <= gates.spread_ratio:
        verdict = "pass"
    else:
        verdict = "marginal"
    note = (
        f"median {med_c:.1f} vs {med_s:.1f} ms (x{ratio_med:.2f}), p99 {p99_c:.1f} vs"
        f" {p99_s:.1f} ms (x{ratio_p99:.2f}), spread x{ratio_iqr:.2f}"
    )
    return MetricVerdict(
        metric="latency",
        verdict=verdict,
        canary=med_c,
        stable=med_s,
        p_value=p_loc,
        note=note,
        details=details,
    )


def judge_disagreement(disagreements: int, pairs: int, gates: RolloutGates) -> MetricVerdict:
    """Paired answers (a canary call shadowed to stable) whose labels differ."""
    if pairs < gates.min_pairs:
        return MetricVerdict(
            metric="disagreement",
            verdict="marginal",
            note=f"only {pairs} paired answers (at least {gates.min_pairs} needed)",
        )
    low, high = _interval(disagreements, pairs)
    rate = disagreements / pairs
    limit = gates.max_disagreement
    verdict: Verdict = "fail" if low > limit else "pass" if high <= limit else "marginal"
    note = (
        f"{disagreements} of {pairs} labels differ from stable"
        f" (95% up to {high:.1%}, limit {limit:.0%})"
    )
    return MetricVerdict(
        metric="disagreement",
        verdict=verdict,
        canary=rate,
        note=note,
        details={"low_95": low, "high_95": high},
    )


def judge(
    canary: VersionSample,
    stable: VersionSample,
    disagreements: int,
    pairs: int,
    gates: RolloutGates,
    extra: list[MetricVerdict] | None = None,
) -> Judgement:
    metrics = [
        judge_errors(canary, stable, gates),
        judge_latency(canary, stable, gates),
        judge_disagreement(disagreements, pairs, gates),
        *(extra or []),
    ]
    worst = max(metrics, key=lambda m: RANK[m.verdict]).verdict
    return Judgement(verdict=worst, metrics=metrics)
