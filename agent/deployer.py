"""Deploying model versions through Serve's REST API and waiting until they serve."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from agent.serve_api import ServeAPI
from agent.serve_status import ApplicationStatus, ServeStatus, diagnose
from serve.model_config import ModelConfig
from serve.serve_config import (
    ServeTarget,
    VersionPlan,
    build_serve_config,
    plan_version,
    version_app_config,
)


class DeployError(Exception):
    """Applications that did not reach RUNNING; `problems` maps app name → reason."""

    def __init__(self, message: str, problems: dict[str, str]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True)
class Deployment:
    config: dict[str, Any]
    plans: dict[str, VersionPlan]


async def plan_deployment(
    api: ServeAPI,
    models: list[ModelConfig],
    versions: dict[str, list[str]],
    target: ServeTarget,
    extra_apps: list[dict[str, Any]] | None = None,
) -> Deployment:
    """The full Serve config for `versions` ({model: [version, ...]}) plus `extra_apps`."""
    cluster = await api.cluster_resources()
    by_name = {m.model: m for m in models}
    apps, plans = list(extra_apps or []), {}
    for model, names in versions.items():
        if model not in by_name:
            raise ValueError(f"no config for model {model!r}")
        for version in names:
            options = by_name[model].options(version)
            plan = plan_version(model, version, options, cluster)
            plans[plan.app] = plan
            apps.append(version_app_config(plan, options, target))
    return Deployment(config=build_serve_config(apps, target), plans=plans)


async def wait_until_running(
    api: ServeAPI,
    apps: list[str],
    plans: dict[str, VersionPlan] | None = None,
    timeout_s: float = 120.0,
    poll_s: float = 0.5,
) -> dict[str, ApplicationStatus]:
    """Wait for `apps` to be RUNNING; stop early on a problem that waiting cannot fix."""
    plans = plans or {}
    deadline = time.monotonic() + timeout_s
    while True:
        status = ServeStatus.parse(await api.get_applications())
        found = {name: status.applications.get(name) for name in apps}
        if all(a is not None and a.status == "RUNNING" for a in found.values()):
            return {k: v for k, v in found.items() if v is not None}
        problems = {}
        for name, app in found.items():
            if app is None:
                continue
            reason = diagnose(app, plans.get(name))
            if reason and (reason.startswith("unschedulable") or app.status == "DEPLOY_FAILED"):
                problems[name] = reason
        if problems:
            raise DeployError(
                "; ".join(f"{name}: {reason}" for name, reason in problems.items()), problems
            )
        if time.monotonic() > deadline:
            pending = {n: (a.status if a else "MISSING") for n, a in found.items()}
            raise DeployError(
                f"applications not RUNNING after {timeout_s:.0f}s: {pending}",
                {n: s for n, s in pending.items() if s != "RUNNING"},
            )
        await asyncio.sleep(poll_s)
