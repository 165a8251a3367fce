"""An alert rule's states, pure: pending once breached, firing after `for`, resolved when it
clears, cleared when it never fired, and no change without a measure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.alert_machine import initial, step
from agent.schemas.alerts import AlertState
from serve.model_config import AlertRule

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
RULE = AlertRule.model_validate(
    {"name": "errors", "kind": "error_rate", "threshold": 0.05, "for": 60}
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stored(state: AlertState) -> AlertState:
    """As DuckDB gives it back (JSON)."""
    return AlertState.model_validate(state.model_dump(mode="json"))


def test_breached_for_its_duration_fires_then_resolves():
    s = initial(RULE, "digits", "v2", T0)
    s, change = step(s, RULE, 0.10, at(0))
    assert (s.state, change) == ("pending", "pending")
    s, change = step(stored(s), RULE, 0.10, at(30))
    assert (s.state, change) == ("pending", None)
    s, change = step(s, RULE, 0.20, at(60))
    assert (s.state, change, s.value) == ("firing", "firing", 0.20)
    s, change = step(s, RULE, 0.20, at(90))
    assert (s.state, change) == ("firing", None)
    s, change = step(s, RULE, 0.01, at(120))
    assert (s.state, change) == ("inactive", "resolved")


def test_a_blip_is_cleared_without_firing():
    s, _ = step(initial(RULE, "digits", "v2", T0), RULE, 0.10, at(0))
    s, change = step(s, RULE, 0.01, at(10))
    assert (s.state, change) == ("inactive", "cleared")


def test_no_measure_changes_nothing_and_for_zero_fires_at_once():
    s, _ = step(initial(RULE, "digits", "v2", T0), RULE, 0.10, at(0))
    held, change = step(s, RULE, None, at(120))  # too few calls to tell
    assert (held.state, change, held.since) == ("pending", None, s.since)
    now = RULE.model_copy(update={"for_s": 0})
    s, change = step(initial(now, "digits", "v2", T0), now, 0.10, at(0))
    assert (s.state, change) == ("firing", "firing")


def test_accuracy_alerts_below_its_threshold():
    rule = AlertRule.model_validate({"name": "acc", "kind": "accuracy", "threshold": 0.9, "for": 0})
    s, change = step(initial(rule, "digits", "v2", T0), rule, 0.95, at(0))
    assert change is None
    s, change = step(s, rule, 0.80, at(10))
    assert (s.state, change) == ("firing", "firing")
