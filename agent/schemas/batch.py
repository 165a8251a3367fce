"""Batch jobs: a model version scoring a dataset on the Ray cluster (agent/batch_jobs.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from agent.schemas.common import StrictBody, UtcDatetime
from agent.schemas.drift import FeatureDrift
from serve.batch_contract import InputFormat, PhaseSeconds, Timeline
from serve.names import ModelName

BatchState = Literal["running", "succeeded", "failed", "cancelled"]
FINISHED: tuple[BatchState, ...] = ("succeeded", "failed", "cancelled")
BATCH_STATES: tuple[BatchState, ...] = ("running", *FINISHED)

# `stable` (the model's stable version when the job starts), `best:METRIC` (the registered
# version with the best offline METRIC), or a version's name.
Selector = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=r"^(stable|best:[A-Za-z0-9_.-]+|[A-Za-z0-9_.-]+)$"),
]
PathText = Annotated[str, Field(min_length=1, max_length=4096)]


class BatchStart(StrictBody):
    model: ModelName
    version: Selector = "stable"
    input: PathText = Field(description="a file, a folder of them, or a glob, on the head node")
    output: PathText = Field(description="a folder that does not exist yet")
    format: InputFormat | None = Field(None, description="default: from the files' extension")


class BatchDrift(BaseModel):
    """The job's good input rows against the version's reference sample, with the same
    statistics as online traffic (agent/analysis/drift.py)."""

    reference_rows: int
    current_rows: int
    drifted: list[str] = Field(description="features that drifted, most shifted first")
    features: list[FeatureDrift]
    prediction: FeatureDrift | None


class BatchJob(BaseModel):
    id: str
    model: str
    selector: str = Field(description="the version as asked: stable, best:METRIC or a name")
    version: str
    sha256: str
    input: str
    input_sha256: str = Field(description="sha256 over the input files' names and bytes")
    files: int
    output: str
    format: InputFormat
    state: BatchState
    who: str
    schedule: str | None = Field(None, description="the [[batch]] entry that started it")
    started_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    total: int = Field(description="data rows in the input")
    read: int = 0
    scored: int = 0
    rejected: int = 0
    rows_per_s: float | None = None
    eta_s: float | None = None
    duration_s: float | None = None
    provider: str | None = Field(None, description="what the scoring actors ran on")
    nodes: list[str] = Field(default_factory=list, description="the Ray nodes that scored")
    phases: PhaseSeconds | None = None
    timeline: Timeline | None = Field(None, description="where the driver's time went")
    drift: BatchDrift | None = None
    error: str | None = None
    note: str | None = Field(None, description="a running job that does not move, and why")

    def startup(self) -> str | None:
        """Where the job's fixed cost went, in one line (for the CLI and the console)."""
        t = self.timeline
        if t is None:
            return None
        waited = t.started_at - self.started_at.timestamp()
        marks = []
        for label, value in (
            ("connected", t.connected_s),
            ("first rows read", t.first_read_s),
            ("first scored", t.first_scored_s),
            ("all written", t.finished_s),
        ):
            if value is not None:
                marks.append(f"{label} {value:.1f}s")
        after = f"; then {', '.join(marks)}" if marks else ""
        return f"driver started {waited:.1f}s after the submit{after}"


class BatchDiff(BaseModel):
    """Two jobs' predictions compared row by row (joined on the row id)."""

    a: str
    b: str
    rows_a: int
    rows_b: int
    common: int
    only_a: int
    only_b: int
    labels_changed: int
    probabilities_changed: int = Field(description="rows whose probabilities differ at all")
    max_probability_change: float | None
    identical: bool = Field(description="the same rows with the same bits")
    examples: list[str] = Field(description="a few row ids whose label changed")
