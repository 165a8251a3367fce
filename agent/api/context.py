"""What every router needs from the running daemon, injected with `Annotated` dependencies:
the context (built once, before the app), the controller, the caller's name, the token check,
and the time window most reads take."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agent.alerts import Alerts
from agent.api.guard import identity_of
from agent.batch_jobs import BatchJobs
from agent.collectors.gpu import GpuCollector
from agent.controller import Controller
from agent.defaults import DATA_DIR
from agent.errors import Conflict, Invalid
from agent.feedback import FeedbackBook
from agent.local_log import LocalRequestLog
from agent.replay import Replayer
from agent.request_log import RequestLog
from agent.rollouts import Rollouts
from agent.schemas.common import When
from agent.store import Store, naive_utc, utcnow
from agent.tokens import Identity, TokenBook
from agent.traffic_metrics import TrafficMetrics

MAX_POINTS = 5000
_TIME = "RFC 3339 (no offset: UTC), 1970..2200, before `until`"
Since = Annotated[When | None, Query(description=f"start of the window: {_TIME}")]
Until = Annotated[When | None, Query(description="end of the window (default: now)")]
At = Annotated[When | None, Query(description=f"the instant (default: now): {_TIME}")]
SinceRequired = Annotated[When, Query(description=f"start of the window: {_TIME}")]
UntilRequired = Annotated[When, Query(description="end of the window, after `since`")]
Step = Annotated[
    int | None,
    Query(ge=1, le=86400, description=f"seconds per point; at most {MAX_POINTS} points"),
]


@dataclass(frozen=True)
class AgentContext:
    store: Store
    tokens: TokenBook
    gpu: GpuCollector
    requests: RequestLog  # the controller's: the whole fleet's; any other agent's: its own
    local: LocalRequestLog  # this agent's own log (what it answers the controller)
    spool: Path = DATA_DIR / "spool"
    collectors: dict[str, str] = field(default_factory=dict)  # name → status, kept by the daemon
    controller: Controller | None = None
    replayer: Replayer | None = None
    rollouts: Rollouts | None = None
    feedback: FeedbackBook | None = None
    alerts: Alerts | None = None
    batch: BatchJobs | None = None
    traffic: TrafficMetrics = field(default_factory=TrafficMetrics)  # counted at ingest
    started_at: datetime = field(default_factory=utcnow)


def get_context(request: Request) -> AgentContext:
    ctx: AgentContext = request.app.state.ctx
    return ctx


Context = Annotated[AgentContext, Depends(get_context)]
bearer = HTTPBearer(auto_error=False)


def authorized(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],  # for the schema
) -> Identity:
    """The caller, as the guard (agent/api/guard.py) identified it before the body was read."""
    identity = identity_of(request.scope)
    if identity is None:
        raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    return identity


def caller(
    identity: Annotated[Identity, Depends(authorized)],
    x_trackside_user: Annotated[str | None, Header()] = None,
) -> str:
    """The audit's `who`: a named token's name; with the agent's own token, the name the
    caller gives (the CLI and console send the local user)."""
    if identity.shared:
        return (x_trackside_user or identity.name)[:100]
    return identity.name


Who = Annotated[str, Depends(caller)]


def require_controller(ctx: Context) -> Controller:
    if ctx.controller is None:
        raise Conflict("this agent is not the controller; send actions to the Ray head's agent")
    return ctx.controller


ControllerDep = Annotated[Controller, Depends(require_controller)]


def time_window(
    since: datetime | None, until: datetime | None, step: int | None, default_span_s: int
) -> tuple[datetime, datetime, int]:
    """[since, until) in naive UTC (default: the last `default_span_s`), and a step that
    keeps the answer under MAX_POINTS points."""
    until = naive_utc(until) if until else utcnow()
    since = naive_utc(since) if since else until - timedelta(seconds=default_span_s)
    if since >= until:
        raise Invalid("since must be before until")
    span = (until - since).total_seconds()
    if step is None:
        step = max(1, int(span // 300) or 1)
    if span / step > MAX_POINTS:
        raise Invalid(f"{span / step:.0f} points requested; at most {MAX_POINTS}: raise step")
    return since, until, step
