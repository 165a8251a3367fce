"""An alert rule's state for one model version (or host), as a pure function: the state and
the latest measure in, the next state and the change (if any) out. No I/O; agent/alerts.py
measures, keeps the states in DuckDB and runs the actions.

    inactive --breached--> pending --breached for `for_s`--> firing --not breached--> inactive
                           pending --not breached--> inactive (cleared: it never fired)
    no measure (too few calls, no labels): the state stays as it is
"""

from __future__ import annotations

from datetime import datetime

from agent.schemas.alerts import AlertState, Change
from serve.model_config import AlertRule, HostAlertRule

Rule = AlertRule | HostAlertRule


def breached(rule: Rule, value: float | None) -> bool | None:
    if value is None:
        return None
    return value < rule.threshold if rule.kind == "accuracy" else value > rule.threshold


def step(
    state: AlertState, rule: Rule, value: float | None, now: datetime
) -> tuple[AlertState, Change | None]:
    bad = breached(rule, value)
    seen = state.model_copy(update={"updated": now, "value": value})
    if bad is None:
        return state.model_copy(update={"updated": now}), None
    if state.state == "inactive":
        if not bad:
            return seen, None
        pending = seen.model_copy(update={"state": "pending", "since": now})
        return step_pending(pending, rule, now, first=True)
    if state.state == "pending":
        if not bad:
            return seen.model_copy(update={"state": "inactive", "since": now}), "cleared"
        return step_pending(seen, rule, now, first=False)
    if not bad:  # firing
        return seen.model_copy(update={"state": "inactive", "since": now}), "resolved"
    return seen, None


def step_pending(
    state: AlertState, rule: Rule, now: datetime, first: bool
) -> tuple[AlertState, Change | None]:
    if (now - state.since).total_seconds() >= rule.for_s:
        return state.model_copy(update={"state": "firing", "since": now}), "firing"
    return state, "pending" if first else None


def initial(
    rule: Rule, model: str, version: str, now: datetime, host: str | None = None
) -> AlertState:
    return AlertState(
        rule=rule.name,
        model=model,
        version=version,
        host=host,
        state="inactive",
        since=now,
        threshold=rule.threshold,
        updated=now,
    )
