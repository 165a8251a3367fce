"""Health, host info and telemetry."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from agent.schemas.common import AGENT_VERSION, UtcDatetime


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = AGENT_VERSION


class GpuInfo(BaseModel):
    index: int
    uuid: str
    name: str
    lost: bool = False


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


class LatencyPoint(BaseModel):
    t: UtcDatetime
    model: str
    version: str | None
    requests: int
    rps: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
