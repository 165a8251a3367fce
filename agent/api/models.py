"""Models, versions and routing, and the actions that change them (controller only): deploy,
traffic, promote, rollback, retire. Each answers what changed and is audited."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi import APIRouter, Depends

from agent.api.context import Context, ControllerDep, Who, authorized
from agent.replicas import version_runtime
from agent.request_log import RequestLog
from agent.schemas.coverage import Coverage
from agent.schemas.fleet import HostCounts
from agent.schemas.models import (
    ActionResult,
    DeployRequest,
    ModelStatus,
    PromoteRequest,
    ReplicaPage,
    RollbackRequest,
    TrafficRequest,
)
from agent.store import utcnow
from serve.names import ModelName, VersionName

router = APIRouter(tags=["models and actions"], dependencies=[Depends(authorized)])


TRAFFIC_WINDOW = timedelta(minutes=5)
FLEET_CACHE_S = 5.0  # consoles poll every 2 s; the fleet is asked at most this often
_traffic: dict[tuple[int, str], tuple[float, list[HostCounts], Coverage]] = {}
_replicas: dict[int, tuple[float, ReplicaPage]] = {}


def replica_page(requests: RequestLog) -> ReplicaPage:
    cached = _replicas.get(id(requests))
    if cached is None or time.monotonic() - cached[0] > FLEET_CACHE_S:
        coverage = Coverage()
        cached = (
            time.monotonic(),
            ReplicaPage(rows=requests.replicas(coverage), coverage=coverage),
        )
        _replicas[id(requests)] = cached
    return cached[1]


def with_fleet(status: ModelStatus, requests: RequestLog) -> ModelStatus:
    """Each version's calls per host over the last minutes, and what its replicas really run
    on (the fleet's, on a controller)."""
    key = (id(requests), status.model)
    cached = _traffic.get(key)
    if cached is None or time.monotonic() - cached[0] > FLEET_CACHE_S:
        coverage = Coverage()
        now = utcnow()
        counts = requests.traffic(status.model, now - TRAFFIC_WINDOW, now, coverage)
        cached = (time.monotonic(), counts, coverage)
        _traffic[key] = cached
    _, counts, coverage = cached
    reports = replica_page(requests).rows
    versions = []
    for v in status.versions:
        runs_on, memory, problem = version_runtime(reports, status.model, v.version)
        update = {
            "hosts": {h.host: h.calls[v.version] for h in counts if v.version in h.calls},
            "runs_on": runs_on,
            "gpu_memory": memory,
            "problem": v.problem or problem,  # Serve's first: it says why nothing runs
        }
        versions.append(v.model_copy(update=update))
    return status.model_copy(update={"versions": versions, "coverage": coverage})


@router.get("/v1/models")
def models(ctx: Context, ctl: ControllerDep) -> list[ModelStatus]:
    return [with_fleet(ctl.model_status(m), ctx.requests) for m in sorted(ctl.states())]


@router.get("/v1/models/{model}")
def model(model: ModelName, ctx: Context, ctl: ControllerDep) -> ModelStatus:
    return with_fleet(ctl.model_status(model), ctx.requests)


@router.get("/v1/replicas")
def replicas(ctx: Context) -> ReplicaPage:
    """Every model-version replica (the fleet's, on a controller): its host, process, the
    GPUs Ray gave it, the execution provider it runs on, and the GPU memory it uses."""
    return replica_page(ctx.requests)


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
