"""The agent's HTTP API (v1): one router module per family, the bearer token checked by a
router-level dependency on everything but /health, and one handler for every ApiError.

Handlers that read DuckDB are plain `def`s (FastAPI runs them in a thread pool, each on its
own cursor); actions are `async def` and go through the controller.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match

from agent.api import (
    alerts,
    audit,
    batch,
    drift,
    feedback,
    fleet,
    health,
    host,
    metrics,
    models,
    replay,
    requests,
    rollouts,
    routing,
)
from agent.api.context import AgentContext
from agent.api.guard import Guard
from agent.errors import ApiError, Invalid
from agent.schemas.common import AGENT_VERSION, ErrorBody

ROUTERS = (
    health,
    host,
    models,
    requests,
    drift,
    replay,
    rollouts,
    routing,
    feedback,
    alerts,
    batch,
    audit,
    metrics,
    fleet,
)
ERRORS = {
    400: "the body is not JSON",
    401: "missing or wrong bearer token",
    403: "this token may read, not act",
    404: "no such model or request",
    409: "another action is in flight, or the action conflicts with the state",
    408: "the body did not arrive in time",
    413: "the body is over this route's limit",
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


def _query_names(dependant: Dependant) -> frozenset[str]:
    names: set[str] = set()
    todo = [dependant]
    while todo:
        d = todo.pop()
        names.update(p.alias for p in d.query_params)
        todo.extend(d.dependencies)
    return frozenset(names)


_known_query: dict[int, frozenset[str]] = {}
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def no_unknown_query(request: Request) -> None:
    """A parameter this route does not take is refused, not ignored: `?limt=5` is a typo."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = _known_query.get(id(route))
    if known is None:
        known = _known_query[id(route)] = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise Invalid(f"unknown query parameter {unknown[0]!r}; this route takes: {takes}")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own answers (404, 405, a body that is not JSON) as `{"detail": ...}`; a
    405 lists every method of the path, not only the first route's."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = [
            method
            for method in HTTP_METHODS
            if any(
                route.matches({**request.scope, "method": method})[0] == Match.FULL
                for route in request.app.routes
            )
        ]
        headers["Allow"] = ", ".join(allowed)
    detail = "the body is not JSON" if exc.status_code == 400 else exc.detail
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)


def create_app(ctx: AgentContext) -> FastAPI:
    app = FastAPI(
        responses={c: {"model": ErrorBody, "description": t} for c, t in ERRORS.items()},
        dependencies=[Depends(no_unknown_query)],
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
    app.add_exception_handler(HTTPException, _http_error)
    for family in ROUTERS:
        app.include_router(family.router)
    return app
