"""Alerts: each rule's state per model version or host (pending, firing), and the history of
changes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agent.schemas.common import UtcDatetime

AlertStateName = Literal["inactive", "pending", "firing"]
Change = Literal["pending", "firing", "resolved", "cleared"]


class _Subject(BaseModel):
    """A rule, and what it watches: one model version, or (a host rule's) one host."""

    rule: str
    model: str  # "" for a host rule
    version: str  # "" for a host rule
    host: str | None = None  # the host, for a host rule (configs/agent.toml)

    @property
    def subject(self) -> str:
        return self.host if self.host is not None else f"{self.model}/{self.version}"


class AlertState(_Subject):
    state: AlertStateName
    since: UtcDatetime  # when this state began
    value: float | None = None  # the latest measure
    threshold: float
    updated: UtcDatetime


class AlertEvent(_Subject):
    ts: UtcDatetime
    change: Change
    value: float | None
    threshold: float
    message: str


class AlertsPage(BaseModel):
    firing: list[AlertState]
    pending: list[AlertState]
    history: list[AlertEvent]  # newest first


class HostFacts(BaseModel):
    """What host alert rules measure on one host over a window (agent/host_facts.py)."""

    host: str
    gpus: int
    xid_errors: int = Field(description="critical XID events on the host's GPUs in the window")
    ecc_errors: int = Field(description="uncorrectable ECC errors counted in the window")
    throttled_share: float | None = Field(
        description="of the window's GPU samples, the share the hardware slowed; None: no GPU"
    )
    spool_drops: int = Field(description="request records the host's routers dropped")
