"""Point in time (controller only): which routing table served a model at an instant, who
set it, and the audit entry that records it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agent.api.context import At, ControllerDep, authorized
from agent.schemas.routing import RoutingHistory
from agent.store import utcnow
from serve.names import ModelName

router = APIRouter(tags=["routing history"], dependencies=[Depends(authorized)])


@router.get("/v1/routing/history")
def routing_history(
    ctl: ControllerDep,
    model: ModelName,
    at: At = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> RoutingHistory:
    """The table in force at `at` and the changes before it, newest first."""
    return ctl.routing_history(model, at or utcnow(), limit)
