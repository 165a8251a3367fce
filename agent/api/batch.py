"""Batch jobs (controller only): start, list, follow, cancel, and compare two jobs' predictions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from agent.api.context import Context, ControllerDep, Who, authorized
from agent.batch_jobs import BatchJobs
from agent.errors import Conflict
from agent.schemas.batch import BatchDiff, BatchJob, BatchStart
from serve.names import ModelName

router = APIRouter(tags=["batch"], dependencies=[Depends(authorized)])
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,120}$", description="the job's id")]


def batch_jobs(ctx: Context, _: ControllerDep) -> BatchJobs:
    if ctx.batch is None:
        raise Conflict("this controller runs no batch jobs")
    return ctx.batch


Jobs = Annotated[BatchJobs, Depends(batch_jobs)]


@router.post("/v1/batch-jobs", status_code=201)
async def batch_start(body: BatchStart, jobs: Jobs, who: Who) -> BatchJob:
    """Score a dataset with a version on the Ray cluster: the artifact's sha256 is checked
    and the input listed, counted and hashed before the job starts."""
    return await jobs.start(body, who)


@router.get("/v1/batch-jobs")
def batch_list(
    jobs: Jobs,
    model: ModelName | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[BatchJob]:
    """The latest jobs first."""
    return jobs.all(model, limit)


@router.get("/v1/batch-jobs/{job_id}")
def batch_status(job_id: JobId, jobs: Jobs) -> BatchJob:
    """State, rows read, scored and set aside, rows per second and the ETA, the drift report
    once it has finished."""
    return jobs.get(job_id)


@router.post("/v1/batch-jobs/{job_id}/cancel")
async def batch_cancel(job_id: JobId, jobs: Jobs, who: Who) -> BatchJob:
    """Stop the job's driver and actors; nothing of its output is kept."""
    return await jobs.cancel(job_id, who)


@router.get("/v1/batch-jobs/{job_id}/diff")
def batch_diff(
    job_id: JobId,
    jobs: Jobs,
    against: Annotated[str, Query(pattern=r"^[A-Za-z0-9_.-]{1,120}$", description="the other job")],
) -> BatchDiff:
    """Two finished jobs' predictions row by row: labels changed, probabilities changed."""
    return jobs.diff(job_id, against)
