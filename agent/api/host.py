"""Host info and telemetry: host and GPU samples with time ranges and downsampling, and the
latency of every model version."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from fastapi import APIRouter, Depends

from agent.api.context import (
    AgentContext,
    Context,
    Since,
    Step,
    Until,
    authorized,
    time_window,
)
from agent.api.health import failing
from agent.ingest import BAD, bad_files
from agent.schemas.host import GpuInfo, HostInfo, LatencyPoint, ServeEvent
from agent.store import GPU_ROLLUP, HOST_ROLLUP
from serve.names import ModelName, VersionName

router = APIRouter(tags=["host and telemetry"], dependencies=[Depends(authorized)])


def utc_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for key in ("t", "ts"):
            if isinstance(row.get(key), datetime) and row[key].tzinfo is None:
                row[key] = row[key].replace(tzinfo=UTC)
    return rows


@router.get("/v1/host")
def host(ctx: Context) -> HostInfo:
    return HostInfo(
        hostname=socket.gethostname(),
        role="controller" if ctx.controller else "agent",
        gpu_status=ctx.gpu.status,
        gpus=[GpuInfo(**g) for g in ctx.gpu.describe()],
        cpu_count=os.cpu_count() or 0,
        mem_total=psutil.virtual_memory().total,
        started_at=ctx.started_at,
        collectors=dict(ctx.collectors),
        problems=host_problems(ctx),
    )


def host_problems(ctx: AgentContext) -> list[str]:
    out = [
        f"{name}: {state}"
        for name, state in sorted(ctx.collectors.items())
        if name in failing(ctx.collectors)
    ]
    if ctx.controller is not None:
        out.extend(ctx.controller.problems())
    count, size = bad_files(ctx.spool)
    if count:
        out.append(
            f"{count} spool files ({size / 1e6:.1f} MB) could not be read and were set aside"
            f" in {ctx.spool / BAD}"
        )
    return out


@router.get("/v1/telemetry/host")
def telemetry_host(
    ctx: Context, since: Since = None, until: Until = None, step: Step = None
) -> list[dict[str, Any]]:
    since, until, step_s = time_window(since, until, step, 600)
    return utc_rows(ctx.store.telemetry("host_samples", HOST_ROLLUP, since, until, step_s))


@router.get("/v1/telemetry/gpu")
def telemetry_gpu(
    ctx: Context, since: Since = None, until: Until = None, step: Step = None
) -> list[dict[str, Any]]:
    since, until, step_s = time_window(since, until, step, 600)
    return utc_rows(
        ctx.store.telemetry("gpu_samples", GPU_ROLLUP, since, until, step_s, group="uuid")
    )


@router.get("/v1/telemetry/gpu/latest")
def gpu_latest(ctx: Context) -> list[dict[str, Any]]:
    """The latest sample of each GPU; each process on it named by the model version whose
    replica it is, when it is one."""
    rows = ctx.store.latest("gpu_samples", order="gpu_index")
    by_pid = {r.pid: r for r in ctx.local.replicas()}
    for row in rows:
        procs = json.loads(row["processes"]) if row["processes"] else None
        for proc in procs or []:
            replica = by_pid.get(proc.get("pid"))
            if replica is not None:
                proc.update(model=replica.model, version=replica.version, replica=replica.replica)
        row["processes"] = procs
    return utc_rows(rows)


@router.get("/v1/telemetry/serve")
def telemetry_serve(
    ctx: Context, since: Since = None, until: Until = None, app: str | None = None
) -> list[ServeEvent]:
    """Each change of a Serve deployment's status or replica counts (controller's samples),
    oldest first: where a replica's death, a restart or a scale-up shows."""
    since, until, _ = time_window(since, until, None, 3600)
    rows = ctx.store.query(
        """
        SELECT ts, app, deployment, status, replicas, replica_ids, was_ids, message, problem
        FROM (
            SELECT *, lag(status) OVER w AS was_status, lag(replicas) OVER w AS was_replicas,
                   lag(replica_ids) OVER w AS was_ids
            FROM serve_samples  -- from a little before `since`: its first row has a "before"
            WHERE ts >= ? AND ts < ? AND (?::VARCHAR IS NULL OR app = ?)
            WINDOW w AS (PARTITION BY app, deployment ORDER BY ts)
        )
        WHERE ts >= ? AND (was_status IS DISTINCT FROM status
                           OR was_replicas IS DISTINCT FROM replicas
                           OR (was_ids IS NOT NULL AND replica_ids IS NOT NULL
                               AND was_ids IS DISTINCT FROM replica_ids))
        ORDER BY ts LIMIT 5000
        """,
        [since - timedelta(minutes=10), until, app, app, since],
    )
    for row in rows:
        row["replicas"] = json.loads(row["replicas"]) if row["replicas"] else {}
        row["message"] = row["message"] or ""
        now = set(json.loads(row.pop("replica_ids") or "[]"))
        was = row.pop("was_ids")
        before = set(json.loads(was)) if was else now
        row["stopped"], row["started"] = sorted(before - now), sorted(now - before)
    return [ServeEvent(**r) for r in rows]


@router.get("/v1/telemetry/latency")
def telemetry_latency(
    ctx: Context,
    model: ModelName | None = None,
    version: VersionName | None = None,
    since: Since = None,
    until: Until = None,
    step: Step = None,
) -> list[LatencyPoint]:
    since, until, step_s = time_window(since, until, step, 600)
    return ctx.requests.latency(model, version, since, until, step_s)
