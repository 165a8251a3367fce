"""Health, host info and telemetry."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agent.schemas.common import AGENT_VERSION, UtcDatetime


class Health(BaseModel):
    """Without a token: whether the agent is well, and which of its parts is not (the details
    are in /v1/host, behind the token)."""

    status: Literal["ok", "degraded"] = "ok"
    version: str = AGENT_VERSION
    failing: list[str] = Field(default_factory=list, description="collectors in error")


class GpuInfo(BaseModel):
    index: int
    uuid: str
    name: str
    lost: bool = False
    xid_errors: int = Field(0, description="critical XID events since the agent started")
    last_xid: int | None = None


class HostInfo(BaseModel):
    hostname: str
    role: Literal["agent", "controller"]
    agent_version: str = AGENT_VERSION
    gpu_status: str
    gpus: list[GpuInfo]
    cpu_count: int
    mem_total: int
    started_at: UtcDatetime
    collectors: dict[str, str]
    problems: list[str] = Field(
        default_factory=list, description="what needs a person, in plain words"
    )


class LatencyPoint(BaseModel):
    t: UtcDatetime
    model: str
    version: str | None
    requests: int
    rps: float
    error_rate: float
    # Of the calls routed to the version, the share its fallback answered (in error_rate too).
    fallback_rate: float = 0.0
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class ServeEvent(BaseModel):
    """A change of one Serve deployment's state as the controller sampled it: a status, its
    replicas by state (a replica that died shows as one fewer RUNNING, then STARTING), or
    which replicas there are (one replaced between two samples shows as stopped and started)."""

    ts: UtcDatetime
    app: str
    deployment: str
    status: str | None
    replicas: dict[str, int]
    stopped: list[str] = Field(default_factory=list)  # replica ids gone since the last sample
    started: list[str] = Field(default_factory=list)  # and new ones
    message: str = ""
    problem: str | None = None
