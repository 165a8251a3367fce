"""The rollout's races, against a real Controller whose Serve is a stand-in (as in
test_controller_rules): an operator's abort or pause made while a tick is judging wins over
the tick's copy (a review found an aborted canary back at `running` with 50% of traffic), a
rollout is saved before its traffic moves, and one that cannot start is left aborted with
the reason, traffic on stable."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest

import agent.rollouts as rollouts_module
from agent.errors import ApiError
from agent.local_log import LocalRequestLog
from agent.rollouts import Rollouts
from agent.schemas.rollouts import Judgement, MetricVerdict
from tests.unit.test_controller_rules import FakeServe, controller

FAST = {"shadow_stage": False, "steps": [50, 100], "min_dwell_s": 0, "look_every_s": 1}


def rollouts_of(tmp_path, demo_store, fake: FakeServe) -> Rollouts:
    ctl = controller(tmp_path, demo_store, fake)
    return Rollouts(ctl.store, ctl, LocalRequestLog(ctl.store))


def make_due(ro: Rollouts) -> None:
    r = ro.get("digits")
    ro._save(r.model_copy(update={"judge_at": datetime.now(UTC) - timedelta(seconds=1)}))


class SlowJudge:
    """Stands in for judge_rollout: says `pass` (advance!), but only once released, so an
    operator's verb can land while it is judging."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, *args: object) -> Judgement:
        self.entered.set()
        assert self.release.wait(10)
        return Judgement(verdict="pass", metrics=[MetricVerdict(metric="x", verdict="pass")])


async def judging_while(ro: Rollouts, verb, monkeypatch) -> None:
    slow = SlowJudge()
    monkeypatch.setattr(rollouts_module, "judge_rollout", slow)
    make_due(ro)
    tick = asyncio.create_task(ro.tick())
    while not slow.entered.is_set():
        await asyncio.sleep(0.01)
    await verb()
    slow.release.set()
    await tick


@pytest.mark.parametrize("verb", ["abort", "pause"])
def test_an_operators_verb_during_a_judgement_wins(tmp_path, demo_store, monkeypatch, verb):
    ro = rollouts_of(tmp_path, demo_store, FakeServe())

    async def scenario() -> None:
        await ro.start("digits", "v2", FAST, "oncall")
        assert ro.ctl.state("digits").table.weights == {"v1": 50, "v2": 50}
        await judging_while(ro, lambda: getattr(ro, verb)("digits", "oncall"), monkeypatch)

    asyncio.run(scenario())
    r = ro.get("digits")
    assert r.state == ("aborted" if verb == "abort" else "paused") and r.step == 0
    weights = ro.ctl.state("digits").table.weights
    assert weights == ({"v1": 100} if verb == "abort" else {"v1": 50, "v2": 50})
    judged = ro.store.query("SELECT count(*) AS n FROM audit WHERE action = 'rollout_judge'")
    assert judged[0]["n"] == 0  # the stale judgement was dropped, not applied


def test_traffic_moved_by_hand_during_a_judgement_pauses_the_rollout(
    tmp_path, demo_store, monkeypatch
):
    from agent.schemas.models import TrafficRequest

    ro = rollouts_of(tmp_path, demo_store, FakeServe())

    async def scenario() -> None:
        await ro.start("digits", "v2", FAST, "oncall")
        by_hand = TrafficRequest(weights={"v1": 90, "v2": 10})
        await judging_while(ro, lambda: ro.ctl.set_traffic("digits", by_hand, "me"), monkeypatch)

    asyncio.run(scenario())
    r = ro.get("digits")
    assert r.state == "paused" and "changed outside the rollout" in r.reason
    assert ro.ctl.state("digits").table.weights == {"v1": 90, "v2": 10}  # the operator's


def test_a_rollout_is_saved_before_its_traffic_moves(tmp_path, demo_store, monkeypatch):
    ro = rollouts_of(tmp_path, demo_store, FakeServe())
    seen = []
    real = ro.ctl.set_traffic

    async def spy(*args, **kwargs):
        seen.append(ro.get("digits").state)  # what a crash right now would leave behind
        return await real(*args, **kwargs)

    monkeypatch.setattr(ro.ctl, "set_traffic", spy)
    asyncio.run(ro.start("digits", "v2", FAST, "oncall"))
    assert seen == ["running"]


def test_a_rollout_that_cannot_move_traffic_is_left_aborted_with_the_reason(tmp_path, demo_store):
    fake = FakeServe(put_status=500)
    ro = rollouts_of(tmp_path, demo_store, fake)
    with pytest.raises(ApiError) as info:
        asyncio.run(ro.start("digits", "v2", FAST, "oncall"))
    assert info.value.status == 502
    r = ro.get("digits")
    assert r.state == "aborted" and "could not start" in r.reason
    assert ro.ctl.state("digits").table.weights == {"v1": 100}
    (row,) = ro.store.query("SELECT result FROM audit WHERE action = 'rollout_start'")
    assert row["result"] == "refused"
