"""A typed client for the agent's HTTP API, sync and async, for the console, CLI and scripts.

Each call is declared once in `_Calls` (method, path, parameters, the type of the answer);
`AgentClient` and `AsyncAgentClient` write out every call with typed parameters and returns
(as httpx's Client and AsyncClient do), so both are checked by mypy and each is one line. The
module is long because every call is written out twice, once per client.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from agent.defaults import DEFAULT_URL, TOKEN_FILE
from agent.fleet_file import Fleet, HostEntry, load_fleet
from agent.schemas.alerts import AlertsPage, AlertState
from agent.schemas.audit import AuditEntry
from agent.schemas.batch import BatchDiff, BatchJob, BatchStart
from agent.schemas.coverage import Coverage, MissingHost
from agent.schemas.drift import DriftHistogram, DriftPoint, DriftReport, FeatureDrift
from agent.schemas.feedback import AccuracyReport, FeedbackResult, VersionAccuracy
from agent.schemas.host import Health, HostInfo, LatencyPoint, ServeEvent
from agent.schemas.models import (
    ActionResult,
    ModelStatus,
    ReplicaPage,
    ReplicaReport,
    TrafficRequest,
)
from agent.schemas.replay import ReplayItem, ReplayReport, ReplayRequest
from agent.schemas.requests import RequestDetail, RequestPage, RequestRow
from agent.schemas.rollouts import MetricVerdict, Rollout
from agent.schemas.routing import RoutingChange, RoutingHistory
from serve.config_file import ConfigError
from serve.model_config import RolloutPolicy
from serve.routing_table import RoutingTable, ShadowTarget

T = TypeVar("T")
Rows = list[dict[str, Any]]
When = datetime | str | None


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
    path = token_file or Path(os.environ.get("TRACKSIDE_TOKEN_FILE", TOKEN_FILE))
    try:
        return path.read_text().strip()
    except OSError:
        return None


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None

    def read(self, response: httpx.Response) -> T:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AgentError(f"{response.status_code}: {detail}", response.status_code)
        return self.parse(response.json())


def _typed(kind: type[T] | Any) -> Callable[[Any], T]:
    def parse(data: Any) -> T:
        result: T = _adapter(kind).validate_python(data)
        return result

    return parse


def _call(kind: Any, method: str, path: str, **kw: Any) -> Call[Any]:
    params = {k: _param(v) for k, v in (kw.pop("params", None) or {}).items() if v is not None}
    return Call(method, path, _typed(kind), params=params, **kw)


def _param(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _paths(doc: Any) -> list[str]:
    return sorted((doc or {}).get("paths", {}))


class _Calls:
    """Every API call, declared once."""

    @staticmethod
    def health() -> Call[Health]:
        return _call(Health, "GET", "/health")

    @staticmethod
    def paths() -> Call[list[str]]:
        """The API paths this agent offers (from its OpenAPI document)."""
        return Call("GET", "/openapi.json", _paths)

    @staticmethod
    def host() -> Call[HostInfo]:
        return _call(HostInfo, "GET", "/v1/host")

    @staticmethod
    def telemetry(
        kind: str, since: When = None, until: When = None, step: int | None = None
    ) -> Call[Rows]:
        params = {"since": since, "until": until, "step": step}
        return _call(Rows, "GET", f"/v1/telemetry/{kind}", params=params)

    @staticmethod
    def serve_events(since: When = None, app: str | None = None) -> Call[list[ServeEvent]]:
        params = {"since": since, "app": app}
        return _call(list[ServeEvent], "GET", "/v1/telemetry/serve", params=params)

    @staticmethod
    def latency(
        model: str | None = None,
        version: str | None = None,
        since: When = None,
        until: When = None,
        step: int | None = None,
    ) -> Call[list[LatencyPoint]]:
        params: dict[str, Any] = {"model": model, "version": version, "step": step}
        params.update(since=since, until=until)
        return _call(list[LatencyPoint], "GET", "/v1/telemetry/latency", params=params)

    @staticmethod
    def models() -> Call[list[ModelStatus]]:
        return _call(list[ModelStatus], "GET", "/v1/models")

    @staticmethod
    def model(model: str) -> Call[ModelStatus]:
        return _call(ModelStatus, "GET", f"/v1/models/{model}")

    @staticmethod
    def replicas() -> Call[ReplicaPage]:
        return _call(ReplicaPage, "GET", "/v1/replicas")

    @staticmethod
    def deploy(model: str, version: str, force: bool) -> Call[ActionResult]:
        body = {"version": version, "force": force}
        return _call(ActionResult, "POST", f"/v1/models/{model}/versions", json=body)

    @staticmethod
    def set_traffic(
        model: str,
        weights: dict[str, int],
        shadow: tuple[str, float] | None,
        fallback: str | None,
        sticky_header: str | None,
    ) -> Call[ActionResult]:
        # Built, not validated: the agent checks it and answers a 422 that says why.
        body = TrafficRequest.model_construct(
            weights=weights,
            shadow=ShadowTarget.model_construct(version=shadow[0], fraction=shadow[1])
            if shadow
            else None,
            fallback=fallback,
            sticky_header=sticky_header,
        )
        json = body.model_dump(mode="json")
        return _call(ActionResult, "PUT", f"/v1/models/{model}/traffic", json=json)

    @staticmethod
    def promote(model: str, version: str) -> Call[ActionResult]:
        body = {"version": version}
        return _call(ActionResult, "POST", f"/v1/models/{model}/promote", json=body)

    @staticmethod
    def rollback(model: str, to: str | None) -> Call[ActionResult]:
        return _call(ActionResult, "POST", f"/v1/models/{model}/rollback", json={"to": to})

    @staticmethod
    def retire(model: str, version: str) -> Call[ActionResult]:
        return _call(ActionResult, "DELETE", f"/v1/models/{model}/versions/{version}")

    @staticmethod
    def requests(
        model: str | None = None,
        version: str | None = None,
        role: str | None = None,
        status: int | None = None,
        since: When = None,
        until: When = None,
        limit: int = 100,
    ) -> Call[RequestPage]:
        params: dict[str, Any] = {"model": model, "version": version, "role": role}
        params["status"] = status
        params.update(since=since, until=until, limit=limit)
        return _call(RequestPage, "GET", "/v1/requests", params=params)

    @staticmethod
    def request(request_id: str) -> Call[RequestDetail]:
        # Clients choose request ids: "/" and "?" must reach the agent as part of the id.
        return _call(RequestDetail, "GET", f"/v1/requests/{quote(request_id, safe='')}")

    @staticmethod
    def routing_history(model: str, at: When = None, limit: int = 20) -> Call[RoutingHistory]:
        params = {"model": model, "at": at, "limit": limit}
        return _call(RoutingHistory, "GET", "/v1/routing/history", params=params)

    @staticmethod
    def audit(
        since: When = None, limit: int = 100, until: When = None, model: str | None = None
    ) -> Call[list[AuditEntry]]:
        params = {"since": since, "until": until, "model": model, "limit": limit}
        return _call(list[AuditEntry], "GET", "/v1/audit", params=params)

    @staticmethod
    def drift(
        model: str, version: str | None = None, since: When = None, until: When = None
    ) -> Call[DriftReport]:
        params = {"model": model, "version": version, "since": since, "until": until}
        return _call(DriftReport, "GET", "/v1/drift", params=params)

    @staticmethod
    def drift_histogram(
        model: str,
        feature: str,
        version: str | None = None,
        since: When = None,
        until: When = None,
        bins: int | None = None,
    ) -> Call[DriftHistogram]:
        params: dict[str, Any] = {"model": model, "feature": feature, "bins": bins}
        params["version"] = version
        params.update(since=since, until=until)
        return _call(DriftHistogram, "GET", "/v1/drift/histogram", params=params)

    @staticmethod
    def drift_timeline(
        model: str,
        version: str | None = None,
        since: When = None,
        until: When = None,
        buckets: int | None = None,
    ) -> Call[list[DriftPoint]]:
        params: dict[str, Any] = {"model": model, "version": version, "buckets": buckets}
        params.update(since=since, until=until)
        return _call(list[DriftPoint], "GET", "/v1/drift/timeline", params=params)

    @staticmethod
    def replay(
        model: str, version: str, request_ids: list[str], tolerance: float
    ) -> Call[ReplayReport]:
        body = ReplayRequest.model_construct(
            model=model, version=version, request_ids=request_ids, tolerance=tolerance
        )
        return _call(ReplayReport, "POST", "/v1/replay", json=body.model_dump())

    @staticmethod
    def alerts() -> Call[AlertsPage]:
        return _call(AlertsPage, "GET", "/v1/alerts")

    @staticmethod
    def feedback(model: str, records: list[dict[str, Any]]) -> Call[FeedbackResult]:
        body = {"model": model, "records": records}
        return _call(FeedbackResult, "POST", "/v1/feedback", json=to_jsonable_python(body))

    @staticmethod
    def accuracy(
        model: str,
        version: str | None = None,
        since: When = None,
        until: When = None,
        buckets: int = 12,
    ) -> Call[AccuracyReport]:
        params = {
            "model": model,
            "version": version,
            "since": since,
            "until": until,
            "buckets": buckets,
        }
        return _call(AccuracyReport, "GET", "/v1/accuracy", params=params)

    @staticmethod
    def replay_report(job_id: str) -> Call[ReplayReport]:
        return _call(ReplayReport, "GET", f"/v1/replay/{job_id}")

    @staticmethod
    def replays(limit: int = 20) -> Call[list[ReplayReport]]:
        return _call(list[ReplayReport], "GET", "/v1/replay", params={"limit": limit})

    @staticmethod
    def rollout_start(model: str, canary: str, policy: dict[str, Any]) -> Call[Rollout]:
        # Checked by the agent (RolloutStart); gates may be a dict or a RolloutGates.
        body = {"model": model, "canary": canary, **policy}
        json = to_jsonable_python({k: v for k, v in body.items() if v is not None})
        return _call(Rollout, "POST", "/v1/rollouts", json=json)

    @staticmethod
    def rollouts() -> Call[list[Rollout]]:
        return _call(list[Rollout], "GET", "/v1/rollouts")

    @staticmethod
    def rollout(model: str) -> Call[Rollout]:
        return _call(Rollout, "GET", f"/v1/rollouts/{model}")

    @staticmethod
    def rollout_verb(model: str, verb: str) -> Call[Rollout]:
        """`pause`, `resume` or `abort` the model's rollout."""
        if verb not in ("pause", "resume", "abort"):
            raise ValueError(f"unknown rollout verb {verb!r}")
        return _call(Rollout, "POST", f"/v1/rollouts/{model}/{verb}")

    @staticmethod
    def batch_start(body: BatchStart) -> Call[BatchJob]:
        return _call(BatchJob, "POST", "/v1/batch-jobs", json=body.model_dump(mode="json"))

    @staticmethod
    def batch_jobs(model: str | None = None, limit: int | None = None) -> Call[list[BatchJob]]:
        params = {"model": model, "limit": limit}
        return _call(list[BatchJob], "GET", "/v1/batch-jobs", params=params)

    @staticmethod
    def batch_job(job_id: str) -> Call[BatchJob]:
        return _call(BatchJob, "GET", f"/v1/batch-jobs/{quote(job_id, safe='')}")

    @staticmethod
    def batch_cancel(job_id: str) -> Call[BatchJob]:
        return _call(BatchJob, "POST", f"/v1/batch-jobs/{quote(job_id, safe='')}/cancel")

    @staticmethod
    def batch_diff(a: str, b: str) -> Call[BatchDiff]:
        path = f"/v1/batch-jobs/{quote(a, safe='')}/diff"
        return _call(BatchDiff, "GET", path, params={"against": b})


def _http_options(
    url: str, token: str | None, user: str | None, timeout_s: float
) -> dict[str, Any]:
    headers = {}
    token = read_token(token)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if user:
        headers["x-trackside-user"] = user
    return {"base_url": url.rstrip("/"), "headers": headers, "timeout": timeout_s}


def _unreachable(url: str, exc: Exception) -> AgentError:
    return AgentError(f"agent at {url} did not answer: {exc!r}; is it running?")


class AgentClient:
    """Blocking client: `AgentClient(url, token).models()`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        user: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(**_http_options(url, token, user, timeout_s))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, params=call.params, json=call.json
            )
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc) from exc
        return call.read(response)

    def health(self) -> Health:
        return self.send(_Calls.health())

    def paths(self) -> list[str]:
        return self.send(_Calls.paths())

    def host(self) -> HostInfo:
        return self.send(_Calls.host())

    def telemetry(
        self, kind: str, since: When = None, until: When = None, step: int | None = None
    ) -> Rows:
        return self.send(_Calls.telemetry(kind, since, until, step))

    def serve_events(self, since: When = None, app: str | None = None) -> list[ServeEvent]:
        return self.send(_Calls.serve_events(since, app))

    def latency(
        self,
        model: str | None = None,
        version: str | None = None,
        since: When = None,
        until: When = None,
        step: int | None = None,
    ) -> list[LatencyPoint]:
        return self.send(_Calls.latency(model, version, since, until, step))

    def models(self) -> list[ModelStatus]:
        return self.send(_Calls.models())

    def replicas(self) -> ReplicaPage:
        return self.send(_Calls.replicas())

    def model(self, model: str) -> ModelStatus:
        return self.send(_Calls.model(model))

    def deploy(self, model: str, version: str, force: bool = False) -> ActionResult:
        return self.send(_Calls.deploy(model, version, force))

    def set_traffic(
        self,
        model: str,
        weights: dict[str, int],
        shadow: tuple[str, float] | None = None,
        fallback: str | None = None,
        sticky_header: str | None = None,
    ) -> ActionResult:
        return self.send(_Calls.set_traffic(model, weights, shadow, fallback, sticky_header))

    def promote(self, model: str, version: str) -> ActionResult:
        return self.send(_Calls.promote(model, version))

    def rollback(self, model: str, to: str | None = None) -> ActionResult:
        return self.send(_Calls.rollback(model, to))

    def retire(self, model: str, version: str) -> ActionResult:
        return self.send(_Calls.retire(model, version))

    def requests(
        self,
        model: str | None = None,
        version: str | None = None,
        role: str | None = None,
        status: int | None = None,
        since: When = None,
        until: When = None,
        limit: int = 100,
    ) -> RequestPage:
        return self.send(_Calls.requests(model, version, role, status, since, until, limit))

    def request(self, request_id: str) -> RequestDetail:
        return self.send(_Calls.request(request_id))

    def audit(
        self, since: When = None, limit: int = 100, until: When = None, model: str | None = None
    ) -> list[AuditEntry]:
        return self.send(_Calls.audit(since, limit, until, model))

    def routing_history(self, model: str, at: When = None, limit: int = 20) -> RoutingHistory:
        """The routing table in force at `at` (default: now), and the changes before it."""
        return self.send(_Calls.routing_history(model, at, limit))

    def drift(
        self, model: str, version: str | None = None, since: When = None, until: When = None
    ) -> DriftReport:
        """Per-feature drift of a version (default: stable) over a window (default: 1 h)."""
        return self.send(_Calls.drift(model, version, since, until))

    def drift_histogram(
        self,
        model: str,
        feature: str,
        version: str | None = None,
        since: When = None,
        until: When = None,
        bins: int | None = None,
    ) -> DriftHistogram:
        return self.send(_Calls.drift_histogram(model, feature, version, since, until, bins))

    def drift_timeline(
        self,
        model: str,
        version: str | None = None,
        since: When = None,
        until: When = None,
        buckets: int | None = None,
    ) -> list[DriftPoint]:
        return self.send(_Calls.drift_timeline(model, version, since, until, buckets))

    def replay(
        self, model: str, version: str, request_ids: list[str], tolerance: float = 1e-6
    ) -> ReplayReport:
        """Start replaying logged calls against `version`; returns the job (poll it)."""
        return self.send(_Calls.replay(model, version, request_ids, tolerance))

    def replay_report(self, job_id: str) -> ReplayReport:
        return self.send(_Calls.replay_report(job_id))

    def alerts(self) -> AlertsPage:
        """Firing and pending alerts, and the latest changes."""
        return self.send(_Calls.alerts())

    def feedback(self, model: str, records: list[dict[str, Any]]) -> FeedbackResult:
        """Ground truth for logged predictions: `{request_id, label | value, ts?}` each."""
        return self.send(_Calls.feedback(model, records))

    def accuracy(
        self,
        model: str,
        version: str | None = None,
        since: When = None,
        until: When = None,
        buckets: int = 12,
    ) -> AccuracyReport:
        """Accuracy per version of the predictions made in the window (default: 24 h)."""
        return self.send(_Calls.accuracy(model, version, since, until, buckets))

    def replays(self, limit: int = 20) -> list[ReplayReport]:
        return self.send(_Calls.replays(limit))

    def rollout_start(self, model: str, canary: str, **policy: Any) -> Rollout:
        """Start a progressive rollout; `policy` overrides the model's (steps=[...], ...)."""
        return self.send(_Calls.rollout_start(model, canary, policy))

    def rollouts(self) -> list[Rollout]:
        return self.send(_Calls.rollouts())

    def rollout(self, model: str) -> Rollout:
        return self.send(_Calls.rollout(model))

    def rollout_verb(self, model: str, verb: str) -> Rollout:
        return self.send(_Calls.rollout_verb(model, verb))

    def batch_start(self, body: BatchStart) -> BatchJob:
        return self.send(_Calls.batch_start(body))

    def batch_jobs(self, model: str | None = None, limit: int | None = None) -> list[BatchJob]:
        return self.send(_Calls.batch_jobs(model, limit))

    def batch_job(self, job_id: str) -> BatchJob:
        return self.send(_Calls.batch_job(job_id))

    def batch_cancel(self, job_id: str) -> BatchJob:
        return self.send(_Calls.batch_cancel(job_id))

    def batch_diff(self, a: str, b: str) -> BatchDiff:
        return self.send(_Calls.batch_diff(a, b))


class AsyncAgentClient:
    """The same calls for asyncio (the console's workers): `await client.models()`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        user: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(**_http_options(url, token, user, timeout_s))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.json
            )
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc) from exc
        return call.read(response)

    async def health(self) -> Health:
        return await self.send(_Calls.health())

    async def paths(self) -> list[str]:
        return await self.send(_Calls.paths())

    async def host(self) -> HostInfo:
        return await self.send(_Calls.host())

    async def telemetry(
        self, kind: str, since: When = None, until: When = None, step: int | None = None
    ) -> Rows:
        return await self.send(_Calls.telemetry(kind, since, until, step))

    async def latency(
        self,
        model: str | None = None,
        version: str | None = None,
        since: When = None,
        until: When = None,
        step: int | None = None,
    ) -> list[LatencyPoint]:
        return await self.send(_Calls.latency(model, version, since, until, step))

    async def models(self) -> list[ModelStatus]:
        return await self.send(_Calls.models())

    async def replicas(self) -> ReplicaPage:
        return await self.send(_Calls.replicas())

    async def model(self, model: str) -> ModelStatus:
        return await self.send(_Calls.model(model))

    async def deploy(self, model: str, version: str, force: bool = False) -> ActionResult:
        return await self.send(_Calls.deploy(model, version, force))

    async def set_traffic(
        self,
        model: str,
        weights: dict[str, int],
        shadow: tuple[str, float] | None = None,
        fallback: str | None = None,
        sticky_header: str | None = None,
    ) -> ActionResult:
        return await self.send(_Calls.set_traffic(model, weights, shadow, fallback, sticky_header))

    async def promote(self, model: str, version: str) -> ActionResult:
        return await self.send(_Calls.promote(model, version))

    async def rollback(self, model: str, to: str | None = None) -> ActionResult:
        return await self.send(_Calls.rollback(model, to))

    async def retire(self, model: str, version: str) -> ActionResult:
        return await self.send(_Calls.retire(model, version))

    async def requests(
        self,
        model: str | None = None,
        version: str | None = None,
        role: str | None = None,
        status: int | None = None,
        since: When = None,
        until: When = None,
        limit: int = 100,
    ) -> RequestPage:
        return await self.send(_Calls.requests(model, version, role, status, since, until, limit))

    async def request(self, request_id: str) -> RequestDetail:
        return await self.send(_Calls.request(request_id))

    async def audit(
        self, since: When = None, limit: int = 100, until: When = None, model: str | None = None
    ) -> list[AuditEntry]:
        return await self.send(_Calls.audit(since, limit, until, model))

    async def routing_history(self, model: str, at: When = None, limit: int = 20) -> RoutingHistory:
        return await self.send(_Calls.routing_history(model, at, limit))

    async def drift(
        self, model: str, version: str | None = None, since: When = None, until: When = None
    ) -> DriftReport:
        return await self.send(_Calls.drift(model, version, since, until))

    async def drift_histogram(
        self,
        model: str,
        feature: str,
        version: str | None = None,
        since: When = None,
        until: When = None,
        bins: int | None = None,
    ) -> DriftHistogram:
        return await self.send(_Calls.drift_histogram(model, feature, version, since, until, bins))

    async def drift_timeline(
        self,
        model: str,
        version: str | None = None,
        since: When = None,
        until: When = None,
        buckets: int | None = None,
    ) -> list[DriftPoint]:
        return await self.send(_Calls.drift_timeline(model, version, since, until, buckets))

    async def replay(
        self, model: str, version: str, request_ids: list[str], tolerance: float = 1e-6
    ) -> ReplayReport:
        return await self.send(_Calls.replay(model, version, request_ids, tolerance))

    async def replay_report(self, job_id: str) -> ReplayReport:
        return await self.send(_Calls.replay_report(job_id))

    async def alerts(self) -> AlertsPage:
        return await self.send(_Calls.alerts())

    async def accuracy(
        self,
        model: str,
        version: str | None = None,
        since: When = None,
        until: When = None,
        buckets: int = 12,
    ) -> AccuracyReport:
        return await self.send(_Calls.accuracy(model, version, since, until, buckets))

    async def replays(self, limit: int = 20) -> list[ReplayReport]:
        return await self.send(_Calls.replays(limit))

    async def rollout_start(self, model: str, canary: str, **policy: Any) -> Rollout:
        return await self.send(_Calls.rollout_start(model, canary, policy))

    async def rollouts(self) -> list[Rollout]:
        return await self.send(_Calls.rollouts())

    async def rollout(self, model: str) -> Rollout:
        return await self.send(_Calls.rollout(model))

    async def rollout_verb(self, model: str, verb: str) -> Rollout:
        return await self.send(_Calls.rollout_verb(model, verb))

    async def batch_start(self, body: BatchStart) -> BatchJob:
        return await self.send(_Calls.batch_start(body))

    async def batch_jobs(
        self, model: str | None = None, limit: int | None = None
    ) -> list[BatchJob]:
        return await self.send(_Calls.batch_jobs(model, limit))

    async def batch_job(self, job_id: str) -> BatchJob:
        return await self.send(_Calls.batch_job(job_id))

    async def batch_cancel(self, job_id: str) -> BatchJob:
        return await self.send(_Calls.batch_cancel(job_id))

    async def batch_diff(self, a: str, b: str) -> BatchDiff:
        return await self.send(_Calls.batch_diff(a, b))


# The API's typed bodies travel with the client: the console imports them from here.
__all__ = [
    "DEFAULT_URL",
    "AccuracyReport",
    "ActionResult",
    "AgentClient",
    "AgentError",
    "AlertState",
    "AlertsPage",
    "AsyncAgentClient",
    "AuditEntry",
    "BatchDiff",
    "BatchJob",
    "BatchStart",
    "ConfigError",
    "Coverage",
    "DriftHistogram",
    "DriftPoint",
    "DriftReport",
    "FeatureDrift",
    "FeedbackResult",
    "Fleet",
    "HostEntry",
    "HostInfo",
    "LatencyPoint",
    "MetricVerdict",
    "MissingHost",
    "ModelStatus",
    "ReplayItem",
    "ReplayReport",
    "ReplicaPage",
    "ReplicaReport",
    "RequestDetail",
    "RequestPage",
    "RequestRow",
    "Rollout",
    "RolloutPolicy",
    "RoutingChange",
    "RoutingHistory",
    "RoutingTable",
    "ServeEvent",
    "VersionAccuracy",
    "load_fleet",
]
