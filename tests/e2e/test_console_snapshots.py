"""SVG snapshots of the main screens on a recorded fleet (the same data every run), at the
size of a laptop terminal (160x40) and at 80x24."""

from __future__ import annotations

from console.app import TracksideConsole
from scripts.bench.recorded_fleet import batch_jobs, recorded_fleet


def app_with_fleet() -> TracksideConsole:
    return TracksideConsole([], poll_interval_s=3600)


async def fill(pilot) -> None:
    pilot.app.state.hosts = recorded_fleet(6, 2)
    pilot.app.refresh_screen()
    await pilot.pause()


async def models(pilot) -> None:
    await fill(pilot)
    await pilot.press("m")
    await pilot.pause()
    pilot.app.refresh_screen()
    await pilot.pause()


def test_fleet(snap_compare):
    assert snap_compare(app_with_fleet(), terminal_size=(160, 40), run_before=fill)


def test_fleet_at_80x24(snap_compare):
    assert snap_compare(app_with_fleet(), terminal_size=(80, 24), run_before=fill)


def test_models(snap_compare):
    assert snap_compare(app_with_fleet(), terminal_size=(160, 40), run_before=models)


def test_models_at_80x24(snap_compare):
    assert snap_compare(app_with_fleet(), terminal_size=(80, 24), run_before=models)


async def alerts(pilot) -> None:
    await fill(pilot)
    await pilot.press("l")
    await pilot.pause()
    pilot.app.refresh_screen()
    await pilot.pause()


def test_alerts_and_the_banner(snap_compare):
    """A firing alert is in every screen's header; the Alerts screen lists it, the pending
    one and the history."""
    assert snap_compare(app_with_fleet(), terminal_size=(160, 40), run_before=alerts)


async def jobs(pilot) -> None:
    from console.screens.jobs import JobsLoaded

    await fill(pilot)
    await pilot.press("j")
    await pilot.pause()
    pilot.app.screen.post_message(JobsLoaded(batch_jobs(), None))
    await pilot.pause()
    await pilot.press("down")  # the finished job: its phases and drift below
    await pilot.pause()


def test_jobs(snap_compare):
    """Batch jobs: one running (progress, rate, ETA), one done with rows set aside and drift
    (selected: its details below), one failed with the reason."""
    assert snap_compare(app_with_fleet(), terminal_size=(160, 40), run_before=jobs)
