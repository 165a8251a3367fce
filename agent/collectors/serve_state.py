"""Serve's application, deployment and replica states (controller role), with problems spelled
out (e.g. "unschedulable: needs GPU 0.5, cluster has none")."""

from __future__ import annotations

import json
from typing import Any

from agent.serve_api import ServeAPI
from agent.serve_status import ServeStatus, diagnose
from agent.store import utcnow


class ServeCollector:
    name = "serve"

    def __init__(self, api: ServeAPI) -> None:
        self.api = api
        self.last: ServeStatus | None = None
        self.error: str | None = None

    async def sample(self) -> list[dict[str, Any]]:
        try:
            self.last = ServeStatus.parse(await self.api.get_applications())
            self.error = None
        except Exception as exc:
            self.error = str(exc)
            raise
        ts = utcnow()
        rows = []
        for app in self.last.applications.values():
            problem = diagnose(app)
            for dep in app.deployments.values():
                rows.append(
                    {
                        "ts": ts,
                        "app": app.name,
                        "deployment": dep.name,
                        "status": dep.status or app.status,
                        "message": (dep.message or app.message)[:2000],
                        "problem": problem,
                        "replicas": json.dumps(dep.replica_counts()),
                        "replica_ids": json.dumps(sorted(r.replica_id for r in dep.replicas)),
                    }
                )
        return rows
