"""The manifest of one model version: the typed contract between the store, Serve and the agent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MANIFEST_FILE = "manifest.json"
REFERENCE_FILE = "reference.parquet"
SCHEMA_VERSION = 1


def plain_file_name(name: str) -> str:
    """A file directly inside the version folder: no folder part, nothing hidden."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise ValueError(f"{name!r} is not a plain file name inside the version folder")
    return name


def check_artifact_name(name: str) -> str:
    plain_file_name(name)
    if name in (MANIFEST_FILE, REFERENCE_FILE):
        raise ValueError(
            f"an artifact may not be named {name!r}: the version folder keeps its manifest and"
            " reference sample under that name; rename the file"
        )
    return name


def _reference_name(name: str) -> str:
    if plain_file_name(name) != REFERENCE_FILE:
        raise ValueError(f"the reference sample is {REFERENCE_FILE!r}, not {name!r}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSchema(_Strict):
    """What one request row must look like: `len(features)` finite numbers of `dtype`."""

    tensor: str = Field(description="name of the ONNX graph input")
    features: list[str]
    dtype: Literal["float32", "float64", "int64"] = "float32"
    shape: list[int | None] = Field(description="tensor shape, None for the batch dimension")


class OutputSchema(_Strict):
    kind: Literal["classification", "regression"] = "classification"
    label_tensor: str = "label"
    probabilities_tensor: str | None = "probabilities"
    classes: list[int | str] = Field(default_factory=list)


class ExpectedAnswers(_Strict):
    """What the version answered at registration for the first rows of its reference sample
    (as the version app answers: a label, and probabilities for a classifier). Before the
    deployed version gets traffic the controller sends the same rows and compares: another
    runtime, other hardware or another artifact shows here, before any user sees it."""

    instances: list[list[float]]
    predictions: list[dict[str, Any]]
    runtime: str = Field(description="onnxruntime version and provider that answered")
    tolerance: float = Field(1e-4, ge=0, description="largest difference of a probability")


class Calibration(_Strict):
    """How often the version was right at each level of its own confidence (the top class's
    probability), on its reference sample: confidence-based performance estimation reads the
    accuracy to expect from the confidences of live calls, before their labels come."""

    edges: list[float] = Field(description="inner bin edges of the confidence, rising")
    accuracy: list[float] = Field(description="share right in each bin (len(edges) + 1)")
    counts: list[int]


class Provenance(_Strict):
    script: str | None = None
    git_commit: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    python: str | None = None
    host: str | None = None


class Manifest(_Strict):
    schema_version: int = SCHEMA_VERSION
    model: str
    version: str
    framework: Literal["onnx"] = "onnx"
    artifact: Annotated[str, AfterValidator(check_artifact_name)] = Field(
        description="file name of the artifact inside the version folder"
    )
    sha256: str
    size_bytes: int
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    input: InputSchema
    output: OutputSchema
    metrics: dict[str, float] = Field(default_factory=dict, description="offline metrics")
    reference: Annotated[str, AfterValidator(_reference_name)] | None = REFERENCE_FILE
    reference_rows: int = 0
    provenance: Provenance = Field(default_factory=Provenance)
    expected: ExpectedAnswers | None = None
    calibration: Calibration | None = None
    # Pickled artifacts run code on load: refused unless a manifest explicitly opts in,
    # and no runtime for them exists yet, so the flag is recorded but never honoured.
    allow_pickle: bool = False
