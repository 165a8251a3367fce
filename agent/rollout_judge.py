"""The evidence for one look at a rollout, gathered through the request log and handed to the
pure judge (agent/analysis/judge.py): every canary call (served, or a copy of a stable call)
against stable's since the rollout began, the pairs of answers since then, the canary's
drift from its own reference sample in the current step, and, once both arms have enough
ground truth (agent/feedback.py), how many of their answers were wrong. Evidence
accumulates over the steps (the judge's bounds hold over every look), so a step that passed
leaves the next little to prove.

Latency is the replica's own time for each call it answered (latency_ms: parsing, the wait
for batch-mates, the model, encoding): the same instrument for a call and its shadow copy.
The router's total_ms is not: measured here under load, a shadow copy's took 20-27% longer
than its primary's on the same version, as the router sends it while it still writes the
primary's answer. What remains is the traffic share: a version with less of it finds fewer
batch-mates and its replica idles between calls, so the same artifact ran 8.5% slower and
17% wider in the shadow stage; the judge's fail thresholds leave room for that
(agent/analysis/judge.py). Without the batching wait the replica's time is half a
millisecond here, and a cold canary's first calls took 40% longer: no steadier. And it is
compared within blocks of `BLOCK_S` seconds since the rollout began, so that the host's load
at one step is never taken for the canary's speed. A canary whose replicas queue (too few
of them, say) shows in the user-facing p99 (alerts, Models), not here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.feedback import FeedbackBook
from agent.request_log import DriftSource, RequestLog
from agent.schemas.coverage import Coverage
from agent.schemas.rollouts import Judgement, MetricVerdict, Rollout
from agent.store import naive_utc

# Latency blocks: short enough that both arms in one meet the same load on the host (it moves
# by tens of percent from one half-minute to the next), long enough to hold many calls of
# both (the shadow copies give the canary half of stable's calls from the first step).
BLOCK_S = 30


def judge_rollout(
    requests: RequestLog,
    r: Rollout,
    now: datetime,
    reference: DriftSource | None = None,
    feedback: FeedbackBook | None = None,
) -> Judgement:
    # numpy and scipy load with the first judgement, not with every controller.
    import numpy as np

    from agent.analysis.judge import Look, VersionSample, judge, judge_accuracy

    gates = r.policy.gates
    coverage = Coverage()
    calls = requests.calls(r.model, r.canary, r.stable, r.started_at, now, coverage)
    since = np.datetime64(naive_utc(r.started_at), "us")
    blocks = (calls.ts - since) // np.timedelta64(BLOCK_S, "s")

    answered = ~calls.failed & np.isfinite(calls.model_ms)

    def sample(mask: Any) -> VersionSample:
        # Errors of every call; latency of those the version answered itself (a failed call
        # is the errors' evidence, and its fallback's time is not the canary's).
        timed = mask & answered
        return VersionSample(
            latencies_ms=calls.model_ms[timed],
            errors=int(calls.failed[mask].sum()),
            blocks=blocks[timed],
            calls=int(mask.sum()),
        )

    pairs = requests.shadow_pairs(r.model, r.canary, r.stable, r.started_at, now, coverage)
    extra = [] if reference is None else [canary_drift(requests, r, now, reference)]
    if coverage.missing:
        extra.append(held_for_coverage(coverage, gates.max_missing_share))
    look = Look(fail=r.looks + 1, passing=r.pass_looks + 1)
    if feedback is not None:  # ground truth, once both arms have enough labelled answers
        canary = feedback.correctness(r.model, r.canary, r.started_at, now)
        stable = feedback.correctness(r.model, r.stable, r.started_at, now)
        if min(canary[0], stable[0]) >= gates.min_requests:
            extra.append(judge_accuracy(*canary, *stable, gates, look))
    return judge(
        sample(calls.canary),
        sample(~calls.canary),
        pairs.disagreements,
        pairs.pairs,
        gates,
        extra=extra,
        look=look,
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
    """The canary's traffic in this step against its reference sample, shown with the
    evidence. It holds the rollout (marginal) only when `max_drifted_share` is below 1: the
    inputs drift for stable too, so drift says the reference is stale, not that the canary
    is worse."""
    from agent.analysis.drift import drift_reports
    from agent.schemas.drift import DriftThresholds

    since, until = naive_utc(r.step_started_at), naive_utc(now)
    (report,) = drift_reports(requests, reference, since, until, DriftThresholds())
    drifted = [f.feature for f in report.features if f.decision.drifted]
    moved = report.prediction is not None and report.prediction.decision.drifted
    share = len(drifted) / max(len(report.features), 1)
    limit = r.policy.gates.max_drifted_share
    hold = limit < 1 and (moved or share > limit)
    return MetricVerdict(
        metric="drift",
        verdict="marginal" if hold else "pass",
        canary=float(len(drifted)),
        note=f"{len(drifted)} of {len(report.features)} input features drifted from"
        f" {r.canary}'s reference; predictions {'drifted' if moved else 'steady'}"
        f" ({report.rows} rows)",
    )
