"""Alerts: each rule's state per model version (pending, firing), and the history of changes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from agent.schemas.common import UtcDatetime

AlertStateName = Literal["inactive", "pending", "firing"]
Change = Literal["pending", "firing", "resolved", "cleared"]


class AlertState(BaseModel):
    rule: str
    model: str
    version: str
    state: AlertStateName
    since: UtcDatetime  # when this state began
    value: float | None = None  # the latest measure
    threshold: float
    updated: UtcDatetime


class AlertEvent(BaseModel):
    ts: UtcDatetime
    rule: str
    model: str
    version: str
    change: Change
    value: float | None
    threshold: float
    message: str


class AlertsPage(BaseModel):
    firing: list[AlertState]
    pending: list[AlertState]
    history: list[AlertEvent]  # newest first
