"""Ground truth and accuracy (controller only): POST /v1/feedback joins labels (or numbers)
to the logged predictions fleet-wide; GET /v1/accuracy reads accuracy per version over time."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agent.api.context import Context, ControllerDep, Since, Until, authorized
from agent.errors import Conflict, Invalid
from agent.feedback import FeedbackBook
from agent.schemas.feedback import AccuracyReport, FeedbackBody, FeedbackResult
from agent.store import naive_utc, utcnow
from serve.names import ModelName, VersionName

router = APIRouter(tags=["feedback and accuracy"], dependencies=[Depends(authorized)])
DEFAULT_WINDOW = timedelta(hours=24)


def book(ctx: Context, _: ControllerDep) -> FeedbackBook:
    if ctx.feedback is None:
        raise Conflict("this controller keeps no feedback")
    return ctx.feedback


Book = Annotated[FeedbackBook, Depends(book)]


@router.post("/v1/feedback")
def feedback(body: FeedbackBody, feedback: Book) -> FeedbackResult:
    """Ground truth for logged predictions: one record or a batch. Unknown request ids are
    counted and named, never an error for the batch."""
    return feedback.add(body)


@router.get("/v1/accuracy")
def accuracy(
    feedback: Book,
    model: ModelName,
    version: VersionName | None = None,
    since: Since = None,
    until: Until = None,
    buckets: Annotated[int, Query(ge=1, le=120)] = 12,
) -> AccuracyReport:
    """Accuracy (or mean absolute error) of the predictions made in the window, per version
    and over time, with the share of calls that have their truth and its median delay."""
    end = naive_utc(until) if until else utcnow()
    start = naive_utc(since) if since else end - DEFAULT_WINDOW
    if start >= end:
        raise Invalid("since must be before until")
    return feedback.accuracy(model, start, end, buckets, version)
