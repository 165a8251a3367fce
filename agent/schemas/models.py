"""Models, versions, routing and the actions that change them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agent.schemas.common import StrictBody
from agent.schemas.coverage import Coverage
from serve.names import VersionName
from serve.routing_table import RoutingTable, StickyHeader, TrafficSplit


class VersionStatus(BaseModel):
    version: str
    weight: int = 0
    shadow_fraction: float = 0.0
    is_stable: bool = False
    is_fallback: bool = False
    app_status: str | None = None
    replicas: dict[str, int] = Field(default_factory=dict)
    autoscaling: dict[str, Any] | None = None
    problem: str | None = None
    sha256: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    hosts: dict[str, int] = Field(
        default_factory=dict, description="primary calls in the last 5 minutes, per host"
    )


class ModelStatus(BaseModel):
    model: str
    stable: str
    previous_stable: list[str]
    table: RoutingTable
    versions: list[VersionStatus]
    router_status: str | None = None
    coverage: Coverage = Field(default_factory=Coverage, description="hosts counted in `hosts`")


class DeployRequest(StrictBody):
    version: VersionName
    force: bool = False


class TrafficRequest(TrafficSplit, StrictBody):
    """The split to apply; `sticky_header` left out keeps the current one."""

    sticky_header: StickyHeader | None = None


class PromoteRequest(StrictBody):
    version: VersionName


class RollbackRequest(StrictBody):
    to: VersionName | None = Field(None, description="default: the last previous stable")


class ActionResult(BaseModel):
    action: str
    model: str
    changed: bool
    before: RoutingTable | None
    after: RoutingTable | None
    message: str
    audit_id: int
