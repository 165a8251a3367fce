"""Helpers for tests that deploy to the session's real Ray Serve."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import httpx

from agent.deployer import wait_until_running
from agent.serve_api import ServeAPI
from serve.local_cluster import LocalCluster
from serve.model_config import ModelConfig, parse_model_config
from serve.model_store import ModelStore
from serve.names import router_app_name
from serve.routing_table import RoutingTable
from serve.serve_config import Deployed, Deployment, ServeTarget, desired_config

REPLAY_TOKEN = "test-replay-token"


def digits_config(router: dict[str, Any] | None = None, **defaults: Any) -> ModelConfig:
    base = {"num_cpus": 0.25, "autoscaling": {"min_replicas": 1, "max_replicas": 2}}
    base.update(defaults)
    return parse_model_config(
        {
            "model": "digits",
            "defaults": base,
            "versions": {"v1": {}, "v2": {}},
            "router": router or {},
        }
    )


def deploy(
    cluster: LocalCluster,
    store: ModelStore,
    versions: dict[str, list[str]],
    models: list[ModelConfig] | None = None,
    timeout_s: float = 120,
    wait: bool = True,
    table: RoutingTable | None = None,
    spool_dir: Path | None = None,
) -> Deployment:
    """PUT the whole config: the versions, plus digits' router when a table is given."""
    models = models or [digits_config()]

    async def go() -> Deployment:
        async with ServeAPI(cluster.dashboard_url) as api:
            target = ServeTarget(store_root=store.root, http_port=cluster.ports["serve_http"])
            wanted = {
                model: Deployed(names, table if model == "digits" else None)
                for model, names in versions.items()
            }
            plan = desired_config(
                {m.model: m for m in models},
                wanted,
                await api.cluster_resources(),
                target,
                spool_dir,
                hashlib.sha256(REPLAY_TOKEN.encode()).hexdigest(),
            )
            await api.put_applications(plan.config)
            if wait:
                names = list(plan.plans) + ([router_app_name("digits")] if table else [])
                await wait_until_running(api, names, plan.plans, timeout_s=timeout_s)
            return plan

    return asyncio.run(go())


def serve_status(cluster: LocalCluster) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with ServeAPI(cluster.dashboard_url) as api:
            return await api.get_applications()

    return asyncio.run(go())


def wait_for_route_version(url: str, route_version: int, timeout_s: float = 30) -> None:
    """Until several answers in a row come from the given table (every replica switched)."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    body = {"instances": [[0.0] * 64]}
    while time.monotonic() < deadline:
        r = httpx.post(url, json=body, timeout=10)
        streak = streak + 1 if r.headers.get("x-route-version") == str(route_version) else 0
        if streak >= 10:
            return
        time.sleep(0.05)
    raise AssertionError(f"route_version {route_version} not served within {timeout_s}s")
