"""The evidence for one judgement of a rollout step, gathered through the request log and
handed to the pure judge (agent/analysis/judge.py): the canary's calls since its step began
against stable's since the rollout began, the step's shadow pairs, and the canary's drift
from its own reference sample."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.request_log import DriftSource, RequestLog
from agent.schemas.coverage import Coverage
from agent.schemas.rollouts import Judgement, MetricVerdict, Rollout
from agent.store import naive_utc


def judge_rollout(
    requests: RequestLog, r: Rollout, now: datetime, reference: DriftSource | None = None
) -> Judgement:
    # numpy and scipy load with the first judgement, not with every controller.
    import numpy as np

    from agent.analysis.judge import VersionSample, judge

    gates = r.policy.gates
    coverage = Coverage()
    calls = requests.calls(r.model, r.canary, r.stable, r.started_at, now, coverage)
    in_step = calls.ts >= np.datetime64(naive_utc(r.step_started_at))

    def sample(mask: Any) -> VersionSample:
        return VersionSample(
            latencies_ms=calls.total_ms[mask], errors=int(calls.failed[mask].sum())
        )

    pairs = requests.shadow_pairs(r.model, r.canary, r.stable, r.step_started_at, now, coverage)
    extra = [] if reference is None else [canary_drift(requests, r, now, reference)]
    if coverage.missing:
        extra.append(held_for_coverage(coverage, gates.max_missing_share))
    return judge(
        sample(calls.canary & in_step),
        sample(~calls.canary),
        pairs.disagreements,
        pairs.pairs,
        gates,
        extra=extra,
    )


def held_for_coverage(coverage: Coverage, limit: float) -> MetricVerdict:
    """Hosts that did not answer: judged without them only if they carry little traffic."""
    share = coverage.missing_share
    names = ", ".join(f"{m.host} ({m.reason})" for m in coverage.missing)
    if share is None:
        note = f"no answer from {names}, whose share of the traffic is unknown: holding"
        return MetricVerdict(metric="coverage", verdict="marginal", note=note)
    verdict = "marginal" if share > limit else "pass"
    note = (
        f"no answer from {names}: {share:.0%} of the traffic is missing"
        f" (at most {limit:.0%} may be)" + (": holding" if verdict == "marginal" else "")
    )
    return MetricVerdict(
        metric="coverage", verdict=verdict, canary=share, note=note, details={"limit": limit}
    )


def canary_drift(
    requests: RequestLog, r: Rollout, now: datetime, reference: DriftSource
) -> MetricVerdict:
    """The canary's traffic in this step against its reference sample: at worst marginal
    (the inputs drift for stable too), but a person should see it."""
    from agent.analysis.drift import drift_reports
    from agent.schemas.drift import DriftThresholds

    since, until = naive_utc(r.step_started_at), naive_utc(now)
    (report,) = drift_reports(requests, reference, since, until, DriftThresholds())
    drifted = [f.feature for f in report.features if f.decision.drifted]
    moved = report.prediction is not None and report.prediction.decision.drifted
    share = len(drifted) / max(len(report.features), 1)
    return MetricVerdict(
        metric="drift",
        verdict="marginal" if moved or share > r.policy.gates.max_drifted_share else "pass",
        canary=float(len(drifted)),
        note=f"{len(drifted)} of {len(report.features)} input features drifted from"
        f" {r.canary}'s reference; predictions {'drifted' if moved else 'steady'}"
        f" ({report.rows} rows)",
    )
