"""A small client for Ray Serve's and Ray Jobs' REST APIs on the dashboard (no Ray import).

PUT replaces the whole declarative config, so callers always send every application.
When Ray's token auth is on, requests carry the cluster's token as a bearer header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from serve.ray_token import ray_auth_token
from serve.serve_config import ClusterResources

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"
APPLICATIONS_PATH = "/api/serve/applications/"
JOBS_PATH = "/api/jobs/"


@dataclass(frozen=True)
class RayJob:
    """A Ray job as the dashboard reports it."""

    submission_id: str
    status: str  # PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
    message: str


@dataclass(frozen=True)
class RayNode:
    hostname: str
    address: str
    alive: bool


class ServeAPIError(Exception):
    """Serve's REST API refused or could not be reached; the message says which and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServeAPI:
    def __init__(
        self,
        dashboard: str = DEFAULT_DASHBOARD,
        token: str | None = None,
        timeout_s: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.dashboard = dashboard.rstrip("/")
        token = token.strip() if token else ray_auth_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.dashboard, headers=headers, timeout=timeout_s, transport=transport
        )
        self._transport = transport

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ServeAPI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServeAPIError(
                f"Ray dashboard at {self.dashboard} did not answer {method} {path}: {exc!r};"
                " is Ray running, and is the dashboard address right?"
            ) from exc
        if response.status_code in (401, 403):
            raise ServeAPIError(
                f"Ray dashboard refused {method} {path} ({response.status_code}):"
                f" {response.text.strip()[:200]}; set RAY_AUTH_TOKEN to the cluster's token",
                response.status_code,
            )
        if response.status_code >= 400:
            raise ServeAPIError(
                f"Serve REST {method} {path} failed ({response.status_code}):"
                f" {response.text.strip()[:2000]}",
                response.status_code,
            )
        return response

    async def answers_without_token(self) -> bool:
        """Whether the dashboard (which deploys code) lets anyone in: Ray's token auth off."""
        async with httpx.AsyncClient(
            base_url=self.dashboard, timeout=self._client.timeout, transport=self._transport
        ) as anonymous:
            try:
                response = await anonymous.get(APPLICATIONS_PATH)
            except httpx.HTTPError as exc:
                msg = f"Ray dashboard at {self.dashboard} did not answer: {exc!r}"
                raise ServeAPIError(msg) from exc
        return response.status_code < 400

    async def get_applications(self) -> dict[str, Any]:
        """Serve's status document: applications, deployments, replicas, messages."""
        return (await self._request("GET", APPLICATIONS_PATH)).json()

    async def put_applications(self, config: dict[str, Any]) -> None:
        await self._request("PUT", APPLICATIONS_PATH, json=config)

    async def delete_applications(self) -> None:
        await self._request("DELETE", APPLICATIONS_PATH)

    async def nodes(self) -> list[RayNode]:
        """The cluster's nodes from the dashboard: hostname, address, alive."""
        body = (await self._request("GET", "/nodes", params={"view": "summary"})).json()
        out = []
        for node in body.get("data", {}).get("summary", []):
            raylet = node.get("raylet", {})
            out.append(
                RayNode(
                    hostname=str(node.get("hostname") or raylet.get("nodeManagerHostname") or ""),
                    address=str(raylet.get("nodeManagerAddress") or node.get("ip") or ""),
                    alive=raylet.get("state", "ALIVE") == "ALIVE",
                )
            )
        return out

    async def cluster_resources(self) -> ClusterResources:
        """Total resources of the cluster's alive nodes, from the dashboard's node list."""
        body = (await self._request("GET", "/nodes", params={"view": "summary"})).json()
        totals: dict[str, float] = {}
        for node in body.get("data", {}).get("summary", []):
            raylet = node.get("raylet", {})
            if raylet.get("state", "ALIVE") != "ALIVE":
                continue
            for name, amount in (raylet.get("resourcesTotal") or {}).items():
                totals[name] = totals.get(name, 0.0) + float(amount)
        custom = {
            k: v
            for k, v in totals.items()
            if k not in ("CPU", "GPU", "memory", "object_store_memory", "objectStoreMemory")
            and not k.startswith(("node:", "accelerator_type:"))
        }
        return ClusterResources(
            cpus=totals.get("CPU", 0.0), gpus=totals.get("GPU", 0.0), custom=custom
        )

    # -- jobs ---------------------------------------------------------------------------------
    async def submit_job(
        self, submission_id: str, entrypoint: str, metadata: dict[str, str], env: dict[str, str]
    ) -> None:
        """Start a driver on the head node; a second submit of one id is refused by Ray."""
        body = {
            "entrypoint": entrypoint,
            "submission_id": submission_id,
            "metadata": metadata,
            "runtime_env": {"env_vars": env},
        }
        await self._request("POST", JOBS_PATH, json=body)

    async def job(self, submission_id: str) -> RayJob | None:
        """The job's status, or None if Ray does not know the id (a restarted head)."""
        try:
            body = (await self._request("GET", f"{JOBS_PATH}{submission_id}")).json()
        except ServeAPIError as exc:
            if exc.status == 404:
                return None
            raise
        return RayJob(submission_id, str(body.get("status", "")), str(body.get("message") or ""))

    async def stop_job(self, submission_id: str) -> None:
        """SIGTERM to the driver (SIGKILL a few seconds later); its actors end with it."""
        await self._request("POST", f"{JOBS_PATH}{submission_id}/stop")

    async def job_logs(self, submission_id: str) -> str:
        body = (await self._request("GET", f"{JOBS_PATH}{submission_id}/logs")).json()
        return str(body.get("logs", ""))
