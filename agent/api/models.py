"""Models, versions and routing, and the actions that change them (controller only): deploy,
traffic, promote, rollback, retire. Each answers what changed and is audited."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from agent.api.context import ControllerDep, Who, authorized
from agent.schemas.models import (
    ActionResult,
    DeployRequest,
    ModelStatus,
    PromoteRequest,
    RollbackRequest,
    TrafficRequest,
)

router = APIRouter(tags=["models and actions"], dependencies=[Depends(authorized)])


@router.get("/v1/models")
def models(ctl: ControllerDep) -> list[ModelStatus]:
    return [ctl.model_status(m) for m in sorted(ctl.states())]


@router.get("/v1/models/{model}")
def model(model: str, ctl: ControllerDep) -> ModelStatus:
    return ctl.model_status(model)


@router.post("/v1/models/{model}/versions")
async def deploy(model: str, body: DeployRequest, ctl: ControllerDep, who: Who) -> ActionResult:
    return await ctl.deploy(model, body.version, body.force, who)


@router.put("/v1/models/{model}/traffic")
async def traffic(model: str, body: TrafficRequest, ctl: ControllerDep, who: Who) -> ActionResult:
    return await ctl.set_traffic(model, body, who, sticky_header=body.sticky_header)


@router.post("/v1/models/{model}/promote")
async def promote(model: str, body: PromoteRequest, ctl: ControllerDep, who: Who) -> ActionResult:
    return await ctl.promote(model, body.version, who)


@router.post("/v1/models/{model}/rollback")
async def rollback(model: str, body: RollbackRequest, ctl: ControllerDep, who: Who) -> ActionResult:
    return await ctl.rollback(model, body.to, who)


@router.delete("/v1/models/{model}/versions/{version}")
async def retire(model: str, version: str, ctl: ControllerDep, who: Who) -> ActionResult:
    return await ctl.retire(model, version, who)
