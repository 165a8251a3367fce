"""The console's house rules, driven by Pilot on a recorded fleet: a screen's CSS stays on its
screen (every dialog keeps its size after every screen was visited), the `:` command line
runs the registry's actions with completion, and the Fleet row names the host's own
hostname."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from textual.containers import Horizontal, Vertical
from textual.widgets import Input

from console import actions
from console.app import SCREENS, HelpScreen, TracksideConsole
from console.screens.base import ConsoleScreen
from console.widgets.command_line import CommandLine, complete
from console.widgets.fleet_table import FleetTable
from console.widgets.modals import ConfirmTyped, ReplayForm, RolloutForm, TrafficForm
from scripts.bench.recorded_fleet import recorded_fleet
from tests.e2e.test_console import SIZE, sources, two_agents, until  # noqa: F401

SCREEN_KEYS = ("f", "m", "r", "d", "o", "l", "j", "a")


def recorded_app() -> TracksideConsole:
    return TracksideConsole([], poll_interval_s=3600)


def dialogs(app: TracksideConsole) -> list:
    model = app.state.models()[0]
    return [
        ConfirmTyped("Promote [b]digits/v2[/b]: 100% of traffic.", "v2"),
        TrafficForm(model),
        ReplayForm("digits", ["v1", "v2"], "v1", "req-1", ["req-1", "req-2"]),
        RolloutForm("digits", "v1", ["v2", "v3"]),
        CommandLine(app.state.models),
        HelpScreen(),
    ]


async def visit_every_screen(pilot) -> None:
    pilot.app.state.hosts = recorded_fleet(6, 2)
    for key in SCREEN_KEYS:
        await pilot.press(key)
        await pilot.pause()
    pilot.app.refresh_screen()
    await pilot.pause()


async def test_every_dialog_keeps_its_size_after_every_screen_was_visited():
    """drift.tcss and requests.tcss once set `Horizontal { height: 1fr }` for the whole app:
    then every dialog stretched to full height with a 30-row button row."""
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await visit_every_screen(pilot)
        for dialog in dialogs(app):
            await app.push_screen(dialog)
            await pilot.pause()
            for box in dialog.query(Vertical):
                # Sized by its fields, never stretched to the screen.
                assert box.region.height < SIZE[1] - 10, (type(dialog).__name__, box.region)
            for row in dialog.query(Horizontal):
                assert row.region.height <= 3, (type(dialog).__name__, row.region)
            dialog.dismiss(None)
            await pilot.pause()


@pytest.mark.parametrize("index", range(6), ids=lambda i: f"dialog-{i}")
def test_dialog_snapshot_after_every_screen(snap_compare, index):
    async def run_before(pilot) -> None:
        await visit_every_screen(pilot)
        await pilot.app.push_screen(dialogs(pilot.app)[index])
        await pilot.pause()

    assert snap_compare(recorded_app(), terminal_size=(120, 40), run_before=run_before)


def test_completion_comes_from_the_registry_and_the_controllers_models():
    models = recorded_fleet(1, 1)["gpu-00"].models
    assert complete("dr", models) == "drift"
    assert complete("drift d", models) == "drift digits"
    assert complete("promote digits v", models) == "promote digits v1"
    assert complete("promote digits v2", models) is None  # already whole
    assert complete("zzz", models) is None
    assert complete("fleet x", models) is None  # :fleet takes nothing


async def _command(pilot, app: TracksideConsole, text: str) -> None:
    await pilot.press("colon")
    await until(pilot, lambda: isinstance(app.screen, CommandLine))
    field = app.screen.query_one("#command", Input)
    field.value = text
    await pilot.press("enter")
    await pilot.pause()


async def test_the_command_line_runs_registry_actions_on_their_screens():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        app.state.hosts = recorded_fleet(2, 1)
        await _command(pilot, app, "models")
        assert isinstance(app.screen, ConsoleScreen) and app.screen.screen_name == "models"

        await _command(pilot, app, "drift digits v2")
        await until(pilot, lambda: getattr(app.screen, "screen_name", "") == "drift")
        assert (app.screen.model, app.screen.version) == ("digits", "v2")

        # A write action switches to its screen and asks to confirm, as its key does.
        await _command(pilot, app, "promote digits v2")
        await until(pilot, lambda: isinstance(app.screen, ConfirmTyped))
        assert app.screen.phrase == "v2"
        app.screen.dismiss(False)
        await pilot.pause()
        assert app.screen.screen_name == "models"

        # Tab completes the word under the cursor.
        await pilot.press("colon")
        await until(pilot, lambda: isinstance(app.screen, CommandLine))
        await pilot.press(*"aud", "tab")
        assert app.screen.query_one("#command", Input).value == "audit "
        await pilot.press("escape")
        await pilot.pause()

        await _command(pilot, app, "nonsense")
        assert not isinstance(app.screen, CommandLine)  # refused with a message, no crash


async def test_the_command_line_obeys_readonly():
    app = TracksideConsole([], readonly=True, poll_interval_s=3600)
    async with app.run_test(size=SIZE) as pilot:
        app.state.hosts = recorded_fleet(2, 1)
        await _command(pilot, app, "promote digits v2")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmTyped)
        assert "read-only" in " ".join(str(n.message) for n in app._notifications)


def test_every_command_word_names_a_registry_action_once():
    words = [a.word for a in actions.ACTIONS]
    assert len(words) == len(set(words))
    screens = {s.screen_name for s in SCREENS}
    assert {"fleet", "models", "requests", "drift", "rollout", "alerts", "jobs", "audit"} <= screens
    for a in actions.BY_WORD.values():
        assert a.target in {actions.APP, actions.ANY_SCREEN, *screens}


async def test_fleet_rows_name_each_hosts_own_hostname():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        fleet = recorded_fleet(2, 1)
        snap = fleet["gpu-00"]
        info = snap.info.model_copy(update={"hostname": "rack7-node3"})
        fleet["gpu-00"] = dataclasses.replace(snap, name="localhost", info=info)
        app.state.hosts = {"localhost": fleet["gpu-00"], "gpu-01": fleet["gpu-01"]}
        app.refresh_screen()
        await pilot.pause()
        table = app.screen.query_one(FleetTable)
        assert str(table.get_row("localhost")[0]) == "localhost (rack7-node3)"
        assert str(table.get_row("gpu-01")[0]) == "gpu-01"  # its hostname is its name


async def test_a_real_agents_hostname_is_shown(two_agents):  # noqa: F811
    a, _ = two_agents
    app = TracksideConsole(sources(a), poll_interval_s=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.hosts["host-0"].connected)
        app.refresh_screen()
        await pilot.pause()
        cell = str(app.screen.query_one(FleetTable).get_row("host-0")[0])
        assert cell == f"host-0 ({socket.gethostname()})"
