"""The agent's HTTP API (v1): one router module per family, the bearer token checked by a
router-level dependency on everything but /health, and one handler for every ApiError.

Handlers that read DuckDB are plain `def`s (FastAPI runs them in a thread pool, each on its
own cursor); actions are `async def` and go through the controller.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse

from agent.api import (
    audit,
    drift,
    fleet,
    health,
    host,
    metrics,
    models,
    replay,
    requests,
    rollouts,
)
from agent.api.context import AgentContext
from agent.api.guard import Guard
from agent.errors import ApiError
from agent.schemas.common import AGENT_VERSION, ErrorBody

ROUTERS = (health, host, models, requests, drift, replay, rollouts, audit, metrics, fleet)
ERRORS = {
    401: "missing or wrong bearer token",
    404: "no such model or request",
    409: "another action is in flight, or the action conflicts with the state",
    422: "bad input: the reason says which field and why",
    502: "Ray Serve refused or failed the change; the old state is in force",
}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    reasons = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        reasons.append(f"{where}: {err['msg']}" if where else err["msg"])
    return JSONResponse({"detail": "; ".join(reasons)}, status_code=422)


def create_app(ctx: AgentContext) -> FastAPI:
    app = FastAPI(
        responses={c: {"model": ErrorBody, "description": t} for c, t in ERRORS.items()},
        title="trackside agent",
        version=AGENT_VERSION,
        description="Telemetry, request log, and model actions of one trackside host.",
    )
    app.state.ctx = ctx
    # Fleet answers (a day of summaries) shrink several times: compress what is worth it.
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    # Outermost: the token before anything reads the body.
    app.add_middleware(Guard, tokens=ctx.tokens)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    for family in ROUTERS:
        app.include_router(family.router)
    return app
