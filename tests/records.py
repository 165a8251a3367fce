"""Request records for tests that write spool files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from serve.request_record import RequestRecord


def make_record(i: int, **overrides: Any) -> RequestRecord:
    fields: dict[str, Any] = {
        "request_id": f"r{i}",
        "ts": datetime.now(UTC),
        "model": "digits",
        "version": "v1",
        "role": "primary",
        "route_version": 1,
        "status": 200,
        "error": None,
        "latency_ms": 1.0,
        "total_ms": 2.0,
        "input": '{"instances": [[0]]}',
        "output": '{"predictions": []}',
        "sha256": "ab" * 32,
        "host": "h",
        "replica": "rep",
    }
    fields.update(overrides)
    return RequestRecord(**fields)
