"""Progressive rollouts: the persisted rollout, its judgements, and the judge's verdicts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from agent.schemas.common import StrictBody
from serve.model_config import RolloutPolicy

Verdict = Literal["pass", "marginal", "fail"]
RANK: dict[Verdict, int] = {"pass": 0, "marginal": 1, "fail": 2}
State = Literal["running", "paused", "done", "rolled_back", "aborted"]
FINISHED: tuple[State, ...] = ("done", "rolled_back", "aborted")


class MetricVerdict(BaseModel):
    """One metric of one judgement, with the numbers behind it."""

    metric: str
    verdict: Verdict
    canary: float | None = None
    stable: float | None = None
    p_value: float | None = None
    note: str = ""
    details: dict[str, float] = Field(default_factory=dict)


class Judgement(BaseModel):
    verdict: Verdict
    metrics: list[MetricVerdict]


class Judged(BaseModel):
    """A judgement as the rollout keeps it: when, at which step and weight."""

    at: datetime
    step: int
    weight: int
    verdict: Verdict
    metrics: list[MetricVerdict] = Field(default_factory=list)


class Rollout(BaseModel):
    model: str
    canary: str
    stable: str
    who: str
    policy: RolloutPolicy
    state: State
    step: int
    started_at: datetime
    step_started_at: datetime
    judge_at: datetime
    marginal: int = 0  # marginal judgements in a row at this step
    reason: str | None = None
    updated_at: datetime
    judgements: list[Judged] = Field(default_factory=list)

    @property
    def weight(self) -> int:
        return self.policy.steps[self.step]


class RolloutStart(StrictBody):
    """Start a progressive rollout of `canary`; unset fields come from the model's policy."""

    model: str
    canary: str
    steps: list[int] | None = None
    step_wait_s: float | None = None
    max_marginal: int | None = None
    pair_fraction: float | None = None
    gates: dict[str, float] | None = Field(None, description='e.g. {"min_requests": 50}')
