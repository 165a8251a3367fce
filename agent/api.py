"""The agent's HTTP API (v1): FastAPI, bearer token on everything but /health.

Handlers that read DuckDB are plain `def`s (FastAPI runs them in a thread pool, each on its
own cursor); actions are `async def` and go through the controller.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import socket
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import psutil
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from agent.api_models import (
    ActionResult,
    AuditEntry,
    DeployRequest,
    DriftHistogram,
    DriftPoint,
    DriftReport,
    DriftThresholdsBody,
    ErrorBody,
    FeatureDrift,
    GpuInfo,
    Health,
    HostInfo,
    LatencyPoint,
    ModelStatus,
    PromoteRequest,
    ReplayReport,
    ReplayRequest,
    RequestRow,
    RollbackRequest,
    RolloutStart,
    TrafficRequest,
)
from agent.controller import ActionError, Controller
from agent.replay import Replayer, ReplayError
from agent.rollout_machine import Rollout, RolloutError
from agent.rollouts import Rollouts
from agent.store import HOST_ROLLUP, Store, naive_utc, utcnow
from serve.model_store import StoreError

if TYPE_CHECKING:
    from agent.analysis.drift import DriftSource, FeatureResult

MAX_POINTS = 5000
bearer = HTTPBearer(auto_error=False)


class AgentContext:
    """What the API needs from the running daemon."""

    def __init__(
        self, store: Store, token: str, controller: Controller | None, gpu, collectors: dict
    ) -> None:
        self.store = store
        self.token = token
        self.controller = controller
        self.gpu = gpu
        self.collectors = collectors  # name → status text
        self.started_at = utcnow()
        self.serve_collector = None
        self.replayer: Replayer | None = None  # the controller's
        self.rollouts: Rollouts | None = None  # the controller's


def _window(
    since: datetime | None, until: datetime | None, step: int | None, default_span_s: int
) -> tuple[datetime, datetime, int]:
    until = naive_utc(until) if until else utcnow()
    since = naive_utc(since) if since else until - timedelta(seconds=default_span_s)
    if since >= until:
        raise HTTPException(422, "since must be before until")
    span = (until - since).total_seconds()
    if step is None:
        step = max(1, int(span // 300) or 1)
    if span / step > MAX_POINTS:
        raise HTTPException(
            422, f"{span / step:.0f} points requested; at most {MAX_POINTS}: raise step"
        )
    return since, until, step


def create_app(ctx: AgentContext) -> FastAPI:
    errors = {
        code: {"model": ErrorBody, "description": text}
        for code, text in [
            (401, "missing or wrong bearer token"),
            (404, "no such model or request"),
            (409, "another action is in flight, or the action conflicts with the state"),
            (422, "bad input: the reason says which field and why"),
            (502, "Ray Serve refused or failed the change; the old state is in force"),
        ]
    }
    app = FastAPI(
        responses=errors,
        title="trackside agent",
        version="1",
        description="Telemetry, request log, and model actions of one trackside host.",
    )

    @app.exception_handler(ActionError)
    async def _action_error(_: Request, exc: ActionError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RolloutError)
    async def _rollout_error(_: Request, exc: RolloutError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            reasons.append(f"{where}: {err['msg']}" if where else err["msg"])
        return JSONResponse({"detail": "; ".join(reasons)}, status_code=422)

    def authorized(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(creds.credentials.encode(), ctx.token.encode()):
            raise HTTPException(401, "wrong token", {"WWW-Authenticate": "Bearer"})

    def who(x_trackside_user: Annotated[str | None, Header()] = None) -> str:
        return (x_trackside_user or "api-token")[:100]

    def controller() -> Controller:
        if ctx.controller is None:
            raise HTTPException(
                409, "this agent is not the controller; send actions to the Ray head's agent"
            )
        return ctx.controller

    auth = [Depends(authorized)]

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health()

    @app.get("/v1/host", response_model=HostInfo, dependencies=auth)
    def host() -> HostInfo:
        return HostInfo(
            hostname=socket.gethostname(),
            role="controller" if ctx.controller else "agent",
            gpu_status=ctx.gpu.status,
            gpus=[GpuInfo(**g) for g in ctx.gpu.describe()],
            cpu_count=os.cpu_count() or 0,
            mem_total=psutil.virtual_memory().total,
            started_at=ctx.started_at,
            collectors=dict(ctx.collectors),
        )

    @app.get("/v1/telemetry/host", dependencies=auth)
    def telemetry_host(
        since: datetime | None = None,
        until: datetime | None = None,
        step: Annotated[int | None, Query(ge=1, le=86400)] = None,
    ) -> list[dict[str, Any]]:
        since, until, step = _window(since, until, step, 600)
        return _utc_rows(ctx.store.telemetry("host_samples", HOST_ROLLUP, since, until, step))

    @app.get("/v1/telemetry/gpu", dependencies=auth)
    def telemetry_gpu(
        since: datetime | None = None,
        until: datetime | None = None,
        step: Annotated[int | None, Query(ge=1, le=86400)] = None,
    ) -> list[dict[str, Any]]:
        since, until, step = _window(since, until, step, 600)
        return _utc_rows(
            ctx.store.telemetry(
                "gpu_samples",
                ["util_gpu", "util_mem", "mem_used", "temp_c", "power_w"],
                since,
                until,
                step,
                group="uuid",
            )
        )

    @app.get("/v1/telemetry/gpu/latest", dependencies=auth)
    def gpu_latest() -> list[dict[str, Any]]:
        rows = ctx.store.latest("gpu_samples", order="gpu_index")
        for row in rows:
            row["processes"] = json.loads(row["processes"]) if row["processes"] else None
        return _utc_rows(rows)

    @app.get("/v1/telemetry/latency", response_model=list[LatencyPoint], dependencies=auth)
    def telemetry_latency(
        model: str | None = None,
        version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        step: Annotated[int | None, Query(ge=1, le=86400)] = None,
    ) -> list[LatencyPoint]:
        since, until, step = _window(since, until, step, 600)
        rows = ctx.store.query(
            """
            SELECT t, model, version, requests, error_rate, p50_ms, p95_ms, p99_ms,
                   -- the first and last buckets are cut by the window: divide by what is in it
                   requests / greatest(epoch(least(t + to_seconds(?), ?::TIMESTAMP))
                                       - epoch(greatest(t, ?::TIMESTAMP)), 1.0) AS rps
            FROM (
                SELECT time_bucket(to_seconds(?), ts) AS t, model, version, count(*) AS requests,
                       avg(CASE WHEN status >= 500 OR fallback_from IS NOT NULL THEN 1 ELSE 0 END)
                           AS error_rate,
                       quantile_cont(total_ms, 0.5) AS p50_ms,
                       quantile_cont(total_ms, 0.95) AS p95_ms,
                       quantile_cont(total_ms, 0.99) AS p99_ms
                FROM requests
                WHERE role = 'primary' AND ts >= ? AND ts < ?
                  AND (?::VARCHAR IS NULL OR model = ?) AND (?::VARCHAR IS NULL OR version = ?)
                GROUP BY ALL
            ) ORDER BY t, model, version
            """,
            [step, until, since, step, since, until, model, model, version, version],
        )
        return [LatencyPoint(**r) for r in rows]

    @app.get("/v1/models", response_model=list[ModelStatus], dependencies=auth)
    def models() -> list[ModelStatus]:
        ctl = controller()
        return [ctl.model_status(m, ctl.last_status) for m in sorted(ctl.states())]

    @app.get("/v1/models/{model}", response_model=ModelStatus, dependencies=auth)
    def model(model: str) -> ModelStatus:
        ctl = controller()
        return ctl.model_status(model, ctl.last_status)

    @app.post("/v1/models/{model}/versions", response_model=ActionResult, dependencies=auth)
    async def deploy(model: str, body: DeployRequest, user: str = Depends(who)) -> ActionResult:
        return await controller().deploy(model, body.version, body.force, user)

    @app.put("/v1/models/{model}/traffic", response_model=ActionResult, dependencies=auth)
    async def traffic(model: str, body: TrafficRequest, user: str = Depends(who)) -> ActionResult:
        return await controller().set_traffic(model, body, user)

    @app.post("/v1/models/{model}/promote", response_model=ActionResult, dependencies=auth)
    async def promote(model: str, body: PromoteRequest, user: str = Depends(who)) -> ActionResult:
        return await controller().promote(model, body.version, user)

    @app.post("/v1/models/{model}/rollback", response_model=ActionResult, dependencies=auth)
    async def rollback(model: str, body: RollbackRequest, user: str = Depends(who)) -> ActionResult:
        return await controller().rollback(model, body.to, user)

    @app.delete(
        "/v1/models/{model}/versions/{version}", response_model=ActionResult, dependencies=auth
    )
    async def retire(model: str, version: str, user: str = Depends(who)) -> ActionResult:
        return await controller().retire(model, version, user)

    @app.get("/v1/requests", response_model=list[RequestRow], dependencies=auth)
    def requests(
        model: str | None = None,
        version: str | None = None,
        role: str | None = None,
        status: Annotated[int | None, Query(ge=0, le=999)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[RequestRow]:
        rows = ctx.store.query(
            """
            SELECT * EXCLUDE (input, output, sticky_key_hash, dropped_total, ingested_at)
            FROM requests
            WHERE (?::VARCHAR IS NULL OR model = ?) AND (?::VARCHAR IS NULL OR version = ?)
              AND (?::VARCHAR IS NULL OR role = ?) AND (?::INTEGER IS NULL OR status = ?)
              AND (?::TIMESTAMP IS NULL OR ts >= ?) AND (?::TIMESTAMP IS NULL OR ts < ?)
            ORDER BY ts DESC LIMIT ?
            """,
            [
                model,
                model,
                version,
                version,
                role,
                role,
                status,
                status,
                naive_utc(since) if since else None,
                naive_utc(since) if since else None,
                naive_utc(until) if until else None,
                naive_utc(until) if until else None,
                limit,
            ],
        )
        return [RequestRow(**r) for r in rows]

    @app.get("/v1/requests/{request_id:path}", response_model=list[RequestRow], dependencies=auth)
    def request_detail(request_id: str) -> list[RequestRow]:
        rows = ctx.store.query(
            "SELECT * EXCLUDE (sticky_key_hash, dropped_total, ingested_at) FROM requests"
            " WHERE request_id = ? ORDER BY role",
            [request_id],
        )
        if not rows:
            raise HTTPException(404, f"no request {request_id!r} in this agent's log")
        for row in rows:
            for key in ("input", "output"):
                with contextlib.suppress(ValueError):  # else keep the text as it came
                    row[key] = json.loads(row[key]) if row[key] else None
        return [RequestRow(**r) for r in rows]

    # Drift needs numpy and scipy (~40 MiB): imported on the first drift request, so an
    # agent nobody asks about drift stays small.
    def drift_source(model: str, version: str | None) -> DriftSource:
        from agent.analysis.drift import DriftSource

        ctl = controller()
        if model not in ctl.models:
            raise HTTPException(404, f"unknown model {model!r}; known: {sorted(ctl.models)}")
        version = version or ctl.state(model).stable
        try:
            manifest = ctl.model_store.manifest(model, version)
            reference = ctl.model_store.reference_path(model, version)
        except StoreError as exc:
            raise HTTPException(404, str(exc)) from exc
        if reference is None or not reference.is_file():
            raise HTTPException(
                409, f"{model}/{version} has no reference sample: register it with one"
            )
        return DriftSource(model, version, reference, list(manifest.input.features))

    @app.get("/v1/drift", response_model=DriftReport, dependencies=auth)
    def drift(
        model: str,
        version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> DriftReport:
        """Every input feature and the predicted label of a version's primary traffic in
        the window (default: the last hour; version: the stable one) against its reference
        sample."""
        from agent.analysis.drift import drift_reports
        from agent.analysis.drift_stats import DriftThresholds

        source = drift_source(model, version)
        since, until, _ = _window(since, until, None, 3600)
        thresholds = DriftThresholds()
        (report,) = drift_reports(ctx.store, source, since, until, thresholds)
        features = [_feature_drift(f) for f in report.features]
        ranked = sorted((f for f in features if f.drifted), key=lambda f: -(f.psi or f.js or 0))
        return DriftReport(
            model=model,
            version=source.version,
            since=since,
            until=until,
            current_rows=report.rows,
            reference_rows=max((f.reference_rows for f in features), default=0),
            thresholds=DriftThresholdsBody(**asdict(thresholds)),
            drifted=[f.feature for f in ranked],
            features=features,
            prediction=_feature_drift(report.prediction) if report.prediction else None,
        )

    @app.get("/v1/drift/histogram", response_model=DriftHistogram, dependencies=auth)
    def drift_histogram(
        model: str,
        feature: str,
        version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        bins: Annotated[int, Query(ge=2, le=100)] = 20,
    ) -> DriftHistogram:
        from agent.analysis.drift import histogram

        source = drift_source(model, version)
        if feature not in source.features:
            raise HTTPException(404, f"{model}/{source.version} has no input feature {feature!r}")
        since, until, _ = _window(since, until, None, 3600)
        edges, ref, cur = histogram(ctx.store, source, feature, since, until, bins)
        return DriftHistogram(
            model=model,
            version=source.version,
            feature=feature,
            since=since,
            until=until,
            edges=edges,
            reference=ref.tolist(),
            current=cur.tolist(),
        )

    @app.get("/v1/drift/timeline", response_model=list[DriftPoint], dependencies=auth)
    def drift_timeline(
        model: str,
        version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        buckets: Annotated[int, Query(ge=1, le=60)] = 12,
    ) -> list[DriftPoint]:
        """The window cut in `buckets` equal slices, each tested on its own."""
        from agent.analysis.drift import drift_reports
        from agent.analysis.drift_stats import DriftThresholds

        source = drift_source(model, version)
        since, until, _ = _window(since, until, None, 3600)
        reports = drift_reports(ctx.store, source, since, until, DriftThresholds(), buckets)
        return [
            DriftPoint(
                start=r.start,
                end=r.end,
                current_rows=r.rows,
                tested=sum(f.result.p_value is not None for f in r.features),
                drifted=sum(f.decision.drifted for f in r.features),
                max_psi=max(
                    (f.result.psi for f in r.features if f.result.psi is not None), default=None
                ),
                prediction_js=r.prediction.result.js if r.prediction else None,
            )
            for r in reports
        ]

    def replayer() -> Replayer:
        controller()
        if ctx.replayer is None:
            raise HTTPException(409, "replay needs the controller's Serve address and token")
        return ctx.replayer

    @app.post("/v1/replay", response_model=ReplayReport, status_code=202, dependencies=auth)
    async def replay_start(body: ReplayRequest, user: str = Depends(who)) -> ReplayReport:
        """Replay logged primary calls against a version; poll GET /v1/replay/{id}."""
        ctl = controller()
        if body.model not in ctl.models:
            raise HTTPException(404, f"unknown model {body.model!r}; known: {sorted(ctl.models)}")
        versions = ctl.state(body.model).versions
        if body.version not in versions:
            raise HTTPException(
                422, f"{body.model} has no deployed version {body.version!r}; deployed: {versions}"
            )
        try:
            return replayer().start(body, user)
        except ReplayError as exc:
            raise HTTPException(exc.status, exc.message) from exc

    @app.get("/v1/replay", response_model=list[ReplayReport], dependencies=auth)
    def replay_list(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[ReplayReport]:
        """The latest replay jobs, without their items."""
        return [r.model_copy(update={"items": []}) for r in replayer().reports()[:limit]]

    @app.get("/v1/replay/{job_id}", response_model=ReplayReport, dependencies=auth)
    def replay_report(job_id: str) -> ReplayReport:
        try:
            return replayer().report(job_id)
        except ReplayError as exc:
            raise HTTPException(exc.status, exc.message) from exc

    def rollouts() -> Rollouts:
        controller()
        if ctx.rollouts is None:
            raise HTTPException(409, "this controller runs no rollouts")
        return ctx.rollouts

    @app.post("/v1/rollouts", response_model=Rollout, status_code=201, dependencies=auth)
    async def rollout_start(body: RolloutStart, user: str = Depends(who)) -> Rollout:
        """Start a progressive rollout: the canary's weight steps up while the judge passes
        it, and traffic returns to stable at once if it fails."""
        overrides = body.model_dump(exclude_none=True, exclude={"model", "canary"})
        try:
            return await rollouts().start(body.model, body.canary, overrides, user)
        except ValidationError as exc:
            raise HTTPException(422, f"rollout policy: {exc.errors()[0]['msg']}") from exc

    @app.get("/v1/rollouts", response_model=list[Rollout], dependencies=auth)
    def rollout_list() -> list[Rollout]:
        return rollouts().all()

    @app.get("/v1/rollouts/{model}", response_model=Rollout, dependencies=auth)
    def rollout_status(model: str) -> Rollout:
        return rollouts().get(model)

    @app.post("/v1/rollouts/{model}/pause", response_model=Rollout, dependencies=auth)
    async def rollout_pause(model: str, user: str = Depends(who)) -> Rollout:
        return await rollouts().pause(model, user)

    @app.post("/v1/rollouts/{model}/resume", response_model=Rollout, dependencies=auth)
    async def rollout_resume(model: str, user: str = Depends(who)) -> Rollout:
        return await rollouts().resume(model, user)

    @app.post("/v1/rollouts/{model}/abort", response_model=Rollout, dependencies=auth)
    async def rollout_abort(model: str, user: str = Depends(who)) -> Rollout:
        return await rollouts().abort(model, user)

    @app.get("/v1/audit", response_model=list[AuditEntry], dependencies=auth)
    def audit(
        since: datetime | None = None,
        model: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[AuditEntry]:
        rows = ctx.store.query(
            "SELECT id, ts, who, action, model, before, after, result, error FROM audit"
            " WHERE (?::TIMESTAMP IS NULL OR ts >= ?) AND (?::VARCHAR IS NULL OR model = ?)"
            " ORDER BY id DESC LIMIT ?",
            [
                naive_utc(since) if since else None,
                naive_utc(since) if since else None,
                model,
                model,
                limit,
            ],
        )
        for row in rows:
            row["before"] = json.loads(row["before"]) if row["before"] else None
            row["after"] = json.loads(row["after"]) if row["after"] else None
        return [AuditEntry(**r) for r in rows]

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=auth)
    def metrics() -> str:
        return prometheus_text(ctx)

    return app


def _feature_drift(f: FeatureResult) -> FeatureDrift:
    r = f.result
    return FeatureDrift(
        feature=f.feature,
        kind=r.kind,
        test=r.test,
        reference_rows=r.n_ref,
        current_rows=r.n_cur,
        statistic=r.statistic,
        p_value=r.p_value,
        p_adjusted=f.decision.p_adjusted,
        psi=getattr(r, "psi", None),
        wasserstein=getattr(r, "wasserstein", None),
        js=getattr(r, "js", None),
        drifted=f.decision.drifted,
    )


def _utc_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for key in ("t", "ts"):
            if isinstance(row.get(key), datetime) and row[key].tzinfo is None:
                row[key] = row[key].replace(tzinfo=UTC)
    return rows


def _gauge(lines: list[str], name: str, help_text: str, samples: list[tuple[dict, Any]]) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} gauge")
    for labels, value in samples:
        if value is None:
            continue
        label = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"{name}{{{label}}} {float(value)}" if label else f"{name} {float(value)}")


def prometheus_text(ctx: AgentContext) -> str:
    lines: list[str] = []
    host = ctx.store.latest("host_samples")
    h = host[0] if host else {}
    for key, help_text in [
        ("cpu_pct", "CPU use, percent of all cores"),
        ("load1", "1-minute load average"),
        ("mem_pct", "memory in use, percent"),
        ("swap_pct", "swap in use, percent"),
        ("disk_pct", "disk in use, percent"),
    ]:
        _gauge(lines, f"trackside_host_{key}", help_text, [({}, h.get(key))])
    gpus = ctx.store.latest("gpu_samples", order="gpu_index")
    for key, help_text in [
        ("util_gpu", "GPU utilization, percent"),
        ("mem_used", "GPU memory used, bytes"),
        ("temp_c", "GPU temperature, Celsius"),
        ("power_w", "GPU power draw, watts"),
    ]:
        _gauge(
            lines,
            f"trackside_gpu_{key}",
            help_text,
            [({"gpu": g["gpu_index"], "uuid": g["uuid"]}, g.get(key)) for g in gpus],
        )
    return "\n".join(lines) + "\n"
