"""Replay of logged calls against a version, and its reproducibility report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.schemas.common import StrictBody, UtcDatetime
from serve.names import ModelName, VersionName

Outcome = Literal["identical", "within_tolerance", "output_changed", "label_changed", "failed"]
OUTCOMES: tuple[Outcome, ...] = (
    "identical",
    "within_tolerance",
    "output_changed",
    "label_changed",
    "failed",
)


class ReplayRequest(StrictBody):
    """Replay logged primary calls of `model` against `version`."""

    model: ModelName
    version: VersionName
    request_ids: list[str] = Field(min_length=1, max_length=1000)
    tolerance: float = Field(1e-6, ge=0, le=1, description="probabilities may differ this much")


class ReplayItem(BaseModel):
    request_id: str
    original_version: str | None
    original_sha256: str | None
    replay_sha256: str | None = None
    outcome: Outcome
    max_abs_diff: float | None = None
    original_labels: list[Any] | None = None
    replay_labels: list[Any] | None = None
    error: str | None = None


class ReplayReport(BaseModel):
    """A replay job and its reproducibility report (items: the differences first)."""

    id: str
    model: str
    version: str
    who: str
    state: Literal["running", "done", "failed", "interrupted"]
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    total: int
    done: int = 0
    tolerance: float
    counts: dict[str, int] = Field(default_factory=dict)
    same_artifact: int = Field(0, description="replays answered by the original's artifact")
    max_abs_diff: float | None = None
    error: str | None = None
    items: list[ReplayItem] = Field(default_factory=list)
