"""Serve's status document, typed, with problems an operator must see spelled out.

Serve leaves a replica that no node can place DEPLOYING forever, and only after 30 s says so
in a long message; `diagnose` turns that (or our own up-front plan) into one short line such
as "unschedulable: needs GPU 0.5, cluster has none".
"""

from __future__ import annotations

import ast
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from serve.serve_config import VersionPlan

_REQUIRED = re.compile(r"Resources required for each replica: (\{[^}]*\})")
_AVAILABLE = re.compile(r"total resources available: (\{[^}]*\})")


class _Loose(BaseModel):
    # Serve's document grows between releases: keep what we use, ignore the rest.
    model_config = ConfigDict(extra="ignore")


class ReplicaStatus(_Loose):
    replica_id: str = ""
    state: str = ""
    pid: int | None = None
    node_ip: str | None = None
    actor_name: str | None = None


class DeploymentStatus(_Loose):
    name: str
    status: str = ""
    status_trigger: str = ""
    message: str = ""
    replicas: list[ReplicaStatus] = Field(default_factory=list)
    deployment_config: dict[str, Any] = Field(default_factory=dict)

    def replica_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for replica in self.replicas:
            counts[replica.state] = counts.get(replica.state, 0) + 1
        return counts


class ApplicationStatus(_Loose):
    name: str
    status: str = ""
    message: str = ""
    route_prefix: str | None = None
    deployments: dict[str, DeploymentStatus] = Field(default_factory=dict)
    deployed_app_config: dict[str, Any] | None = None


class ServeStatus(_Loose):
    applications: dict[str, ApplicationStatus] = Field(default_factory=dict)

    @classmethod
    def parse(cls, document: dict[str, Any]) -> ServeStatus:
        return cls.model_validate(document)


def _parse_dict(text: str) -> dict[str, float]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {}
    return {str(k): float(v) for k, v in value.items() if isinstance(v, (int, float))}


def unschedulable_from_message(message: str) -> str | None:
    """Read Serve's 'taken more than 30s to be scheduled' message into one short line."""
    required_m = _REQUIRED.search(message)
    if not required_m:
        return None
    required = _parse_dict(required_m.group(1))
    available_m = _AVAILABLE.search(message)
    available = _parse_dict(available_m.group(1)) if available_m else {}
    for name, amount in sorted(required.items(), key=lambda kv: kv[0] != "GPU"):
        has = available.get(name, 0.0)
        if amount > has:
            shown = "none" if has == 0 else f"{has:g}"
            return f"unschedulable: needs {name} {amount:g}, cluster has {shown}"
    return "unschedulable: " + message.split(".")[0]


def diagnose(app: ApplicationStatus, plan: VersionPlan | None = None) -> str | None:
    """The one problem to show for an application, or None when it is fine or just busy."""
    for deployment in app.deployments.values():
        found = unschedulable_from_message(deployment.message)
        if found:
            return found
    if plan is not None and plan.problem and app.status != "RUNNING":
        return plan.problem
    if app.status in ("DEPLOY_FAILED", "UNHEALTHY"):
        # The deployment's message holds the replica's traceback; its last line says why.
        messages = [d.message for d in app.deployments.values() if d.message.strip()]
        for text in [*messages, app.message]:
            lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
            if lines:
                return f"{app.status.lower()}: {lines[-1][:800]}"
        return app.status.lower()
    return None
