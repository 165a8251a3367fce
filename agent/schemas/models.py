"""Models, versions, routing and the actions that change them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agent.schemas.common import StrictBody
from agent.schemas.coverage import Coverage
from serve.names import VersionName
from serve.replica_facts import ReplicaFacts
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
    runs_on: dict[str, int] = Field(
        default_factory=dict,
        description="replicas per execution provider they really run on, e.g. {'CUDA': 2}",
    )
    gpu_memory: int | None = Field(None, description="bytes of GPU memory its replicas use")

    def runs_on_summary(self) -> str:
        """One cell for people: `CUDA:2 1.5G` (replicas per provider, GPU memory)."""
        text = " ".join(f"{k}:{n}" for k, n in sorted(self.runs_on.items()))
        if self.gpu_memory:
            text += f" {self.gpu_memory / (1 << 30):.1f}G"
        return text.strip() or "-"


class ReplicaReport(ReplicaFacts):
    """A replica as its host's agent reports it: what it said of itself, the GPU memory its
    process uses (NVML, by pid; GPU uuid -> bytes), and a problem in plain words."""

    gpu_memory: dict[str, int] = Field(default_factory=dict)
    problem: str | None = None


class ReplicaPage(BaseModel):
    rows: list[ReplicaReport]
    coverage: Coverage = Field(default_factory=Coverage)


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
