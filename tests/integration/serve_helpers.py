"""Helpers for tests that deploy to the session's real Ray Serve."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.deployer import Deployment, plan_deployment, wait_until_running
from agent.serve_api import ServeAPI
from serve.local_cluster import LocalCluster
from serve.model_config import ModelConfig, parse_model_config
from serve.model_store import ModelStore
from serve.serve_config import ServeTarget


def digits_config(**defaults: Any) -> ModelConfig:
    base = {"num_cpus": 0.25, "autoscaling": {"min_replicas": 1, "max_replicas": 2}}
    base.update(defaults)
    return parse_model_config(
        {"model": "digits", "defaults": base, "versions": {"v1": {}, "v2": {}}}
    )


def deploy(
    cluster: LocalCluster,
    store: ModelStore,
    versions: dict[str, list[str]],
    models: list[ModelConfig] | None = None,
    timeout_s: float = 120,
    wait: bool = True,
) -> Deployment:
    async def go() -> Deployment:
        async with ServeAPI(cluster.dashboard_url) as api:
            target = ServeTarget(store_root=store.root, http_port=cluster.ports["serve_http"])
            plan = await plan_deployment(api, models or [digits_config()], versions, target)
            await api.put_applications(plan.config)
            if wait:
                await wait_until_running(api, list(plan.plans), plan.plans, timeout_s=timeout_s)
            return plan

    return asyncio.run(go())


def serve_status(cluster: LocalCluster) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with ServeAPI(cluster.dashboard_url) as api:
            return await api.get_applications()

    return asyncio.run(go())
