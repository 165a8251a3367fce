"""What this agent holds of the request log, in mergeable parts, for the controller to merge
with every other agent's (the controller's FleetRequestLog asks these with the fleet token).
Each answers from this agent's own file only, whether or not it is the controller."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agent.api.context import Context, Since, SinceRequired, Until, UntilRequired, authorized
from agent.local_log import LocalRequestLog
from agent.request_log import RequestFilter
from agent.schemas.alerts import HostFacts
from agent.schemas.fleet import (
    Columns,
    ConfidenceCount,
    HostCounts,
    LabelCount,
    LatencyColumns,
    OriginalRow,
    OriginalsRequest,
    PairTotals,
)
from agent.schemas.models import ReplicaReport
from agent.schemas.requests import RequestRow
from serve.names import ModelName, VersionName
from serve.request_record import Role

router = APIRouter(prefix="/v1/fleet", tags=["fleet"], dependencies=[Depends(authorized)])
Buckets = Annotated[int, Query(ge=1, le=1440)]


def local(ctx: Context) -> LocalRequestLog:
    return ctx.local


Local = Annotated[LocalRequestLog, Depends(local)]


@router.get("/features")
def features(
    log: Local,
    model: ModelName,
    version: VersionName,
    since: SinceRequired,
    until: UntilRequired,
    buckets: Buckets = 1,
    only: Annotated[list[int] | None, Query()] = None,
) -> Columns:
    """Summed counts per (bucket, feature, bin) of the whole minutes covering the window."""
    indexes = only if only is not None else list(range(len(log.bins(model, version).features)))
    return Columns.of(log.feature_part(model, version, since, until, buckets, indexes))


@router.get("/labels")
def labels(
    log: Local,
    model: ModelName,
    version: VersionName,
    since: SinceRequired,
    until: UntilRequired,
    buckets: Buckets = 1,
) -> list[LabelCount]:
    part = log.label_part(model, version, since, until, buckets)
    return [LabelCount(bucket=b, label=label, n=n) for b, label, n in part]


@router.get("/confidence")
def confidence(
    log: Local,
    model: ModelName,
    version: VersionName,
    since: SinceRequired,
    until: UntilRequired,
    edges: Annotated[list[float], Query(max_length=100)],
    buckets: Buckets = 1,
) -> list[ConfidenceCount]:
    """Answered primary calls per (time bucket, bin of the top class's probability)."""
    part = log.confidence_counts(model, version, since, until, buckets, edges)
    return [ConfidenceCount(bucket=b, bin=i, n=n) for b, i, n in part]


@router.get("/latency")
def latency(
    log: Local,
    since: SinceRequired,
    until: UntilRequired,
    step: Annotated[int, Query(ge=60, le=86400)] = 60,
    model: ModelName | None = None,
    version: VersionName | None = None,
) -> LatencyColumns:
    series, calls, hist = log.latency_part(model, version, since, until, step)
    return LatencyColumns(versions=series, calls=Columns.of(calls), latency=Columns.of(hist))


@router.get("/traffic")
def traffic(log: Local, model: ModelName, since: SinceRequired, until: UntilRequired) -> HostCounts:
    return HostCounts(host=log.host, calls=log.traffic_part(model, since, until))


@router.get("/calls")
def calls(
    log: Local,
    model: ModelName,
    canary: VersionName,
    stable: VersionName,
    since: SinceRequired,
    until: UntilRequired,
) -> Columns:
    return Columns.of(log.call_part(model, canary, stable, since, until))


@router.get("/pairs")
def pairs(
    log: Local,
    model: ModelName,
    canary: VersionName,
    stable: VersionName,
    since: SinceRequired,
    until: UntilRequired,
) -> PairTotals:
    p = log.shadow_pairs(model, canary, stable, since, until)
    return PairTotals(pairs=p.pairs, disagreements=p.disagreements)


@router.get("/replicas")
def replicas(log: Local) -> list[ReplicaReport]:
    """This host's model-version replicas: device, GPUs, and the GPU memory they use."""
    return log.replicas()


@router.get("/host-facts")
def host_facts(log: Local, since: SinceRequired, until: UntilRequired) -> HostFacts:
    """What the controller's host alert rules measure here: XID, ECC, throttling, drops."""
    (facts,) = log.host_facts(since, until)
    return facts


@router.post("/originals")
def originals(log: Local, body: OriginalsRequest) -> list[OriginalRow]:
    return [OriginalRow(**vars(o)) for o in log.originals(body.model, body.request_ids)]


@router.get("/requests")
def requests(
    log: Local,
    model: ModelName | None = None,
    version: VersionName | None = None,
    role: Role | None = None,
    status: Annotated[int | None, Query(ge=0, le=999)] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RequestRow]:
    return log.requests(RequestFilter(model, version, role, status, since, until, limit))


@router.get("/requests/{request_id:path}")
def request(log: Local, request_id: str) -> list[RequestRow]:
    return log.request(request_id)
