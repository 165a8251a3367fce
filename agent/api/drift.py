"""Drift of a version's primary traffic against its reference sample: the report, one
feature's histogram, and drift over time (controller only).

Drift needs numpy and scipy (~40 MiB): imported on the first drift request, so an agent
nobody asks about drift stays small."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agent.api.context import Context, ControllerDep, Since, Until, authorized, time_window
from agent.errors import Conflict, NotFound
from agent.request_log import DriftSource
from agent.schemas.coverage import Coverage
from agent.schemas.drift import (
    DriftHistogram,
    DriftPoint,
    DriftReport,
    DriftThresholds,
)
from agent.summaries import minute_window
from serve.model_store import StoreError
from serve.names import ModelName, VersionName

router = APIRouter(tags=["drift"], dependencies=[Depends(authorized)])


def drift_source(
    ctl: ControllerDep, model: ModelName, version: VersionName | None = None
) -> DriftSource:
    if model not in ctl.models:
        raise NotFound(f"unknown model {model!r}; known: {sorted(ctl.models)}")
    version = version or ctl.state(model).stable
    try:
        manifest = ctl.model_store.manifest(model, version)
        reference = ctl.model_store.reference_path(model, version)
    except StoreError as exc:
        raise NotFound(str(exc)) from exc
    if reference is None or not reference.is_file():
        raise Conflict(f"{model}/{version} has no reference sample: register it with one")
    return DriftSource(model, version, reference, list(manifest.input.features))


Source = Annotated[DriftSource, Depends(drift_source)]


@router.get("/v1/drift")
def drift(ctx: Context, source: Source, since: Since = None, until: Until = None) -> DriftReport:
    """Every input feature and the predicted label of a version's primary traffic in the
    window (default: the last hour; version: the stable one) against its reference sample."""
    from agent.analysis.drift import drift_reports, drifted_first, feature_drift

    start, end = minute_window(*time_window(since, until, None, 3600)[:2])
    thresholds = DriftThresholds()
    coverage = Coverage()
    (report,) = drift_reports(ctx.requests, source, start, end, thresholds, coverage=coverage)
    features = [feature_drift(f) for f in report.features]
    return DriftReport(
        model=source.model,
        version=source.version,
        since=start,
        until=end,
        current_rows=report.rows,
        reference_rows=max((f.reference_rows for f in features), default=0),
        thresholds=thresholds,
        drifted=drifted_first(features),
        features=features,
        prediction=feature_drift(report.prediction) if report.prediction else None,
        coverage=coverage,
    )


@router.get("/v1/drift/histogram")
def drift_histogram(
    ctx: Context,
    source: Source,
    feature: str,
    since: Since = None,
    until: Until = None,
    bins: Annotated[int, Query(ge=2, le=100)] = 20,
) -> DriftHistogram:
    from agent.analysis.drift import histogram

    if feature not in source.features:
        raise NotFound(f"{source.model}/{source.version} has no input feature {feature!r}")
    start, end = minute_window(*time_window(since, until, None, 3600)[:2])
    coverage = Coverage()
    edges, ref, cur = histogram(ctx.requests, source, feature, start, end, bins, coverage)
    return DriftHistogram(
        model=source.model,
        version=source.version,
        feature=feature,
        since=start,
        until=end,
        edges=edges,
        reference=ref.tolist(),
        current=cur.tolist(),
        coverage=coverage,
    )


@router.get("/v1/drift/timeline")
def drift_timeline(
    ctx: Context,
    source: Source,
    since: Since = None,
    until: Until = None,
    buckets: Annotated[int, Query(ge=1, le=60)] = 12,
) -> list[DriftPoint]:
    """The window cut in `buckets` equal slices, each tested on its own."""
    from agent.analysis.drift import drift_reports

    start, end = minute_window(*time_window(since, until, None, 3600)[:2])
    reports = drift_reports(ctx.requests, source, start, end, DriftThresholds(), buckets)
    return [
        DriftPoint(
            start=r.start,
            end=r.end,
            current_rows=r.rows,
            tested=sum(f.result.p_value is not None for f in r.features),
            drifted=sum(f.decision.drifted for f in r.features),
            max_psi=max(
                (p for f in r.features if (p := getattr(f.result, "psi", None)) is not None),
                default=None,
            ),
            prediction_js=getattr(r.prediction.result, "js", None) if r.prediction else None,
        )
        for r in reports
    ]
