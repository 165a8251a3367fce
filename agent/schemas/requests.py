"""The request log: one row per model call, as the routers logged it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agent.schemas.common import UtcDatetime
from agent.schemas.coverage import Coverage
from serve.routing_table import RoutingTable


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


class RequestPage(BaseModel):
    """Calls from every host that answered, newest first, and the hosts that did not."""

    rows: list[RequestRow]
    coverage: Coverage = Field(default_factory=Coverage)


class RequestDetail(BaseModel):
    """Every record of one request id (its primary, shadow and replays; a client may have
    reused the id), with the routing table each was served under."""

    rows: list[RequestRow]
    tables: dict[int, RoutingTable] = Field(
        default_factory=dict, description="route_version -> the table it numbered"
    )
    coverage: Coverage = Field(default_factory=Coverage)
