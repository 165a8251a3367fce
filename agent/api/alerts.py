"""Alerts (controller only): what fires, what is pending, and the history of changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from agent.alerts import Alerts
from agent.api.context import Context, ControllerDep, authorized
from agent.errors import Conflict
from agent.schemas.alerts import AlertsPage

router = APIRouter(tags=["alerts"], dependencies=[Depends(authorized)])


def alerts_of(ctx: Context, _: ControllerDep) -> Alerts:
    if ctx.alerts is None:
        raise Conflict("this controller evaluates no alerts")
    return ctx.alerts


@router.get("/v1/alerts")
def alerts(found: Annotated[Alerts, Depends(alerts_of)]) -> AlertsPage:
    """Firing and pending alerts, per rule and model version, and the latest changes."""
    return found.page()
