"""Batch rules: the version a selector names, Ray's word on a job, cron schedules and the one
catch-up run after downtime."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from agent.batch_rules import due_slot, eta_s, resolve_version, stalled, state_of
from agent.errors import ApiError
from serve.cron import Cron
from serve.manifest import InputSchema, Manifest, OutputSchema


def manifest(version: str, day: int, **metrics: float) -> Manifest:
    return Manifest(
        model="m",
        version=version,
        artifact="model.onnx",
        sha256="0" * 64,
        size_bytes=1,
        created_at=datetime(2026, 1, day),
        input=InputSchema(tensor="X", features=["a"], shape=[None, 1]),
        output=OutputSchema(),
        metrics=metrics,
    )


VERSIONS = [
    manifest("v1", 1, accuracy=0.9, log_loss=0.3),
    manifest("v2", 2, accuracy=0.95, log_loss=0.4),
    manifest("v3", 3, accuracy=0.95),
    manifest("v4", 4),
]


def test_a_selector_names_the_stable_the_best_or_a_registered_version() -> None:
    assert resolve_version("stable", "v1", VERSIONS, {}) == "v1"
    assert resolve_version("v2", "v1", VERSIONS, {}) == "v2"
    assert resolve_version("best:accuracy", "v1", VERSIONS, {}) == "v3"  # a tie: the newest
    assert resolve_version("best:log_loss", "v1", VERSIONS, {}) == "v1"  # a loss: lower wins
    assert resolve_version("best:log_loss", "v1", VERSIONS, {"log_loss": True}) == "v2"
    with pytest.raises(ApiError, match="not registered"):
        resolve_version("v9", "v1", VERSIONS, {})
    with pytest.raises(ApiError, match="no registered version has the offline metric 'f1'"):
        resolve_version("best:f1", "v1", VERSIONS, {})
    with pytest.raises(ApiError, match="no stable version"):
        resolve_version("stable", None, VERSIONS, {})


def test_the_drivers_outcome_wins_over_rays_status() -> None:
    assert state_of("RUNNING", None) == "running"
    assert state_of("PENDING", None) == "running"
    assert state_of("STOPPED", None) == "cancelled"
    assert state_of("FAILED", None) == "failed"
    assert state_of("FAILED", "failed") == "failed"
    assert state_of("STOPPED", "succeeded") == "succeeded"
    assert state_of("SUCCEEDED", None) == "succeeded"


def test_a_job_that_reads_nothing_for_long_says_why_it_may_wait() -> None:
    assert stalled(0, 30) is None
    assert stalled(5, 600) is None
    note = stalled(0, 120)
    assert note is not None and "no row read in 120s" in note and "lack free CPU" in note


def test_rows_per_second_and_eta() -> None:
    assert eta_s(0, 100, 5.0) == (None, None)
    assert eta_s(50, 100, 5.0) == (10.0, 5.0)


def test_cron_fields() -> None:
    nightly = Cron.parse("30 0 * * *")
    assert nightly.latest_at_or_before(datetime(2026, 12, 1, 0, 29)) == datetime(
        2026, 11, 30, 0, 30
    )
    assert nightly.latest_at_or_before(datetime(2026, 12, 1, 0, 30, 59)) == datetime(
        2026, 12, 1, 0, 30
    )
    every_15 = Cron.parse("*/15 9-17 * * 1-5")  # office hours, Monday to Friday
    # 2026-12-05 is a Saturday: the last firing is Friday 17:45.
    assert every_15.latest_at_or_before(datetime(2026, 12, 5, 12, 0)) == datetime(
        2026, 12, 4, 17, 45
    )
    assert every_15.latest_at_or_before(datetime(2026, 12, 3, 9, 20)) == datetime(
        2026, 12, 3, 9, 15
    )
    sunday = Cron.parse("0 6 * * 7")
    assert sunday.latest_at_or_before(datetime(2026, 12, 8)) == datetime(2026, 12, 6, 6, 0)
    # Day and weekday both restricted: either matches (the first of the month, or a Monday).
    either = Cron.parse("0 0 1 * 1")
    assert either.latest_at_or_before(datetime(2026, 12, 1, 12)) == datetime(2026, 12, 1)
    assert either.latest_at_or_before(datetime(2026, 11, 30, 12)) == datetime(2026, 11, 30)
    assert either.latest_at_or_before(datetime(2026, 11, 29, 12)) == datetime(2026, 11, 23)
    assert Cron.parse("0 0 29 2 *").latest_at_or_before(datetime(2026, 12, 1)) is None
    # A day field starting with `*` counts as unrestricted (Vixie), so both must match: an odd
    # day that is a Monday (the 1st, odd, is a Tuesday; the 30th, a Monday, is even).
    odd_mondays = Cron.parse("0 0 */2 * 1")
    assert odd_mondays.latest_at_or_before(datetime(2026, 12, 1)) == datetime(2026, 11, 23)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("30 0 * *", "five fields"),
        ("60 0 * * *", "minute: '60' is outside 0-59"),
        ("*/0 * * * *", "step '0'"),
        ("a * * * *", "not a number"),
        ("5-1 * * * *", "outside"),
    ],
)
def test_bad_cron_says_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Cron.parse(text)


def test_missed_runs_collapse_into_one_and_never_run_twice() -> None:
    nightly = Cron.parse("30 0 * * *")
    last = datetime(2026, 11, 27, 0, 30)
    now = datetime(2026, 12, 1, 8, 0)  # down for four nights
    slot = due_slot(nightly, last, now)
    assert slot == datetime(2026, 12, 1, 0, 30)
    assert due_slot(nightly, slot, now) is None  # recorded: nothing more is owed
    assert due_slot(nightly, slot, now + timedelta(hours=16)) is None  # midnight
    assert due_slot(nightly, slot, now + timedelta(hours=17)) == datetime(2026, 12, 2, 0, 30)
