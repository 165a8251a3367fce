"""The rollout state machine, pure: a look every few seconds, a pass advances once the step has
lasted its dwell, a fail rolls back at once, a step undecided for step_wait_s counts as
marginal and then pauses, and pause/resume/abort obey the states."""

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
POLICY = RolloutPolicy(
    steps=[10, 50, 100], min_dwell_s=30, look_every_s=10, step_wait_s=60, max_marginal=1
)


def begin(policy: RolloutPolicy = POLICY) -> tuple[Rollout, object]:
    return start("digits", "v2", "v1", policy, T0, "oncall")


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_start_is_the_shadow_stage_and_looks_every_10_s():
    r, action = begin()
    assert action == SetWeight(0) and r.state == "running" and r.step == 0 and r.weight == 0
    assert POLICY.weights() == [0, 10, 50, 100]
    assert not due(r, later(9)) and due(r, later(10))
    assert begin(POLICY.model_copy(update={"shadow_stage": False}))[1] == SetWeight(10)


def test_a_pass_advances_once_the_step_has_lasted_its_dwell():
    r, _ = begin()
    r, action = judged(r, "pass", [], later(10))  # passing, but the step is 10 s old
    assert action is None and r.step == 0 and r.looks == 1 and due(r, later(20))
    r, action = judged(r, "pass", [], later(30))
    assert action == SetWeight(10) and r.step == 1 and r.step_started_at == later(30)
    r, action = judged(r, "pass", [], later(60))
    assert action == SetWeight(50)
    r, action = judged(r, "pass", [], later(90))
    assert action == SetWeight(100) and r.last_step
    r, action = judged(r, "pass", [], later(120))
    assert action == Promote("v2") and r.state == "done"
    assert [j.weight for j in r.judgements] == [0, 0, 10, 50, 100]
    assert [j.look for j in r.judgements] == [1, 2, 3, 4, 5]


def test_a_fail_rolls_back_at_the_first_look_that_shows_it():
    r, _ = begin()
    r, _ = judged(r, "pass", [], later(30))
    r, action = judged(r, "fail", [MetricVerdict(metric="error_rate", verdict="fail")], later(40))
    assert action == RollBack("v1") and r.state == "rolled_back"
    assert "error_rate" in r.reason and "10%" in r.reason


def test_an_undecided_step_counts_marginal_each_step_wait_then_pauses():
    r, _ = begin()
    for t in range(10, 60, 10):
        r, action = judged(r, "marginal", [], later(t))
        assert action is None and r.state == "running" and r.marginal == 0
    r, action = judged(r, "marginal", [], later(60))  # undecided for step_wait_s
    assert action is None and r.marginal == 1 and r.state == "running"
    r, action = judged(r, "pass", [], later(70))  # evidence came: on it goes
    assert action == SetWeight(10) and r.marginal == 0
    for t in range(80, 200, 10):
        r, action = judged(r, "marginal", [], later(t))
        if r.state == "paused":
            break
    assert r.state == "paused" and "undecided at 10%" in r.reason and t == 190
    r, action = resume(r, later(300))
    assert r.state == "running" and action == SetWeight(10) and due(r, later(310))


def test_pause_resume_abort_and_what_they_refuse():
    r, _ = begin()
    r, action = pause(r, later(10), "oncall")
    assert r.state == "paused" and action is None and not due(r, later(1000))
    with pytest.raises(RolloutError, match="paused"):
        pause(r, later(11), "oncall")
    r, action = resume(r, later(20))
    assert r.state == "running" and action == SetWeight(0)
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
    assert back == r and due(back, later(70)) and back.looks == 1


def test_the_policy_rejects_steps_that_do_not_rise_to_100():
    for steps in ([50, 10, 100], [10, 50], [0, 100], [10, 10, 100]):
        with pytest.raises(ValueError):
            RolloutPolicy(steps=steps)


def test_only_looks_past_the_dwell_spend_the_pass_budget():
    r, _ = begin()
    r, _ = judged(r, "marginal", [], later(10))
    r, _ = judged(r, "marginal", [], later(20))
    assert (r.looks, r.pass_looks) == (2, 0)  # a pass could not have advanced yet
    r, _ = judged(r, "marginal", [], later(30))
    assert (r.looks, r.pass_looks) == (3, 1)
    r, action = judged(r, "pass", [], later(40))
    assert action == SetWeight(10) and (r.looks, r.pass_looks) == (4, 2)
