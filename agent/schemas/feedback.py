"""Ground truth: labels (or numbers, for a regressor) that arrive after the prediction, joined
to the logged call, and the accuracy per version they give."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from agent.schemas.common import StrictBody, UtcDatetime, When
from serve.names import ModelName

RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Label = Annotated[int | str, Field(description="the true class (as the model names it)")]
MAX_RECORDS = 10_000


class _Truth(StrictBody):
    request_id: RequestId = Field(description="the x-request-id the prediction answered with")
    # Not strict: JSON has no datetime, so a strict body would refuse every RFC 3339 string.
    ts: When | None = Field(
        None, strict=False, description="when the truth was known (default: received)"
    )


class LabelTruth(_Truth):
    """The true class of a classifier's call."""

    label: Label


class ValueTruth(_Truth):
    """The true number of a regressor's call."""

    value: float


FeedbackRecord = LabelTruth | ValueTruth


class OneLabel(LabelTruth):
    model: ModelName


class OneValue(ValueTruth):
    model: ModelName


class FeedbackBatch(StrictBody):
    model: ModelName
    records: list[FeedbackRecord] = Field(min_length=1, max_length=MAX_RECORDS)


# One record (with its model) or a batch; a record has `label` or `value`, never both.
FeedbackBody = FeedbackBatch | OneLabel | OneValue


def records_of(body: FeedbackBody) -> list[FeedbackRecord]:
    if isinstance(body, FeedbackBatch):
        return body.records
    if isinstance(body, OneLabel):
        return [LabelTruth(request_id=body.request_id, ts=body.ts, label=body.label)]
    return [ValueTruth(request_id=body.request_id, ts=body.ts, value=body.value)]


class FeedbackResult(BaseModel):
    received: int
    joined: int  # matched a logged primary call and stored
    replaced: int  # of those, a request that had feedback already (the latest wins)
    unknown: int  # no logged primary call of the model has that request id (yet)
    unknown_ids: list[str] = Field(default_factory=list, description="the first 20")
    rejected: list[str] = Field(default_factory=list, description="records refused, and why")


class AccuracyPoint(BaseModel):
    start: UtcDatetime
    labelled: int
    accuracy: float | None = None
    mae: float | None = None
    estimated: float | None = None  # from the calls' confidence (before their labels)


class VersionAccuracy(BaseModel):
    version: str
    labelled: int  # predictions with their truth, in the window
    calls: int | None  # primary calls in the window, fleet-wide (None: not known)
    coverage: float | None  # labelled / calls
    accuracy: float | None = None  # classifiers: share of labels right
    low: float | None = None  # Wilson 95% interval of the accuracy
    high: float | None = None
    mae: float | None = None  # regressors: mean absolute error
    median_delay_s: float | None = None  # truth known after the prediction, median
    # Confidence-based estimate (CBPE): the accuracy to expect from the calls' own top-class
    # probabilities, calibrated at registration; known before any label comes.
    estimated: float | None = None
    estimated_calls: int = 0  # answered calls the estimate reads
    estimate_error: float | None = None  # estimated - measured, once labels are in
    points: list[AccuracyPoint] = Field(default_factory=list)


class AccuracyReport(BaseModel):
    model: str
    since: UtcDatetime
    until: UtcDatetime
    versions: list[VersionAccuracy]
