"""The rollout state machine, pure: steps advance on pass, a fail rolls back, a marginal
judgement watches the step again and then pauses, and pause/resume/abort obey the states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.rollout_machine import (
    Promote,
    RollBack,
    Rollout,
    RolloutError,
    SetWeight,
    abort,
    due,
    judged,
    pause,
    resume,
    start,
)
from agent.schemas.rollouts import MetricVerdict
from serve.model_config import RolloutPolicy

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = RolloutPolicy(steps=[10, 50, 100], step_wait_s=60, max_marginal=1)


def begin() -> tuple[Rollout, object]:
    return start("digits", "v2", "v1", POLICY, T0, "oncall")


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_start_sets_the_first_weight_and_waits_a_step():
    r, action = begin()
    assert action == SetWeight(10) and r.state == "running" and r.step == 0
    assert not due(r, later(59)) and due(r, later(60))


def test_passes_walk_the_steps_then_promote():
    r, _ = begin()
    r, action = judged(r, "pass", [], later(60))
    assert action == SetWeight(50) and r.step == 1 and r.step_started_at == later(60)
    r, action = judged(r, "pass", [], later(120))
    assert action == SetWeight(100) and r.step == 2
    r, action = judged(r, "pass", [], later(180))
    assert action == Promote("v2") and r.state == "done"
    assert [j.verdict for j in r.judgements] == ["pass"] * 3
    assert [j.weight for j in r.judgements] == [10, 50, 100]


def test_a_fail_rolls_back_at_once():
    r, _ = begin()
    r, _ = judged(r, "pass", [], later(60))
    r, action = judged(r, "fail", [MetricVerdict(metric="error_rate", verdict="fail")], later(120))
    assert action == RollBack("v1") and r.state == "rolled_back"
    assert "error_rate" in r.reason


def test_marginal_watches_the_step_again_then_pauses():
    r, _ = begin()
    r, action = judged(r, "marginal", [], later(60))
    assert action is None and r.state == "running" and r.step == 0
    assert r.step_started_at == T0  # the window keeps growing: more data, same step
    assert not due(r, later(100)) and due(r, later(120))
    r, action = judged(r, "marginal", [], later(120))
    assert action is None and r.state == "paused" and "marginal" in r.reason
    r, action = resume(r, later(300))
    assert r.state == "running" and action == SetWeight(10) and due(r, later(360))


def test_pause_resume_abort_and_what_they_refuse():
    r, _ = begin()
    r, action = pause(r, later(10), "oncall")
    assert r.state == "paused" and action is None and not due(r, later(1000))
    with pytest.raises(RolloutError, match="paused"):
        pause(r, later(11), "oncall")
    r, action = resume(r, later(20))
    assert r.state == "running" and action == SetWeight(10)
    r, action = abort(r, later(30), "oncall")
    assert r.state == "aborted" and action == RollBack("v1")
    for verb in (pause, abort):
        with pytest.raises(RolloutError, match="aborted"):
            verb(r, later(40), "oncall")
    with pytest.raises(RolloutError, match="aborted"):
        resume(r, later(40))


def test_a_rollout_survives_a_round_trip_through_json():
    r, _ = begin()
    r, _ = judged(r, "pass", [MetricVerdict(metric="latency", verdict="pass")], later(60))
    back = Rollout.model_validate_json(r.model_dump_json())
    assert back == r and due(back, later(120))


def test_the_policy_rejects_steps_that_do_not_rise_to_100():
    for steps in ([50, 10, 100], [10, 50], [0, 100], [10, 10, 100]):
        with pytest.raises(ValueError):
            RolloutPolicy(steps=steps)
