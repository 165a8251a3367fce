"""Progressive rollouts: the persisted rollout, its judgements, and the judge's verdicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.schemas.common import StrictBody
from serve.model_config import (
    Dwell,
    LookEvery,
    MaxMarginal,
    RolloutGates,
    RolloutPolicy,
    ShadowFraction,
    Steps,
    StepWait,
)
from serve.names import ModelName, VersionName

Verdict = Literal["pass", "marginal", "fail"]
RANK: dict[Verdict, int] = {"pass": 0, "marginal": 1, "fail": 2}
State = Literal["running", "paused", "done", "rolled_back", "aborted"]
FINISHED: tuple[State, ...] = ("done", "rolled_back", "aborted")
MAX_KEPT = 200  # judgements kept in the rollout (every one is in the audit table)


class MetricVerdict(BaseModel):
    """One metric of one judgement, with the numbers behind it."""

    metric: str
    verdict: Verdict
    canary: float | None = None
    stable: float | None = None
    p_value: float | None = None
    # The evidence as it stands: the effect's bounds at this look (canary against stable:
    # a difference of rates, or a ratio) and the limit a pass needs `high` within.
    low: float | None = None
    high: float | None = None
    limit: float | None = None
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
    look: int = 0
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
    marginal: int = 0  # step_wait_s periods this step stayed undecided
    looks: int = 0  # judgements so far (each spends its share of the false-fail budget)
    pass_looks: int = 0  # looks at which a pass could advance (they spend the false-pass one)
    reason: str | None = None
    updated_at: datetime
    judgements: list[Judged] = Field(default_factory=list)  # the latest MAX_KEPT

    @property
    def weight(self) -> int:
        return self.policy.weights()[self.step]

    @property
    def last_step(self) -> bool:
        return self.step == len(self.policy.weights()) - 1


class RolloutStart(StrictBody):
    """Start a progressive rollout of `canary`. Fields left out, and gates left out of
    `gates`, keep the model's policy (`[rollout]` in its config)."""

    model: ModelName
    canary: VersionName
    steps: Steps | None = None
    shadow_stage: bool | None = None
    min_dwell_s: Dwell | None = None
    look_every_s: LookEvery | None = None
    step_wait_s: StepWait | None = None
    max_marginal: MaxMarginal | None = None
    shadow_fraction: ShadowFraction | None = None
    gates: RolloutGates | None = Field(None, description='e.g. {"min_requests": 50}')

    def overrides(self) -> dict[str, Any]:
        """What the caller set, gates included (one by one), to lay over the policy."""
        return self.model_dump(exclude_unset=True, exclude_none=True, exclude={"model", "canary"})
