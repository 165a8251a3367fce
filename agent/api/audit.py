"""The audit table: every action with who, when, and the routing table before → after."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agent.api.context import Context, Since, Until, authorized
from agent.schemas.audit import AuditEntry
from serve.names import ModelName

router = APIRouter(tags=["audit"], dependencies=[Depends(authorized)])


@router.get("/v1/audit")
def audit(
    ctx: Context,
    since: Since = None,
    until: Until = None,
    model: ModelName | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntry]:
    """Newest first; `until` shows what had happened by an instant."""
    rows = ctx.store.query(
        "SELECT id, ts, who, action, model, request, before, after, result, error FROM audit"
        " WHERE (?::TIMESTAMP IS NULL OR ts >= ?) AND (?::TIMESTAMP IS NULL OR ts < ?)"
        " AND (?::VARCHAR IS NULL OR model = ?)"
        " ORDER BY id DESC LIMIT ?",
        [since, since, until, until, model, model, limit],
    )
    for row in rows:
        for key in ("request", "before", "after"):
            row[key] = json.loads(row[key]) if row[key] else None
    return [AuditEntry(**r) for r in rows]
