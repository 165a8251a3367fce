"""Replay of logged primary calls against a version, and the reproducibility report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agent.api.context import Context, ControllerDep, Who, authorized
from agent.errors import Conflict, NotFound
from agent.replay import Replayer
from agent.schemas.replay import ReplayReport, ReplayRequest

router = APIRouter(tags=["replay"], dependencies=[Depends(authorized)])


def replayer(ctx: Context, _: ControllerDep) -> Replayer:
    if ctx.replayer is None:
        raise Conflict("replay needs the controller's Serve address and token")
    return ctx.replayer


ReplayerDep = Annotated[Replayer, Depends(replayer)]


@router.post("/v1/replay", status_code=202)
async def replay_start(
    body: ReplayRequest, ctl: ControllerDep, jobs: ReplayerDep, who: Who
) -> ReplayReport:
    """Replay logged primary calls against a version; poll GET /v1/replay/{id}."""
    if body.model not in ctl.models:
        raise NotFound(f"unknown model {body.model!r}; known: {sorted(ctl.models)}")
    versions = ctl.state(body.model).versions
    if body.version not in versions:
        raise Conflict(
            f"{body.model} has no deployed version {body.version!r}; deployed: {versions}"
        )
    return jobs.start(body, who)


@router.get("/v1/replay")
def replay_list(
    jobs: ReplayerDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[ReplayReport]:
    """The latest replay jobs, without their items."""
    return [r.model_copy(update={"items": []}) for r in jobs.reports()[:limit]]


@router.get("/v1/replay/{job_id}")
def replay_report(job_id: str, jobs: ReplayerDep) -> ReplayReport:
    return jobs.report(job_id)
