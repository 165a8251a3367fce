"""The request log: calls by filter, and one call (with its shadow and replays) by id."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agent.api.context import Context, authorized
from agent.errors import NotFound
from agent.request_log import RequestFilter
from agent.schemas.requests import RequestRow

router = APIRouter(tags=["requests"], dependencies=[Depends(authorized)])


@router.get("/v1/requests")
def requests(
    ctx: Context,
    model: str | None = None,
    version: str | None = None,
    role: str | None = None,
    status: Annotated[int | None, Query(ge=0, le=999)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RequestRow]:
    where = RequestFilter(model, version, role, status, since, until, limit)
    return ctx.requests.requests(where)


# Starlette's plain path parameters stop at "/"; clients choose request ids.
@router.get("/v1/requests/{request_id:path}")
def request_detail(request_id: str, ctx: Context) -> list[RequestRow]:
    rows = ctx.requests.request(request_id)
    if not rows:
        raise NotFound(f"no request {request_id!r} in the request log")
    return rows
