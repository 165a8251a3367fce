"""The contract between the controller and a batch job's driver (serve/batch_job.py): the spec
the controller writes before submitting the Ray job, and the progress and outcome files the
driver writes beside it (atomically: a reader never sees half a file).

Files, not the job's log: they are typed, they survive the driver, and the controller reads
them on the head node where the driver runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SPEC_FILE = "spec.json"
PROGRESS_FILE = "progress.json"
OUTCOME_FILE = "outcome.json"
PREDICTIONS_DIR = "predictions"
REJECTS_DIR = "rejects"
JOB_FILE = "_job.json"  # in the output folder: which job, version and input made it

InputFormat = Literal["parquet", "csv"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputFile(_Strict):
    path: str = Field(description="absolute path")
    name: str = Field(description="path relative to the input root: the row ids' prefix")
    rows: int = Field(ge=0, description="data rows, counted before the job")


class BatchSpec(_Strict):
    job_id: str
    input_sha256: str = Field(description="over the input files' names and bytes, at submit")
    model: str
    version: str
    sha256: str
    store: str = Field(description="the model store's root")
    inputs: list[InputFile]
    format: InputFormat
    output: str = Field(description="the output folder, made at the end by one rename")
    staging: str = Field(description="where the output is written until the job succeeds")
    actors: int = Field(ge=1)
    num_cpus: float = Field(gt=0)
    num_gpus: float = Field(ge=0, description="per actor; 0 on a CPU version")
    batch_size: int = Field(ge=1)
    block_rows: int = Field(ge=1, description="rows per block read")
    drift_edges: list[list[float]] | None = Field(
        None, description="each feature's drift bin edges, from the version's reference sample"
    )


class BatchProgress(_Strict):
    read: int = 0
    scored: int = 0
    rejected: int = 0
    total: int = 0
    elapsed_s: float = 0.0


class PhaseSeconds(_Strict):
    """Seconds summed over the actors and writers (they overlap in time: not a wall clock)."""

    validate_s: float = 0.0
    score_s: float = 0.0
    write_s: float = 0.0


class Timeline(_Strict):
    """When the driver got where, in seconds after its process started (`started_at`, Unix
    time): what a job's fixed cost is made of."""

    started_at: float
    connected_s: float | None = None  # to the cluster (ray.init)
    first_read_s: float | None = None  # the first rows read and checked
    first_scored_s: float | None = None  # the actors loaded and the first batch scored
    finished_s: float | None = None  # every row written


class FeatureCounts(_Strict):
    """One feature of the job's good rows counted on the version's drift bins."""

    counts: list[int]
    below_sum: float = 0.0  # sums of the values under and over the reference's range
    above_sum: float = 0.0


class DriftCounts(_Strict):
    features: list[FeatureCounts]
    labels: dict[str, int] = Field(default_factory=dict)


class BatchOutcome(_Strict):
    state: Literal["succeeded", "failed"]
    read: int = 0
    scored: int = 0
    rejected: int = 0
    wall_s: float = 0.0
    phases: PhaseSeconds = Field(default_factory=PhaseSeconds)
    drift: DriftCounts | None = None
    provider: str | None = Field(None, description="what the actors ran on")
    nodes: list[str] = Field(default_factory=list, description="the nodes actors scored on")
    timeline: Timeline | None = None
    error: str | None = None


def write_atomically(path: Path, model: BaseModel) -> None:
    """Write then rename, so a reader sees the old file or the new one, never a part."""
    part = path.with_name(f".{path.name}.part")
    part.write_text(model.model_dump_json(indent=2) + "\n")
    os.chmod(part, 0o600)
    os.replace(part, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
