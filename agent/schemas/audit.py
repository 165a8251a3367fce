"""The audit table: every action, refused or applied, with who and the table before → after."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agent.schemas.common import UtcDatetime
from serve.routing_table import RoutingTable


class AuditEntry(BaseModel):
    id: int
    ts: UtcDatetime
    who: str | None
    action: str
    model: str | None
    request: Any = None
    before: RoutingTable | None = None
    after: RoutingTable | None = None
    result: str
    error: str | None = None
