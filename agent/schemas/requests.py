"""The request log: one row per model call, as the routers logged it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agent.schemas.common import UtcDatetime


class RequestRow(BaseModel):
    request_id: str
    ts: UtcDatetime
    model: str
    version: str | None
    role: str
    route_version: int | None
    status: int
    error: str | None
    latency_ms: float | None
    total_ms: float | None
    sha256: str | None
    host: str | None
    replica: str | None
    primary_request_id: str | None
    fallback_from: str | None
    input: Any = None
    output: Any = None
