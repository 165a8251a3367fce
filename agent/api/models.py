"""Models, versions and routing, and the actions that change them (controller only): deploy,
traffic, promote, rollback, retire. Each answers what changed and is audited."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi import APIRouter, Depends

from agent.api.context import Context, ControllerDep, Who, authorized
from agent.request_log import RequestLog
from agent.schemas.coverage import Coverage
from agent.schemas.fleet import HostCounts
from agent.schemas.models import (
    ActionResult,
    DeployRequest,
    ModelStatus,
    PromoteRequest,
    RollbackRequest,
    TrafficRequest,
)
from agent.store import utcnow
from serve.names import ModelName, VersionName

router = APIRouter(tags=["models and actions"], dependencies=[Depends(authorized)])


TRAFFIC_WINDOW = timedelta(minutes=5)
TRAFFIC_CACHE_S = 5.0  # consoles poll every 2 s; the fleet is asked at most this often
_traffic: dict[tuple[int, str], tuple[float, list[HostCounts], Coverage]] = {}


def with_traffic(status: ModelStatus, requests: RequestLog) -> ModelStatus:
    """Each version's calls per host over the last minutes (the fleet's, on a controller)."""
    key = (id(requests), status.model)
    cached = _traffic.get(key)
    if cached is None or time.monotonic() - cached[0] > TRAFFIC_CACHE_S:
        coverage = Coverage()
        now = utcnow()
        counts = requests.traffic(status.model, now - TRAFFIC_WINDOW, now, coverage)
        cached = (time.monotonic(), counts, coverage)
        _traffic[key] = cached
    _, counts, coverage = cached
    versions = [
        v.model_copy(
            update={"hosts": {h.host: h.calls[v.version] for h in counts if v.version in h.calls}}
        )
        for v in status.versions
    ]
    return status.model_copy(update={"versions": versions, "coverage": coverage})


@router.get("/v1/models")
def models(ctx: Context, ctl: ControllerDep) -> list[ModelStatus]:
    return [with_traffic(ctl.model_status(m), ctx.requests) for m in sorted(ctl.states())]


@router.get("/v1/models/{model}")
def model(model: ModelName, ctx: Context, ctl: ControllerDep) -> ModelStatus:
    return with_traffic(ctl.model_status(model), ctx.requests)


@router.post("/v1/models/{model}/versions")
async def deploy(
    model: ModelName, body: DeployRequest, ctl: ControllerDep, who: Who
) -> ActionResult:
    return await ctl.deploy(model, body.version, body.force, who)


@router.put("/v1/models/{model}/traffic")
async def traffic(
    model: ModelName, body: TrafficRequest, ctl: ControllerDep, who: Who
) -> ActionResult:
    return await ctl.set_traffic(model, body, who, sticky_header=body.sticky_header)


@router.post("/v1/models/{model}/promote")
async def promote(
    model: ModelName, body: PromoteRequest, ctl: ControllerDep, who: Who
) -> ActionResult:
    return await ctl.promote(model, body.version, who)


@router.post("/v1/models/{model}/rollback")
async def rollback(
    model: ModelName, body: RollbackRequest, ctl: ControllerDep, who: Who
) -> ActionResult:
    return await ctl.rollback(model, body.to, who)


@router.delete("/v1/models/{model}/versions/{version}")
async def retire(
    model: ModelName, version: VersionName, ctl: ControllerDep, who: Who
) -> ActionResult:
    return await ctl.retire(model, version, who)
