"""One poll loop per host: fetch a snapshot, post it, sleep, repeat (never overlapping).

A host that fails is shown disconnected with the error and retried with backoff while the
rest of the fleet keeps updating. The loop only fetches and posts; widgets never see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.client import (
    AgentError,
    AlertsPage,
    AsyncAgentClient,
    HostInfo,
    LatencyPoint,
    ModelStatus,
)
from console.sources import HostSource
from console.ssh import TunnelError

HISTORY_POINTS = 30
log = logging.getLogger("trackside.console")


@dataclass
class HostSnapshot:
    name: str
    address: str
    connected: bool = False
    error: str | None = None
    poll_ms: float | None = None
    polled_at: float = 0.0
    retry_in_s: float | None = None
    info: HostInfo | None = None
    host: dict[str, Any] = field(default_factory=dict)  # latest host sample
    cpu_history: list[float] = field(default_factory=list)
    mem_history: list[float] = field(default_factory=list)
    gpus: list[dict[str, Any]] = field(default_factory=list)  # latest per GPU
    gpu_history: dict[str, list[float]] = field(default_factory=dict)  # uuid → util history
    models: list[ModelStatus] | None = None  # controller only
    latency: list[LatencyPoint] = field(default_factory=list)
    alerts: AlertsPage | None = None  # controller only: what fires (the banner)
    paths: list[str] = field(default_factory=list)

    def offers(self, path: str) -> bool:
        return any(p == path or p.startswith(path.rstrip("/") + "/") for p in self.paths)


async def fetch(client: AsyncAgentClient, previous: HostSnapshot, paths: list[str]) -> HostSnapshot:
    started = time.perf_counter()
    now = datetime.now(UTC)
    since = (now - timedelta(seconds=HISTORY_POINTS * 2)).isoformat()
    info, history, gpus, gpu_history = await asyncio.gather(
        client.host(),
        client.telemetry("host", since=since, step=2),
        client.telemetry("gpu/latest"),
        client.telemetry("gpu", since=since, step=2),
    )
    models: list[ModelStatus] | None = None
    latency: list[LatencyPoint] = []
    alerts: AlertsPage | None = None
    if info.role == "controller":
        lat_since = (now - timedelta(seconds=60)).isoformat()
        models, latency = await asyncio.gather(
            client.models(), client.latency(since=lat_since, step=60)
        )
        if "/v1/alerts" in paths:  # an older agent has none
            alerts = await client.alerts()
    per_gpu: dict[str, list[float]] = {}
    for row in gpu_history:
        per_gpu.setdefault(row["uuid"], []).append(row.get("util_gpu") or 0.0)
    return HostSnapshot(
        name=previous.name,
        address=previous.address,
        connected=True,
        poll_ms=(time.perf_counter() - started) * 1000.0,
        polled_at=time.time(),
        info=info,
        host=history[-1] if history else {},
        cpu_history=[r.get("cpu_pct") or 0.0 for r in history][-HISTORY_POINTS:],
        mem_history=[r.get("mem_pct") or 0.0 for r in history][-HISTORY_POINTS:],
        gpus=gpus,
        gpu_history={k: v[-HISTORY_POINTS:] for k, v in per_gpu.items()},
        models=models,
        latency=latency,
        alerts=alerts,
        paths=paths,
    )


async def _sleep(seconds: float, wake: asyncio.Event | None) -> None:
    """Sleep, or stop early when `wake` is set (the operator asked for a refresh)."""
    if wake is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)
    wake.clear()


async def poll_forever(
    source: HostSource,
    post: Callable[[HostSnapshot], None],
    interval_s: float = 2.0,
    max_backoff_s: float = 30.0,
    wake: asyncio.Event | None = None,
) -> None:
    snapshot = HostSnapshot(name=source.name, address=source.address)
    client: AsyncAgentClient | None = None
    paths: list[str] = []
    backoff = 1.0
    while True:
        try:
            if client is None:
                client = await source.connect()
                paths = await client.paths()
            snapshot = await fetch(client, snapshot, paths)
            post(snapshot)
            backoff = 1.0
            await _sleep(interval_s, wake)
        except asyncio.CancelledError:
            await source.close()
            raise
        except Exception as exc:
            # Whatever failed, this host's loop goes on: down with the reason, retried. The
            # expected failures say what to do; anything else is named and logged in full.
            expected = isinstance(exc, AgentError | TunnelError | OSError)
            if not expected:
                log.exception("polling %s failed", source.name)
            error = str(exc) if expected else f"{type(exc).__name__}: {exc}"
            # Keep the last data (marked stale) so the operator still sees what was there.
            snapshot = HostSnapshot(
                **{
                    **snapshot.__dict__,
                    "connected": False,
                    "error": error,
                    "retry_in_s": backoff,
                }
            )
            post(snapshot)
            await source.close()
            client = None
            await _sleep(backoff, wake)
            backoff = min(backoff * 2, max_backoff_s)
