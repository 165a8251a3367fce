"""Progressive rollouts (controller only): start, status, pause, resume, abort."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from agent.api.context import Context, ControllerDep, Who, authorized
from agent.errors import Conflict
from agent.rollouts import Rollouts
from agent.schemas.rollouts import Rollout, RolloutStart
from serve.names import ModelName

router = APIRouter(tags=["rollouts"], dependencies=[Depends(authorized)])


def rollouts(ctx: Context, _: ControllerDep) -> Rollouts:
    if ctx.rollouts is None:
        raise Conflict("this controller runs no rollouts")
    return ctx.rollouts


RolloutsDep = Annotated[Rollouts, Depends(rollouts)]


@router.post("/v1/rollouts", status_code=201)
async def rollout_start(body: RolloutStart, runs: RolloutsDep, who: Who) -> Rollout:
    """Start a progressive rollout: the canary's weight steps up while the judge passes
    it, and traffic returns to stable at once if it fails."""
    return await runs.start(body.model, body.canary, body.overrides(), who)


@router.get("/v1/rollouts")
def rollout_list(runs: RolloutsDep) -> list[Rollout]:
    return runs.all()


@router.get("/v1/rollouts/{model}")
def rollout_status(model: ModelName, runs: RolloutsDep) -> Rollout:
    return runs.get(model)


@router.post("/v1/rollouts/{model}/pause")
async def rollout_pause(model: ModelName, runs: RolloutsDep, who: Who) -> Rollout:
    return await runs.pause(model, who)


@router.post("/v1/rollouts/{model}/resume")
async def rollout_resume(model: ModelName, runs: RolloutsDep, who: Who) -> Rollout:
    return await runs.resume(model, who)


@router.post("/v1/rollouts/{model}/abort")
async def rollout_abort(model: ModelName, runs: RolloutsDep, who: Who) -> Rollout:
    return await runs.abort(model, who)
