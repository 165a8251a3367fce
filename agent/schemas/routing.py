"""The routing tables a model was given, in order: which one was in force at an instant, who
set it and the audit entry that records it."""

from __future__ import annotations

from pydantic import BaseModel

from agent.schemas.common import UtcDatetime
from serve.routing_table import RoutingTable


class RoutingChange(BaseModel):
    route_version: int
    since: UtcDatetime  # when it took effect: stored right after Serve accepted it
    table: RoutingTable
    who: str | None = None
    action: str | None = None
    audit_id: int | None = None  # the audit entry whose `after` is this table


class RoutingHistory(BaseModel):
    model: str
    at: UtcDatetime
    in_force: RoutingChange | None  # the table serving at `at` (None: before the first)
    changes: list[RoutingChange]  # up to `at`, newest first
