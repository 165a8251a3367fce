"""A model's TOML config (`configs/models/<model>.toml`), parsed into typed options.

Every setting has a default that works on one small machine; per-version tables override
the `[defaults]` table key by key.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from serve.config_file import ConfigError, read_toml
from serve.cron import check_cron
from serve.json_number import INTEGRAL
from serve.names import check_name, check_version
from serve.routing_table import DEFAULT_STICKY_HEADER, StickyHeader


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutoscalingOptions(_Strict):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    initial_replicas: int | None = Field(None, ge=0)
    target_ongoing_requests: float = Field(16, gt=0)
    upscale_delay_s: float = Field(10, ge=0)
    downscale_delay_s: float = Field(120, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingOptions:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class VersionOptions(_Strict):
    """How one version's replicas run. Defaults are chosen for small CPU models."""

    accelerator: Literal["auto", "gpu", "cpu"] = "auto"
    # GPUs per replica when the version runs on GPU (fractions share one device).
    num_gpus: float = Field(0.5, gt=0, le=8)
    # Small replicas on small hosts: Serve's default of 1 CPU each fills 2 cores at once.
    num_cpus: float = Field(0.25, gt=0)
    num_replicas: int | None = Field(None, ge=1, description="fixed count; disables autoscaling")
    autoscaling: AutoscalingOptions = Field(default_factory=AutoscalingOptions)
    # Serve's default of 5 throttled a tiny model to ~60 rps against ~170 rps at 64, and a
    # replica must hold at least max_batch_size requests for batches to fill.
    max_ongoing_requests: int = Field(64, ge=1)
    max_batch_size: int = Field(32, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=1)
    # The longest request we expect; graceful shutdown must outlast it or in-flight
    # requests fail with 500 while a replica stops.
    request_timeout_s: float = Field(10, gt=0)
    graceful_shutdown_timeout_s: float = Field(30, gt=0)
    # None = 25% on GPU (no capacity dip while GPU replicas restart), 0 on CPU.
    max_surge_percent: int | None = Field(None, ge=0, le=100)
    max_rows_per_request: int = Field(1024, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    # Custom Ray resources, e.g. {"host_a" = 0.01} to pin replicas to one host.
    resources: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shutdown_outlasts_requests(self) -> VersionOptions:
        if self.graceful_shutdown_timeout_s <= self.request_timeout_s:
            raise ValueError(
                "graceful_shutdown_timeout_s must exceed request_timeout_s, or requests in"
                " flight fail while a replica stops"
            )
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError("max_ongoing_requests must be at least max_batch_size")
        return self


class BlessingRule(_Strict):
    """A candidate may be worse than stable on this offline metric by at most `tolerance`."""

    higher_is_better: bool = True
    tolerance: float = Field(0.0, ge=0)


class RouterReplicaSettings(_Strict):
    """What each router replica reads from its user_config (changed in place, no restart)."""

    # A version that has not answered by then is treated as failed (fallback or 504): a
    # handle call has no timeout of its own, and calls to a crashed replica wait for its
    # replacement.
    timeout_s: float = Field(2.0, gt=0)
    shadow_timeout_s: float = Field(5.0, gt=0)
    # Shadow copies use spare capacity only: a router replica answering more requests than
    # this at once sends none (counted as shed), so a saturated host serves its clients
    # first. 0 sheds every shadow.
    shadow_shed_above: int = Field(8, ge=0)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    log_requests: bool = True
    flush_interval_s: float = Field(0.25, gt=0, le=0.25)
    spool_max_mb: float = Field(256, gt=0)


class RouterUserConfig(RouterReplicaSettings):
    """The router deployment's user_config: the replica settings, and only a hash of the
    replay token (Serve shows user_config to dashboard readers)."""

    replay_token_sha256: str | None = None


class RouterOptions(RouterReplicaSettings):
    """A model's `[router]` table: the replica settings and how the router is deployed."""

    sticky_header: StickyHeader = DEFAULT_STICKY_HEADER
    num_replicas: int = Field(1, ge=1)
    # At most this many router replicas per host: with num_replicas = hosts and 1 here,
    # every host has a router, each writing its calls to its own host's spool.
    max_replicas_per_node: int | None = Field(None, ge=1)
    num_cpus: float = Field(0.25, gt=0)
    max_ongoing_requests: int = Field(256, ge=1)
    graceful_shutdown_timeout_s: float = Field(20, gt=0)

    @model_validator(mode="after")
    def _shutdown_outlasts_requests(self) -> RouterOptions:
        if self.graceful_shutdown_timeout_s <= self.timeout_s + self.shadow_timeout_s:
            raise ValueError("graceful_shutdown_timeout_s must exceed timeout_s + shadow_timeout_s")
        return self

    def user_config(self, replay_token_sha256: str | None) -> RouterUserConfig:
        fields = self.model_dump(include=set(RouterReplicaSettings.model_fields))
        return RouterUserConfig(**fields, replay_token_sha256=replay_token_sha256)


class RolloutGates(_Strict):
    """What the canary judge asks of a canary at every step (agent/analysis/judge.py)."""

    # Strict: a rollout's body may override these, and "50" is not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    min_requests: Annotated[int, Field(ge=1, le=10_000_000), INTEGRAL] = 100
    # A pass needs the canary's error rate surely within the larger of these over stable's.
    max_error_increase: float = Field(0.005, ge=0, le=1)
    max_error_ratio: float = Field(1.8, ge=1, le=100)
    # The typical call (geometric mean) at most this much slower; spread (the log-latency
    # standard deviation) at most this ratio of stable's.
    latency_tolerance: float = Field(0.15, ge=0, le=100)
    # 1.5: the arms' spreads differ by up to 1.3x for the very same artifact on a busy host (a
    # version with less traffic batches less); a doubled variance still fails, on the tail.
    spread_ratio: float = Field(1.5, ge=1, le=100)
    # Calls past the pooled 99.5th percentile: at most this many times stable's share (2% of
    # calls 5x slower put 4-5x there; a healthy canary's share is stable's, within noise).
    max_tail_ratio: float = Field(3.0, ge=1, le=100)
    max_disagreement: float = Field(0.02, ge=0, le=1)
    min_pairs: Annotated[int, Field(ge=1, le=10_000_000), INTEGRAL] = 100
    # The chance that a healthy canary is ever failed, over every look of a rollout, and
    # that a canary beyond any one margin is ever passed (agent/analysis/judge.py).
    fail_p: float = Field(0.01, gt=0, lt=1)
    pass_p: float = Field(0.01, gt=0, lt=1)
    # Input features of the canary's traffic drifted from its reference: above this share (or
    # its predictions drifted), hold the rollout for a person. Off (1) by default: stable gets
    # the same inputs, so drift says the reference is stale, not that the canary is worse.
    max_drifted_share: float = Field(1.0, ge=0, le=1)
    # The share of the model's traffic on hosts that did not answer: above it, hold.
    max_missing_share: float = Field(0.1, ge=0, le=1)


def _rising_to_100(steps: list[int]) -> list[int]:
    if any(a >= b for a, b in itertools.pairwise(steps)):
        raise ValueError("rollout steps must rise, each above the last, to 100")
    if steps[-1] != 100:
        raise ValueError("the last rollout step must be 100: steps are weights rising to 100")
    return steps


# Declared once for the config file and a rollout's body, which may override each.
Steps = Annotated[
    list[Annotated[int, Field(ge=1, le=100), INTEGRAL]],
    Field(min_length=1, max_length=100, description="canary weights, rising, the last 100"),
    AfterValidator(_rising_to_100),
]
StepWait = Annotated[float, Field(ge=1, le=86_400, description="seconds a step may stay undecided")]
Dwell = Annotated[float, Field(ge=0, le=86_400, description="seconds each step lasts at least")]
LookEvery = Annotated[float, Field(ge=1, le=3_600, description="seconds between judgements")]
MaxMarginal = Annotated[int, Field(ge=0, le=100), INTEGRAL]
ShadowFraction = Annotated[float, Field(ge=0, le=1)]


class RolloutPolicy(_Strict):
    """A progressive rollout. First, with `shadow_stage`, no user sees the canary: a share of
    stable's calls is copied to it and its answers, errors and latency judged. Then its
    weight steps up. The canary is judged every `look_every_s` on all its calls since the
    rollout began (agent/analysis/judge.py, valid under these repeated looks): a fail rolls
    back at once; a pass moves to the next step once the step has lasted `min_dwell_s`; a
    step still undecided after `step_wait_s` counts as marginal, and after `max_marginal` of
    those the rollout pauses for a person."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    steps: Steps = Field(default_factory=lambda: [1, 5, 25, 50, 100])
    shadow_stage: bool = True
    min_dwell_s: Dwell = 30
    look_every_s: LookEvery = 10
    step_wait_s: StepWait = 300
    max_marginal: MaxMarginal = 2
    # Share of calls copied to the other version: stable's to the canary until the last
    # step (evidence no user sees, and pairs of answers to compare), then the canary's to
    # stable.
    shadow_fraction: ShadowFraction = 0.5
    gates: RolloutGates = Field(default_factory=RolloutGates)

    def weights(self) -> list[int]:
        """The canary's weight at each step, the shadow stage (0) first."""
        return ([0] if self.shadow_stage else []) + list(self.steps)


class WebhookAction(_Strict):
    """POST the alert's JSON payload (agent/alerts.py documents it); retried with backoff."""

    webhook: Annotated[str, Field(pattern=r"^https?://", max_length=2000)]
    timeout_s: float = Field(5.0, gt=0, le=300)
    retries: Annotated[int, Field(ge=0, le=10), INTEGRAL] = 3


class CommandAction(_Strict):
    """Run an argv (no shell) with the payload on stdin, e.g. a retraining trigger."""

    command: list[str] = Field(min_length=1)
    timeout_s: float = Field(60.0, gt=0, le=3600)


class RolloutAction(_Strict):
    """Pause the model's running rollout, or roll the model back to its previous stable."""

    rollout: Literal["pause", "rollback"]


AlertAction = WebhookAction | CommandAction | RolloutAction
AlertKind = Literal[
    "error_rate", "fallback_share", "p99_ms", "accuracy", "accuracy_drop", "drifted_share"
]


class AlertRule(_Strict):
    """A condition on each version of the model, over the last `window_s`: above `threshold`
    (below it, for `accuracy`), held for `for_s`, fires; `fallback_share` is the share of the
    version's calls its fallback answered; `accuracy_drop` is the offline accuracy (the
    manifest's) minus the measured one."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    kind: AlertKind
    threshold: float
    for_s: float = Field(60.0, ge=0, le=86_400, alias="for")
    window_s: float = Field(300.0, ge=10, le=7 * 86_400)
    min_calls: Annotated[int, Field(ge=0), INTEGRAL] = 20  # fewer: no verdict, no alert
    versions: list[str] | None = None  # default: every deployed version
    actions: list[AlertAction] = Field(default_factory=list)


HostAlertKind = Literal["agent_down", "gpu_xid", "gpu_ecc", "gpu_throttle", "spool_drops"]


class HostAlertRule(_Strict):
    """A condition on each host of the fleet (`[[controller.alerts]]` in configs/agent.toml),
    evaluated by the controller: above `threshold`, held for `for_s`, fires. `agent_down` is 1
    while the host's agent does not answer the controller (0 when it does); `gpu_xid` and
    `gpu_ecc` count critical XID events and uncorrectable ECC errors over `window_s`;
    `gpu_throttle` is the share of the window's GPU samples the hardware slowed (thermal,
    power brake, hardware slowdown); `spool_drops` counts request records its routers
    dropped (a full spool)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    kind: HostAlertKind
    threshold: float = 0.0
    for_s: float = Field(60.0, ge=0, le=86_400, alias="for")
    window_s: float = Field(300.0, ge=10, le=7 * 86_400)
    hosts: list[str] | None = None  # default: every host of the fleet
    actions: list[WebhookAction | CommandAction] = Field(default_factory=list)


class BatchSchedule(_Strict):
    """A `[[batch]]` entry: the controller scores `input` (a file, a folder or a glob on the head
    node) with the `version` selector's version on the `cron` schedule (UTC), each run into a
    new folder under `output` named after its time. Runs missed while the agent was down are
    made up once, at start."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    input: Annotated[str, Field(min_length=1)]
    output: Annotated[str, Field(min_length=1)]
    version: Annotated[str, Field(pattern=r"^(stable|best:[A-Za-z0-9_.-]+|[A-Za-z0-9_.-]+)$")] = (
        "stable"
    )
    cron: Annotated[str, AfterValidator(check_cron)] = Field(description="e.g. '30 0 * * *'")
    format: Literal["parquet", "csv"] | None = None


class ModelConfig(_Strict):
    model: str
    versions: dict[str, VersionOptions]
    stable: str | None = None
    router: RouterOptions = Field(default_factory=RouterOptions)
    blessing: dict[str, BlessingRule] = Field(default_factory=dict)
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    alerts: list[AlertRule] = Field(default_factory=list)
    batch: list[BatchSchedule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _batch_names_unique(self) -> ModelConfig:
        names = [b.name for b in self.batch]
        if len(names) != len(set(names)):
            raise ValueError("each [[batch]] entry needs a name of its own")
        return self

    def options(self, version: str) -> VersionOptions:
        if version in self.versions:
            return self.versions[version]
        return self.versions.get("*", VersionOptions())


def parse_model_config(data: dict[str, Any], source: str = "<config>") -> ModelConfig:
    try:
        model = check_name("model", data.get("model", ""))
        defaults = data.get("defaults", {})
        if not isinstance(defaults, dict):
            raise ConfigError(f"{source}: [defaults] must be a table")
        versions_raw = data.get("versions", {})
        versions: dict[str, VersionOptions] = {"*": VersionOptions.model_validate(defaults)}
        for version, overrides in versions_raw.items():
            check_version(version)
            merged = {**defaults, **(overrides or {})}
            if "autoscaling" in defaults and "autoscaling" in (overrides or {}):
                merged["autoscaling"] = {**defaults["autoscaling"], **overrides["autoscaling"]}
            versions[version] = VersionOptions.model_validate(merged)
        rest = {k: v for k, v in data.items() if k not in ("defaults", "versions")}
        rest["model"] = model
        return ModelConfig.model_validate({**rest, "versions": versions})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{source}: {exc}") from exc


def load_model_config(path: Path | str) -> ModelConfig:
    return parse_model_config(read_toml(path, "model config"), str(path))
