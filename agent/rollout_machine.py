"""The progressive rollout as a pure state machine: a Rollout (persisted as JSON) and the
transitions that return the next Rollout and the traffic action to apply. No I/O here; the
controller applies the actions and the agent keeps the state (agent/rollouts.py).

    running --pass--> next step (SetWeight) ... last step --pass--> done (Promote)
    running --fail--> rolled_back (RollBack)
    running --marginal--> same step, watched again; past max_marginal --> paused
    running --pause--> paused --resume--> running (the step's weight again, a fresh window)
    running|paused --abort--> aborted (RollBack)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from agent.errors import ApiError
from agent.schemas.rollouts import FINISHED, Judged, MetricVerdict, Rollout, Verdict
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


def _wait(r: Rollout) -> timedelta:
    return timedelta(seconds=r.policy.step_wait_s)


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
        judge_at=now + timedelta(seconds=policy.step_wait_s),
        updated_at=now,
    )
    return r, SetWeight(r.weight)


def due(r: Rollout, now: datetime) -> bool:
    """Whether the current step has been watched long enough to judge."""
    return r.state == "running" and now >= r.judge_at


def judged(
    r: Rollout, verdict: Verdict, metrics: list[MetricVerdict], now: datetime
) -> tuple[Rollout, Action]:
    if r.state != "running":
        raise RolloutError(f"the rollout of {r.model} is {r.state}: nothing to judge")
    record = Judged(at=now, step=r.step, weight=r.weight, verdict=verdict, metrics=metrics)
    history = [*r.judgements, record]
    base = {"judgements": history, "updated_at": now}
    if verdict == "fail":
        failed = ", ".join(m.metric for m in metrics if m.verdict == "fail")
        reason = f"judged fail at {r.weight}%: {failed or 'see the judgement'}"
        return r.model_copy(update={**base, "state": "rolled_back", "reason": reason}), RollBack(
            r.stable
        )
    if verdict == "marginal":
        if r.marginal + 1 > r.policy.max_marginal:
            reason = f"marginal {r.marginal + 1} times at {r.weight}%: a person should decide"
            return r.model_copy(
                update={**base, "state": "paused", "reason": reason, "marginal": 0}
            ), None
        return r.model_copy(
            update={**base, "marginal": r.marginal + 1, "judge_at": now + _wait(r)}
        ), None
    if r.step == len(r.policy.steps) - 1:
        return r.model_copy(update={**base, "state": "done", "reason": None}), Promote(r.canary)
    nxt = r.model_copy(
        update={
            **base,
            "step": r.step + 1,
            "step_started_at": now,
            "judge_at": now + _wait(r),
            "marginal": 0,
        }
    )
    return nxt, SetWeight(nxt.weight)


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
            "judge_at": now + _wait(r),
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
