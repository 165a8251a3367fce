"""The request log: calls by filter, and one call (with its shadow and replays) by id. On the
controller both answer for the whole fleet, naming any host that did not answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agent.api.context import Context, Since, Until, authorized
from agent.errors import NotFound
from agent.request_log import RequestFilter
from agent.schemas.coverage import Coverage
from agent.schemas.requests import RequestDetail, RequestPage
from serve.names import ModelName, VersionName
from serve.request_record import Role

router = APIRouter(tags=["requests"], dependencies=[Depends(authorized)])


@router.get("/v1/requests")
def requests(
    ctx: Context,
    model: ModelName | None = None,
    version: VersionName | None = None,
    role: Role | None = None,
    status: Annotated[int | None, Query(ge=0, le=999)] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RequestPage:
    coverage = Coverage()
    where = RequestFilter(model, version, role, status, since, until, limit)
    return RequestPage(rows=ctx.requests.requests(where, coverage), coverage=coverage)


# Starlette's plain path parameters stop at "/"; clients choose request ids.
@router.get("/v1/requests/{request_id:path}")
def request_detail(request_id: str, ctx: Context) -> RequestDetail:
    """Which host, replica, version and artifact answered, and the routing table in force."""
    coverage = Coverage()
    rows = ctx.requests.request(request_id, coverage)
    if not rows:
        missing = ", ".join(m.host for m in coverage.missing)
        raise NotFound(
            f"no request {request_id!r} in the request log"
            + (f" (not asked: {missing} did not answer)" if missing else "")
        )
    tables = {}
    if ctx.controller is not None:
        for row in rows:
            if row.route_version is not None and row.route_version not in tables:
                table = ctx.controller.routing_table(row.model, row.route_version)
                if table is not None:
                    tables[row.route_version] = table
    return RequestDetail(rows=rows, tables=tables, coverage=coverage)
