"""A typed client for the agent's HTTP API, sync and async, for the console, CLI and scripts."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from agent.api_models import (
    ActionResult,
    AuditEntry,
    DriftHistogram,
    DriftPoint,
    DriftReport,
    FeatureDrift,
    HostInfo,
    LatencyPoint,
    ModelStatus,
    ReplayItem,
    ReplayReport,
    ReplayRequest,
    RequestRow,
    RolloutStart,
    TrafficRequest,
)
from agent.rollout_machine import Rollout

DEFAULT_URL = "http://127.0.0.1:7070"


class AgentError(Exception):
    """The agent refused (4xx/5xx, with its reason) or could not be reached (status None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_token(token: str | None = None, token_file: Path | None = None) -> str | None:
    if token:
        return token
    if os.environ.get("TRACKSIDE_TOKEN"):
        return os.environ["TRACKSIDE_TOKEN"]
    path = token_file or Path(os.environ.get("TRACKSIDE_TOKEN_FILE", ".trackside/agent.token"))
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _error(response: httpx.Response) -> AgentError:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return AgentError(f"{response.status_code}: {detail}", response.status_code)


def _parse(kind: Any, response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise _error(response)
    data = response.json()
    if kind is None:
        return data
    return TypeAdapter(kind).validate_python(data)


def _traffic_body(
    weights: dict[str, int],
    shadow: tuple[str, float] | None,
    fallback: str | None,
    sticky_header: str | None,
) -> dict[str, Any]:
    body = TrafficRequest.model_validate(
        {
            "weights": weights,
            "shadow": {"version": shadow[0], "fraction": shadow[1]} if shadow else None,
            "fallback": fallback,
            "sticky_header": sticky_header,
        }
    )
    return body.model_dump(mode="json")


class _Calls(ABC):
    """Every API call, written once. `_call` is blocking in AgentClient and a coroutine in
    AsyncAgentClient, so each method returns the value, or an awaitable of it."""

    @abstractmethod
    def _call(self, kind: Any, method: str, path: str, **kw: Any) -> Any:
        """Send one request and parse the answer into `kind`."""

    def health(self) -> Any:
        return self._call(None, "GET", "/health")

    def paths(self) -> Any:
        """The API paths this agent offers (from its OpenAPI document)."""
        return self._call(_PathList, "GET", "/openapi.json")

    def host(self) -> Any:
        return self._call(HostInfo, "GET", "/v1/host")

    def models(self) -> Any:
        return self._call(list[ModelStatus], "GET", "/v1/models")

    def model(self, model: str) -> Any:
        return self._call(ModelStatus, "GET", f"/v1/models/{model}")

    def deploy(self, model: str, version: str, force: bool = False) -> Any:
        body = {"version": version, "force": force}
        return self._call(ActionResult, "POST", f"/v1/models/{model}/versions", json=body)

    def set_traffic(
        self,
        model: str,
        weights: dict[str, int],
        shadow: tuple[str, float] | None = None,
        fallback: str | None = None,
        sticky_header: str | None = None,
    ) -> Any:
        body = _traffic_body(weights, shadow, fallback, sticky_header)
        return self._call(ActionResult, "PUT", f"/v1/models/{model}/traffic", json=body)

    def promote(self, model: str, version: str) -> Any:
        body = {"version": version}
        return self._call(ActionResult, "POST", f"/v1/models/{model}/promote", json=body)

    def rollback(self, model: str, to: str | None = None) -> Any:
        return self._call(ActionResult, "POST", f"/v1/models/{model}/rollback", json={"to": to})

    def retire(self, model: str, version: str) -> Any:
        return self._call(ActionResult, "DELETE", f"/v1/models/{model}/versions/{version}")

    def requests(self, **filters: Any) -> Any:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call(list[RequestRow], "GET", "/v1/requests", params=params)

    def request(self, request_id: str) -> Any:
        # Clients choose request ids: "/" and "?" must reach the agent as part of the id.
        return self._call(list[RequestRow], "GET", f"/v1/requests/{quote(request_id, safe='')}")

    def audit(self, since: str | None = None, limit: int = 100) -> Any:
        params = {"limit": limit, **({"since": since} if since else {})}
        return self._call(list[AuditEntry], "GET", "/v1/audit", params=params)

    def latency(self, **filters: Any) -> Any:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call(list[LatencyPoint], "GET", "/v1/telemetry/latency", params=params)

    def drift(self, model: str, **filters: Any) -> Any:
        """Per-feature drift of a version (default: stable) over a window (default: 1 h)."""
        params = {"model": model, **{k: v for k, v in filters.items() if v is not None}}
        return self._call(DriftReport, "GET", "/v1/drift", params=params)

    def drift_histogram(self, model: str, feature: str, **filters: Any) -> Any:
        params = {"model": model, "feature": feature}
        params.update({k: v for k, v in filters.items() if v is not None})
        return self._call(DriftHistogram, "GET", "/v1/drift/histogram", params=params)

    def drift_timeline(self, model: str, **filters: Any) -> Any:
        params = {"model": model, **{k: v for k, v in filters.items() if v is not None}}
        return self._call(list[DriftPoint], "GET", "/v1/drift/timeline", params=params)

    def replay(
        self, model: str, version: str, request_ids: list[str], tolerance: float = 1e-6
    ) -> Any:
        """Start replaying logged calls against `version`; returns the job (poll it)."""
        body = ReplayRequest(
            model=model, version=version, request_ids=request_ids, tolerance=tolerance
        ).model_dump()
        return self._call(ReplayReport, "POST", "/v1/replay", json=body)

    def replay_report(self, job_id: str) -> Any:
        return self._call(ReplayReport, "GET", f"/v1/replay/{job_id}")

    def replays(self, limit: int = 20) -> Any:
        return self._call(list[ReplayReport], "GET", "/v1/replay", params={"limit": limit})

    def rollout_start(self, model: str, canary: str, **policy: Any) -> Any:
        """Start a progressive rollout; `policy` overrides the model's (steps=[...], ...)."""
        body = RolloutStart(model=model, canary=canary, **policy).model_dump(exclude_none=True)
        return self._call(Rollout, "POST", "/v1/rollouts", json=body)

    def rollouts(self) -> Any:
        return self._call(list[Rollout], "GET", "/v1/rollouts")

    def rollout(self, model: str) -> Any:
        return self._call(Rollout, "GET", f"/v1/rollouts/{model}")

    def rollout_verb(self, model: str, verb: str) -> Any:
        """`pause`, `resume` or `abort` the model's rollout."""
        if verb not in ("pause", "resume", "abort"):
            raise ValueError(f"unknown rollout verb {verb!r}")
        return self._call(Rollout, "POST", f"/v1/rollouts/{model}/{verb}")

    def telemetry(self, kind: str, **filters: Any) -> Any:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call(None, "GET", f"/v1/telemetry/{kind}", params=params)


class _PathList(list):
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def paths(doc: Any) -> list[str]:
            return sorted((doc or {}).get("paths", {}))

        return core_schema.no_info_plain_validator_function(paths)


class _Base(_Calls):
    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        user: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {}
        token = read_token(token)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if user:
            headers["x-trackside-user"] = user
        self._kw = {"base_url": self.url, "headers": headers, "timeout": timeout_s}

    def _unreachable(self, exc: Exception) -> AgentError:
        return AgentError(f"agent at {self.url} did not answer: {exc!r}; is it running?")


class AgentClient(_Base):
    """Blocking client: `AgentClient(url, token).models()`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = httpx.Client(**self._kw)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, kind: Any, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return _parse(kind, response)


class AsyncAgentClient(_Base):
    """The same calls for asyncio (the console's workers): `await client.models()`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = httpx.AsyncClient(**self._kw)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, kind: Any, method: str, path: str, **kw: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return _parse(kind, response)


# The API's typed bodies travel with the client: the console imports them from here.
__all__ = [
    "ActionResult",
    "AgentClient",
    "AgentError",
    "AsyncAgentClient",
    "AuditEntry",
    "DriftHistogram",
    "DriftPoint",
    "DriftReport",
    "FeatureDrift",
    "HostInfo",
    "LatencyPoint",
    "ModelStatus",
    "ReplayItem",
    "ReplayReport",
    "RequestRow",
    "Rollout",
]
