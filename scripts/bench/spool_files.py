"""Spool files as the routers write them (the spool contract's columns, Parquet, one file per
slice), generated inside DuckDB so a benchmark spends its time on what it measures."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from serve.request_record import SPOOL_COLUMNS


def write_spool(
    con: duckdb.DuckDBPyConnection,
    calls: str,
    folder: Path,
    rows: int,
    files: int,
    start: datetime,
    span_s: float,
    model: str,
    version: str,
) -> None:
    """`calls` is a relation with columns i (0..rows-1), input and output (JSON text): one
    call each, spread evenly over [start, start + span_s)."""
    folder.mkdir(parents=True, exist_ok=True)
    step_us = span_s * 1e6 / rows
    values = {
        "request_id": "'req-' || i",
        "ts": f"$start::TIMESTAMP + to_microseconds((i * {step_us})::BIGINT)",
        "model": f"'{model}'",
        "version": f"'{version}'",
        "role": "'primary'",
        "route_version": "1",
        "status": "200",
        "latency_ms": "1.0 + random()",
        "total_ms": "2.0 + random() * 8",
        "input": "input",
        "output": "output",
        "sha256": "'sha'",
        "host": "'host-a'",
        "replica": "'rep'",
        "dropped_total": "0",
        "call_id": "'call-' || i",
    }
    select = ", ".join(
        f'({values.get(name, "NULL")})::{kind} AS "{name}"' for name, kind in SPOOL_COLUMNS.items()
    )
    per = rows // files
    for f in range(files):
        con.execute(
            f"COPY (SELECT {select} FROM {calls} WHERE i >= {f * per} AND i < {(f + 1) * per})"
            f" TO '{folder}/{f:04d}.parquet' (FORMAT parquet)",
            {"start": start.replace(tzinfo=None)},
        )
