"""Typed bodies of the agent's HTTP API (v1), shared by the server and `agent.client`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from serve.routing_table import RoutingTable, ShadowTarget

AGENT_VERSION = "0.1.0"


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# DuckDB keeps naive UTC timestamps; the API always says they are UTC (RFC 3339).
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class _Body(BaseModel):
    # Strict: `[false]` is not a number and a typo is not silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    """Every 4xx/5xx: what failed and what to do, in one sentence."""

    detail: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = AGENT_VERSION


class GpuInfo(BaseModel):
    index: int
    uuid: str
    name: str
    lost: bool = False


class HostInfo(BaseModel):
    hostname: str
    role: Literal["agent", "controller"]
    agent_version: str = AGENT_VERSION
    gpu_status: str
    gpus: list[GpuInfo]
    cpu_count: int
    mem_total: int
    started_at: UtcDatetime
    collectors: dict[str, str]


class VersionStatus(BaseModel):
    version: str
    weight: int = 0
    shadow_fraction: float = 0.0
    is_stable: bool = False
    is_fallback: bool = False
    app_status: str | None = None
    replicas: dict[str, int] = Field(default_factory=dict)
    autoscaling: dict[str, Any] | None = None
    problem: str | None = None
    sha256: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class ModelStatus(BaseModel):
    model: str
    stable: str
    previous_stable: list[str]
    table: RoutingTable
    versions: list[VersionStatus]
    router_status: str | None = None


class DeployRequest(_Body):
    version: str
    force: bool = False


class TrafficRequest(_Body):
    weights: dict[str, int]
    shadow: ShadowTarget | None = None
    sticky_header: str | None = None
    fallback: str | None = None


class PromoteRequest(_Body):
    version: str


class RollbackRequest(_Body):
    to: str | None = None


class ActionResult(BaseModel):
    action: str
    model: str
    changed: bool
    before: RoutingTable | None
    after: RoutingTable | None
    message: str
    audit_id: int


class AuditEntry(BaseModel):
    id: int
    ts: UtcDatetime
    who: str | None
    action: str
    model: str | None
    before: Any = None
    after: Any = None
    result: str
    error: str | None = None


class RequestRow(BaseModel):
    request_id: str
    ts: UtcDatetime
    model: str
    version: str | None
    role: str
    route_version: int | None
    status: int
    error: str | None
    latency_ms: float | None
    total_ms: float | None
    sha256: str | None
    host: str | None
    replica: str | None
    primary_request_id: str | None
    fallback_from: str | None
    input: Any = None
    output: Any = None


class LatencyPoint(BaseModel):
    t: UtcDatetime
    model: str
    version: str | None
    requests: int
    rps: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class FeatureDrift(BaseModel):
    """One feature's test against the reference sample (or the predicted label's)."""

    feature: str
    kind: Literal["numeric", "categorical"]
    test: Literal["ks", "chi2"]
    reference_rows: int
    current_rows: int
    statistic: float | None = Field(description="KS D, or chi-square; null without traffic")
    p_value: float | None
    p_adjusted: float | None = Field(description="Benjamini-Hochberg over the report's features")
    psi: float | None = None
    wasserstein: float | None = Field(None, description="W1 / the reference's std")
    js: float | None = Field(None, description="Jensen-Shannon distance, base 2")
    drifted: bool


class DriftThresholdsBody(BaseModel):
    alpha: float
    psi: float
    wasserstein: float
    js: float


class DriftReport(BaseModel):
    model: str
    version: str
    since: UtcDatetime
    until: UtcDatetime
    current_rows: int = Field(description="instances of primary traffic in the window")
    reference_rows: int
    thresholds: DriftThresholdsBody
    drifted: list[str] = Field(description="the features that drifted, most shifted first")
    features: list[FeatureDrift]
    prediction: FeatureDrift | None = Field(description="the predicted label's distribution")


class DriftHistogram(BaseModel):
    model: str
    version: str
    feature: str
    since: UtcDatetime
    until: UtcDatetime
    edges: list[float] = Field(description="bin edges; one more than each fraction list")
    reference: list[float] = Field(description="fraction of the reference sample per bin")
    current: list[float] = Field(description="fraction of current traffic per bin")


class DriftPoint(BaseModel):
    start: UtcDatetime
    end: UtcDatetime
    current_rows: int
    tested: int = Field(description="features with traffic to test")
    drifted: int
    max_psi: float | None
    prediction_js: float | None


class ReplayRequest(_Body):
    """Replay logged primary calls of `model` against `version`."""

    model: str
    version: str
    request_ids: list[str] = Field(min_length=1, max_length=1000)
    tolerance: float = Field(1e-6, ge=0, le=1, description="probabilities may differ this much")


class ReplayItem(BaseModel):
    request_id: str
    original_version: str | None
    original_sha256: str | None
    replay_sha256: str | None = None
    outcome: Literal["identical", "within_tolerance", "output_changed", "label_changed", "failed"]
    max_abs_diff: float | None = None
    original_labels: list[Any] | None = None
    replay_labels: list[Any] | None = None
    error: str | None = None


class ReplayReport(BaseModel):
    """A replay job and its reproducibility report (items: the differences first)."""

    id: str
    model: str
    version: str
    who: str
    state: Literal["running", "done", "failed", "interrupted"]
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    total: int
    done: int = 0
    tolerance: float
    counts: dict[str, int] = Field(default_factory=dict)
    same_artifact: int = Field(0, description="replays answered by the original's artifact")
    max_abs_diff: float | None = None
    error: str | None = None
    items: list[ReplayItem] = Field(default_factory=list)


class RolloutStart(_Body):
    """Start a progressive rollout of `canary`; unset fields come from the model's policy."""

    model: str
    canary: str
    steps: list[int] | None = None
    step_wait_s: float | None = None
    max_marginal: int | None = None
    pair_fraction: float | None = None
    gates: dict[str, float] | None = Field(None, description='e.g. {"min_requests": 50}')
