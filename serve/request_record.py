"""The request record: one row per model call, written by routers into the spool.

The agent ingests these files into its `requests` table; `SPOOL_COLUMNS` is the contract
(a test checks the agent's table against it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Role = Literal["primary", "shadow", "replay"]

# Column → DuckDB type, in file order.
SPOOL_COLUMNS: dict[str, str] = {
    "request_id": "VARCHAR",
    "ts": "TIMESTAMP",  # UTC
    "model": "VARCHAR",
    "version": "VARCHAR",
    "role": "VARCHAR",
    "route_version": "BIGINT",
    "status": "SMALLINT",
    "error": "VARCHAR",
    "latency_ms": "DOUBLE",  # the model's own time
    "total_ms": "DOUBLE",  # the router's time for the whole request
    "input": "VARCHAR",  # the request body, JSON as the client sent it
    "output": "VARCHAR",  # the version's answer, JSON
    "sha256": "VARCHAR",  # artifact that answered
    "host": "VARCHAR",
    "replica": "VARCHAR",
    "sticky_key_hash": "VARCHAR",
    "primary_request_id": "VARCHAR",  # shadow → its primary; replay → the original request
    "fallback_from": "VARCHAR",  # the version that failed when a fallback answered
    "dropped_total": "BIGINT",  # records this replica had dropped when the file was written
    # The router's own id of this model call: the log's key. Clients choose request ids, so
    # two calls may share one; no two calls share a call_id.
    "call_id": "VARCHAR",
    "pair_id": "VARCHAR",  # a shadow copy → the call_id of the primary call it copies
    # Shadow copies this router had shed (too busy to send them) when the file was written.
    "shadows_shed_total": "BIGINT",
}


def new_call_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    ts: datetime
    model: str
    version: str | None
    role: Role
    route_version: int | None
    status: int
    error: str | None
    latency_ms: float | None
    total_ms: float | None
    input: str | None
    output: str | None
    sha256: str | None
    host: str
    replica: str
    sticky_key_hash: str | None = None
    primary_request_id: str | None = None
    fallback_from: str | None = None
    call_id: str = field(default_factory=new_call_id)
    pair_id: str | None = None
