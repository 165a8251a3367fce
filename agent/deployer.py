"""Waiting until applications PUT through Serve's REST API serve, and saying why not."""

from __future__ import annotations

import asyncio
import time

from agent.serve_api import ServeAPI
from agent.serve_status import ApplicationStatus, ServeStatus, diagnose
from serve.serve_config import VersionPlan


class DeployError(Exception):
    """Applications that did not reach RUNNING; `problems` maps app name → reason."""

    def __init__(self, message: str, problems: dict[str, str]) -> None:
        super().__init__(message)
        self.problems = problems


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
