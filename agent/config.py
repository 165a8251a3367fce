"""The agent's settings (`configs/agent.toml`); every one has a default that works on one host."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.defaults import DATA_DIR, DEFAULT_HOST, DEFAULT_PORT
from serve.config_file import load_toml
from serve.model_config import HostAlertRule

MIN_INTERVAL_S = 0.25


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiSettings(_Strict):
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)


class CollectSettings(_Strict):
    interval_s: float = 1.0
    ingest_interval_s: float = Field(1.0, gt=0, le=1.0)
    # Samples are written to DuckDB together: a commit costs ~1.5-3 ms of CPU, more than
    # taking the sample, so one per sample would be most of an idle agent's cost.
    write_interval_s: float = Field(2.0, ge=0.25, le=10.0)

    @field_validator("interval_s")
    @classmethod
    def _floor(cls, value: float) -> float:
        if value < MIN_INTERVAL_S:
            raise ValueError(f"interval_s must be at least {MIN_INTERVAL_S}")
        return value


class RetentionSettings(_Strict):
    raw_hours: float = Field(24, gt=0, description="raw telemetry samples kept this long")
    rollup_step_s: int = Field(60, ge=10, description="downsampled aggregates step")
    rollup_days: float = Field(30, gt=0)
    requests_days: float = Field(7, gt=0)
    summary_days: float = Field(30, gt=0, description="per-minute summaries of the log")
    every_s: float = Field(300, gt=0, description="how often retention runs")


class DuckDBSettings(_Strict):
    """DuckDB's own defaults (a thread per core, 80% of RAM) suit an analytics box, not a
    daemon sharing a GPU host with the models it watches."""

    threads: int = Field(2, ge=1, le=64)
    memory_limit: str = Field("512MB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$")


class ModelStoreSettings(_Strict):
    """The model store (versions, manifests, reference samples): the same folder the Serve
    replicas on this host load artifacts from."""

    path: Path | None = None  # default <data_dir>/models


class ControllerSettings(_Strict):
    """The controller role (the agent on the Ray head host)."""

    enabled: bool = False
    dashboard: str = "http://127.0.0.1:8265"
    serve_port: int = 8000
    models: list[Path] = Field(default_factory=lambda: [Path("configs/models/digits.toml")])
    apply_timeout_s: float = Field(120, gt=0)
    # How long an action waits for a version Serve is redeploying before refusing.
    settle_s: float = Field(15, ge=0, le=600)
    # How often the models' [[alerts]] rules and these host rules are evaluated.
    alert_interval_s: float = Field(15, ge=1, le=3600)
    alerts: list[HostAlertRule] = Field(default_factory=list)
    # The folders batch jobs may read their input from and write their output to (on the
    # head node, or storage every node shares). None by default: a token's holder must not be
    # able to have the cluster read or write any file the agent's user can.
    batch_roots: list[Path] = Field(default_factory=list)

    @field_validator("alerts")
    @classmethod
    def _unique(cls, rules: list[HostAlertRule]) -> list[HostAlertRule]:
        names = [r.name for r in rules]
        if len(names) != len(set(names)):
            raise ValueError(f"host alert rule names must be unique: {names}")
        return rules


class FleetSettings(_Strict):
    """Which agents make the fleet, for the controller's fleet-wide reads, and the token they
    know the controller by (the same file, mode 0600, on every host)."""

    file: Path | None = None  # a fleet file (configs/fleet.toml): its hosts' agents
    from_ray: bool = False  # else the Ray cluster's alive nodes, each at agent_port
    agent_port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    token_file: Path | None = None  # default <data_dir>/fleet.token
    deadline_s: float = Field(2.0, gt=0, le=60)
    host: str | None = None  # this agent's name in the fleet (default: its hostname)
    refresh_s: float = Field(30, gt=0)  # how often Ray's node list is read again


class AgentConfig(_Strict):
    data_dir: Path = DATA_DIR
    token_file: Path | None = None  # default <data_dir>/agent.token
    spool_dir: Path | None = None  # default <data_dir>/spool
    api: ApiSettings = Field(default_factory=ApiSettings)
    collect: CollectSettings = Field(default_factory=CollectSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    duckdb: DuckDBSettings = Field(default_factory=DuckDBSettings)
    model_store: ModelStoreSettings = Field(default_factory=ModelStoreSettings)
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "agent.duckdb"

    @property
    def token_path(self) -> Path:
        return self.token_file or self.data_dir / "agent.token"

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or self.data_dir / "spool"

    @property
    def fleet_token_path(self) -> Path:
        return self.fleet.token_file or self.data_dir / "fleet.token"

    @property
    def store_path(self) -> Path:
        return self.model_store.path or self.data_dir / "models"


def load_agent_config(path: Path | None) -> AgentConfig:
    return AgentConfig() if path is None else load_toml(path, AgentConfig, "agent config")
