"""Drift of a version's primary traffic against its reference sample."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.schemas.common import UtcDatetime
from agent.schemas.coverage import Coverage


class DriftThresholds(BaseModel):
    """When a feature counts as drifted: corrected p-value below `alpha` and a large effect."""

    model_config = ConfigDict(frozen=True)

    alpha: float = Field(0.05, description="false discovery rate over a report's features")
    psi: float = Field(0.2, description='the usual "significant shift" line for PSI')
    wasserstein: float = Field(0.1, description="in reference standard deviations")
    js: float = Field(0.1, description="Jensen-Shannon distance, categorical")


class FeatureDrift(BaseModel):
    """One feature's test against the reference sample (or the predicted label's)."""

    feature: str
    kind: Literal["numeric", "categorical"]
    test: Literal["ks", "chi2"]
    reference_rows: int
    current_rows: int
    statistic: float | None = Field(description="KS D, or chi-square; null without traffic")
    p_value: float | None
    p_adjusted: float | None = Field(description="Benjamini-Hochberg over the report's features")
    psi: float | None = None
    wasserstein: float | None = Field(None, description="W1 / the reference's std")
    js: float | None = Field(None, description="Jensen-Shannon distance, base 2")
    drifted: bool


class DriftReport(BaseModel):
    model: str
    version: str
    since: UtcDatetime
    until: UtcDatetime
    current_rows: int = Field(description="instances of primary traffic in the window")
    reference_rows: int
    thresholds: DriftThresholds
    drifted: list[str] = Field(description="the features that drifted, most shifted first")
    features: list[FeatureDrift]
    prediction: FeatureDrift | None = Field(description="the predicted label's distribution")
    coverage: Coverage = Field(default_factory=Coverage, description="hosts counted, and not")


class DriftHistogram(BaseModel):
    model: str
    version: str
    feature: str
    since: UtcDatetime
    until: UtcDatetime
    edges: list[float] = Field(description="bin edges; one more than each fraction list")
    reference: list[float] = Field(description="fraction of the reference sample per bin")
    current: list[float] = Field(description="fraction of current traffic per bin")
    coverage: Coverage = Field(default_factory=Coverage)


class DriftPoint(BaseModel):
    start: UtcDatetime
    end: UtcDatetime
    current_rows: int
    tested: int = Field(description="features with traffic to test")
    drifted: int
    max_psi: float | None
    prediction_js: float | None
