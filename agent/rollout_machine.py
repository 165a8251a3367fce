"""The progressive rollout as a pure state machine: a Rollout (persisted as JSON) and the
transitions that return the next Rollout and the traffic action to apply. No I/O here; the
controller applies the actions and the agent keeps the state (agent/rollouts.py).

    running, judged every look_every_s:
      fail                                  --> rolled_back (RollBack), at once
      pass, the step has lasted min_dwell_s --> next step (SetWeight); the last --> done
      pass sooner, or marginal              --> same step, judged again at the next look
      still undecided after step_wait_s     --> marginal + 1; past max_marginal --> paused
    running --pause--> paused --resume--> running (the step's weight again)
    running|paused --abort--> aborted (RollBack)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from agent.errors import ApiError
from agent.schemas.rollouts import FINISHED, MAX_KEPT, Judged, MetricVerdict, Rollout, Verdict
from serve.model_config import RolloutPolicy


@dataclass(frozen=True)
class SetWeight:
    canary_weight: int


@dataclass(frozen=True)
class Promote:
    version: str


@dataclass(frozen=True)
class RollBack:
    to: str


Action = SetWeight | Promote | RollBack | None


class RolloutError(ApiError):
    """A rollout verb that the rollout's state does not allow (409 unless said otherwise)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(status, message)


def _look(r: Rollout) -> timedelta:
    return timedelta(seconds=r.policy.look_every_s)


def start(
    model: str, canary: str, stable: str, policy: RolloutPolicy, now: datetime, who: str
) -> tuple[Rollout, Action]:
    r = Rollout(
        model=model,
        canary=canary,
        stable=stable,
        who=who,
        policy=policy,
        state="running",
        step=0,
        started_at=now,
        step_started_at=now,
        judge_at=now + timedelta(seconds=policy.look_every_s),
        updated_at=now,
    )
    return r, SetWeight(r.weight)


def due(r: Rollout, now: datetime) -> bool:
    """Whether the next look is due."""
    return r.state == "running" and now >= r.judge_at


def judged(
    r: Rollout, verdict: Verdict, metrics: list[MetricVerdict], now: datetime
) -> tuple[Rollout, Action]:
    if r.state != "running":
        raise RolloutError(f"the rollout of {r.model} is {r.state}: nothing to judge")
    look = r.looks + 1
    lasted = (now - r.step_started_at).total_seconds()
    could_pass = lasted >= r.policy.min_dwell_s
    record = Judged(
        at=now, step=r.step, weight=r.weight, look=look, verdict=verdict, metrics=metrics
    )
    base = {
        "judgements": [*r.judgements, record][-MAX_KEPT:],
        "looks": look,
        "pass_looks": r.pass_looks + could_pass,
        "updated_at": now,
        "judge_at": now + _look(r),
    }
    where = f"{r.weight}%" if r.weight else "the shadow stage"
    if verdict == "fail":
        failed = ", ".join(m.metric for m in metrics if m.verdict == "fail")
        reason = f"judged fail at {where}: {failed or 'see the judgement'}"
        return r.model_copy(update={**base, "state": "rolled_back", "reason": reason}), RollBack(
            r.stable
        )
    if verdict == "pass" and could_pass:
        if r.last_step:
            return r.model_copy(update={**base, "state": "done", "reason": None}), Promote(r.canary)
        nxt = r.model_copy(
            update={**base, "step": r.step + 1, "step_started_at": now, "marginal": 0}
        )
        return nxt, SetWeight(nxt.weight)
    if lasted >= r.policy.step_wait_s * (r.marginal + 1):
        if r.marginal + 1 > r.policy.max_marginal:
            reason = f"undecided at {where} for {lasted:.0f} s ({verdict}): a person should decide"
            return r.model_copy(
                update={**base, "state": "paused", "reason": reason, "marginal": 0}
            ), None
        return r.model_copy(update={**base, "marginal": r.marginal + 1}), None
    return r.model_copy(update=base), None


def pause(r: Rollout, now: datetime, who: str) -> tuple[Rollout, Action]:
    if r.state != "running":
        raise RolloutError(f"the rollout of {r.model} is {r.state}, not running")
    return r.model_copy(
        update={"state": "paused", "reason": f"paused by {who}", "updated_at": now}
    ), None


def resume(r: Rollout, now: datetime) -> tuple[Rollout, Action]:
    """Back to running at the current step, with a fresh window (traffic may have moved)."""
    if r.state != "paused":
        raise RolloutError(f"the rollout of {r.model} is {r.state}, not paused")
    r = r.model_copy(
        update={
            "state": "running",
            "reason": None,
            "step_started_at": now,
            "judge_at": now + _look(r),
            "marginal": 0,
            "updated_at": now,
        }
    )
    return r, SetWeight(r.weight)


def abort(r: Rollout, now: datetime, who: str) -> tuple[Rollout, Action]:
    if r.state in FINISHED:
        raise RolloutError(f"the rollout of {r.model} is {r.state} already")
    return r.model_copy(
        update={"state": "aborted", "reason": f"aborted by {who}", "updated_at": now}
    ), RollBack(r.stable)
