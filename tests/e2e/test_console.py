"""The console driven by Textual's Pilot against real agents on 127.0.0.1 (real DuckDB files),
and against a real local Ray Serve for model actions."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from textual.binding import Binding
from textual.widgets import Button, DataTable, Input, Select, Static

from console import actions
from console.app import HelpScreen, TracksideConsole
from console.sources import LocalSource
from console.widgets.fleet_table import FleetTable
from console.widgets.modals import (
    ConfirmTyped,
    ReplayForm,
    RolloutForm,
    TrafficChoice,
    TrafficForm,
)
from scripts.bench.recorded_fleet import recorded_fleet
from scripts.train_demo_models import FEATURES, split
from serve.model_store import ModelStore
from serve.spool import SpoolWriter
from tests.agent_process import AgentProcess, start_controller
from tests.records import make_record

SIZE = (200, 50)


async def until(pilot, condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await pilot.pause()
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def two_agents(tmp_path):
    a = AgentProcess(tmp_path / "a", interval=0.5).start()
    b = AgentProcess(tmp_path / "b", interval=0.5).start()
    yield a, b
    for agent in (a, b):
        if agent.proc and agent.proc.poll() is None:
            agent.stop()


def sources(*agents) -> list[LocalSource]:
    return [LocalSource(a.url, token=a.token(), name=f"host-{i}") for i, a in enumerate(agents)]


async def test_fleet_shows_every_host_and_one_going_away(two_agents):
    a, b = two_agents
    app = TracksideConsole(sources(a, b), poll_interval_s=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: all(s.connected for s in app.state.hosts.values()))
        await until(pilot, lambda: app.screen.query_one("#hosts", FleetTable).row_count == 2)
        summary = app.screen.query_one("#summary", Static)
        await until(pilot, lambda: "2/2 hosts connected" in str(summary.render()))
        b.stop(signal.SIGKILL)
        await until(pilot, lambda: not app.state.hosts["host-1"].connected)
        gone = app.state.hosts["host-1"]
        assert "did not answer" in gone.error and gone.retry_in_s
        before = app.state.hosts["host-0"].polled_at
        await until(pilot, lambda: app.state.hosts["host-0"].polled_at > before)
        table = app.screen.query_one("#hosts", FleetTable)

        def row() -> list[str]:
            return [str(c) for c in table.get_row("host-1")]

        # The table redraws on its own beat, not on each poll's message.
        await until(pilot, lambda: "down" in row()[1])
        assert "did not answer" in row()[app.screen.keys.index("throttle")]
        assert app.state.hosts["host-0"].connected and app.state.hosts["host-0"].poll_ms > 0


async def test_screens_say_what_the_agent_does_not_offer_yet(two_agents):
    a, _ = two_agents
    app = TracksideConsole(sources(a), poll_interval_s=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.hosts["host-0"].connected)
        await pilot.press("d")
        await until(pilot, lambda: app.screen.screen_name == "drift")
        # No controller here: the screen says so rather than showing nothing.
        assert "no controller" in str(app.screen.query_one("#drift-note", Static).render())
        assert app.check_action("drift_version", ()) is None
        await pilot.press("r")
        await until(pilot, lambda: app.screen.screen_name == "requests")
        note = str(app.screen.query_one("#replay-note", Static).render())
        assert "replay is disabled: no controller agent connected" in note
        assert app.check_action("replay", ()) is None  # greyed out
        await pilot.press("o")
        await until(pilot, lambda: app.screen.screen_name == "rollout")
        for name in ("rollout_start", "rollout_pause", "rollout_resume", "rollout_abort"):
            assert app.check_action(name, ()) is None


async def test_drift_replay_and_rollout_say_when_the_controller_does_not_offer_them():
    app = TracksideConsole([], poll_interval_s=3600)
    async with app.run_test(size=SIZE) as pilot:
        app.state.hosts = recorded_fleet(2, 1)  # its controller predates these endpoints
        for key, screen, note_id, says, greyed in [
            ("d", "drift", "#drift-note", "drift reports yet (no /v1/drift", ("drift_version",)),
            ("r", "requests", "#replay-note", "replay yet (no /v1/replay", ("replay",)),
            (
                "o",
                "rollout",
                "#rollout-note",
                "progressive rollouts yet (no /v1/rollouts",
                ("rollout_start", "rollout_pause", "rollout_resume", "rollout_abort"),
            ),
        ]:
            await pilot.press(key)
            await until(pilot, lambda screen=screen: app.screen.screen_name == screen)
            app.refresh_screen()
            await pilot.pause()
            note = str(app.screen.query_one(note_id, Static).render())
            assert f"does not offer {says}" in note
            for name in greyed:
                assert app.screen.check_action(name, ()) is None  # greyed out


async def test_text_from_clients_is_shown_as_text_never_as_markup(two_agents, tmp_path):
    """A client picks its x-request-id; an error may quote anything. Neither may style the
    console, or crash it with a stray closing tag."""
    a, _ = two_agents
    writer = SpoolWriter(a.data_dir / "spool", "test")
    writer.append(
        make_record(1, request_id="[/]evil[b]", status=503, error="[/] boom [red]x", version="v1")
    )
    writer.flush()
    app = TracksideConsole(sources(a), poll_interval_s=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.hosts["host-0"].connected)
        await pilot.press("r")
        screen = app.screen
        await until(pilot, lambda: any(r.request_id == "[/]evil[b]" for _, r in screen.rows))
        table = screen.query_one("#requests", DataTable)
        assert "[/]evil[b]" in [str(c) for c in table.get_row_at(0)]
        table.move_cursor(row=0)
        table.focus()
        detail = screen.query_one("#detail", Static)
        await until(pilot, lambda: "[/] boom [red]x" in str(detail.render()))


async def test_readonly_greys_out_every_write_action():
    app = TracksideConsole([], readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        app.state.hosts = recorded_fleet(4, 2)
        await pilot.press("m")
        await until(pilot, lambda: app.screen.screen_name == "models")
        for a in actions.ACTIONS:
            if a.writes and a.target == "models":
                assert app.screen.check_action(a.name, ()) is None, a.name
        await pilot.press("p")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmTyped)
        assert app.sub_title == "read-only"


def host_order(table: FleetTable) -> list[str]:
    return [key for key, _ in table.rows if "/" not in key]  # host rows, not their GPUs


async def test_fleet_sorts_by_a_clicked_header_and_filters_with_slash():
    app = TracksideConsole([], poll_interval_s=3600)
    async with app.run_test(size=SIZE) as pilot:
        fleet = recorded_fleet(6, 2)
        app.state.hosts = dict(fleet)
        app.refresh_screen()
        await pilot.pause()
        table = app.screen.query_one(FleetTable)
        assert host_order(table) == sorted(fleet)
        x = 0
        for key, _, width in table.columns:  # the CPU header's first column
            if key == "cpu":
                break
            x += width + 1
        await pilot.click(FleetTable, offset=(x + 1, 0))
        await until(pilot, lambda: host_order(table) != sorted(fleet))
        by_cpu = sorted(fleet, key=lambda n: -fleet[n].host["cpu_pct"])
        assert host_order(table) == by_cpu
        assert "sorted by cpu" in str(app.screen.query_one("#summary", Static).render())

        await pilot.press("slash")
        await pilot.press(*"gpu-03", "enter")
        await until(pilot, lambda: host_order(table) == ["gpu-03"])
        assert len(table.rows) == 3  # the host and its two GPUs
        assert table.has_focus  # back on the table after Enter
        await pilot.press("slash", "escape")
        await until(pilot, lambda: host_order(table) == by_cpu)


async def test_help_and_palette_come_from_the_one_registry():
    app = TracksideConsole([])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.query_one(DataTable).row_count == len(actions.ACTIONS)
        await pilot.press("escape")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {":fleet", ":models", ":audit", ":requests"} <= titles
        bound = {b.key for b in app.BINDINGS}
        for screen in app.console_screens.values():
            bound |= {b.key for b in screen.BINDINGS if isinstance(b, Binding)}
        assert {a.key for a in actions.ACTIONS} <= bound


async def test_traffic_form_validates_before_sending():
    app = TracksideConsole([])
    async with app.run_test(size=SIZE) as pilot:
        model = recorded_fleet(1, 1)["gpu-00"].models[0]
        results = []
        await app.push_screen(TrafficForm(model), results.append)
        form = app.screen
        form.query_one("#w-v1", Input).value = "80"
        form.query_one("#w-v2", Input).value = "30"
        form.query_one("#w-v3", Input).value = "0"
        form.query_one("#apply", Button).press()
        await pilot.pause()
        assert "sum to 110" in str(form.query_one("#error", Static).render())
        form.query_one("#w-v2", Input).value = "20"
        form.query_one("#shadow-version", Input).value = "v9"
        form.query_one("#apply", Button).press()
        await pilot.pause()
        assert "v9 is not deployed" in str(form.query_one("#error", Static).render())
        form.query_one("#shadow-version", Input).value = "v3"
        form.query_one("#apply", Button).press()
        await pilot.pause()
        assert results == [TrafficChoice({"v1": 80, "v2": 20}, ("v3", 0.05), "v1")]


MODEL_TOML = """
model = "digits"
stable = "v1"
[defaults]
num_cpus = 0.25
[defaults.autoscaling]
min_replicas = 1
max_replicas = 1
[versions.v1]
[versions.v2]
[router]
num_replicas = 1
"""


@pytest.fixture(scope="module")
def controller(ray_cluster, demo_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-controller")
    store = ModelStore(tmp / "models")
    shutil.copytree(demo_store.root, store.root)
    (tmp / "digits.toml").write_text(MODEL_TOML)
    roots = f'batch_roots = ["{tmp}"]\n'
    agent, client = start_controller(
        tmp, ray_cluster, tmp / "digits.toml", store.root, controller_lines=roots
    )
    client.deploy("digits", "v2")
    yield agent, client, ray_cluster
    client.close()
    agent.stop()


def served(cluster, n: int = 20) -> Counter:
    """Which versions answer n calls. Real held-out digits, not blank images: this traffic
    shares the drift test's window and must look like the reference sample."""
    url = f"{cluster.serve_url}/models/digits/predict"
    rows = split()[1]
    return Counter(
        httpx.post(url, json={"instances": [rows[i].tolist()]}, timeout=30).headers[
            "x-model-version"
        ]
        for i in range(n)
    )


async def _confirm(pilot, app, phrase: str) -> None:
    await until(pilot, lambda: isinstance(app.screen, ConfirmTyped))
    assert app.focused is app.screen.query_one("#no", Button)  # "No" has the focus
    assert app.screen.query_one("#yes", Button).disabled
    app.screen.query_one("#phrase", Input).value = phrase
    await pilot.pause()
    assert not app.screen.query_one("#yes", Button).disabled
    app.screen.query_one("#yes", Button).press()
    await pilot.pause()


@pytest.mark.ray
async def test_models_promote_rollback_and_a_rejected_action(controller):
    agent, client, cluster = controller
    app = TracksideConsole([LocalSource(agent.url, token=agent.token())], poll_interval_s=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await until(pilot, lambda: app.screen.query_one("#versions", DataTable).row_count == 2)
        table = app.screen.query_one("#versions", DataTable)
        assert [str(c) for c in table.get_row("digits/v1")][2] == "100%"
        result = app.screen.query_one("#result", Static)

        # Traffic through the form: 50/50 with a shadow, applied by the agent.
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TrafficForm))
        form = app.screen
        form.query_one("#w-v1", Input).value = "50"
        form.query_one("#w-v2", Input).value = "50"
        form.query_one("#shadow-version", Input).value = "v1"
        form.query_one("#shadow-fraction", Input).value = "0.2"
        form.query_one("#apply", Button).press()
        await until(pilot, lambda: "traffic digits" in str(result.render()), 60)
        assert re.search(r"v1=100 .*→ #\d+ v1=50 v2=50 shadow=v1:0.2", str(result.render()))
        model = client.model("digits")
        assert model.table.weights == {"v1": 50, "v2": 50}
        assert model.table.shadow.version == "v1" and model.table.shadow.fraction == 0.2
        await until(pilot, lambda: set(served(cluster)) == {"v1", "v2"}, 10)

        table.move_cursor(row=1)  # digits/v2
        await pilot.press("p")
        await _confirm(pilot, app, "v2")
        await until(pilot, lambda: "promote digits" in str(result.render()), 60)
        assert re.search(r"v1=50 v2=50 .*→ #\d+ v2=100", str(result.render()))
        # Every router replica switches within a second of the change.
        await until(pilot, lambda: set(served(cluster)) == {"v2"}, 10)

        # Retiring the stable version is refused by the agent: the console says why.
        await pilot.press("x")
        await _confirm(pilot, app, "v2")
        await until(pilot, lambda: "refused" in str(result.render()), 30)
        assert "still has traffic" in str(result.render())
        assert {v.version for v in client.model("digits").versions} == {"v1", "v2"}

        await pilot.press("b")
        await _confirm(pilot, app, "v1")
        await until(pilot, lambda: "rollback digits" in str(result.render()), 60)
        await until(pilot, lambda: set(served(cluster)) == {"v1"}, 10)

        await pilot.press("a")
        await until(pilot, lambda: app.screen.query_one("#audit", DataTable).row_count >= 3)
        actions_seen = [
            str(app.screen.query_one("#audit", DataTable).get_row_at(i)[3])
            for i in range(app.screen.query_one("#audit", DataTable).row_count)
        ]
        assert {"promote", "rollback", "retire"} <= set(actions_seen)


@pytest.mark.ray
async def test_drift_of_a_brightened_band_sent_through_the_router(controller):
    agent, client, cluster = controller
    _, held_out, _, _ = split()
    bright = held_out.copy()
    band = list(range(24, 32))  # px_3_0 … px_3_7: the fourth row of the 8x8 image
    bright[:, band] = np.minimum(bright[:, band] + 8, 16)
    url = f"{cluster.serve_url}/models/digits/predict"
    for start in range(0, len(bright), 15):  # 15 instances a request
        body = {"instances": bright[start : start + 15].tolist()}
        assert httpx.post(url, json=body, timeout=30).status_code == 200
    stable = client.model("digits").stable
    app = TracksideConsole([LocalSource(agent.url, token=agent.token())], poll_interval_s=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.offers("/v1/drift") and app.state.models())
        await pilot.press("d")
        table = app.screen.query_one("#features", DataTable)
        title = app.screen.query_one("#drift-title", Static)
        await until(pilot, lambda: table.row_count == 65, 60)  # 64 pixels + the prediction
        assert f"digits {stable}" in str(title.render())
        drifted = {
            str(table.get_row_at(i)[0])
            for i in range(table.row_count)
            if "yes" in str(table.get_row_at(i)[5])
        }
        assert {"px_3_2", "px_3_3", "px_3_4", "px_3_5"} <= drifted
        assert all(f.startswith("px_3_") or f == "prediction" for f in drifted), drifted
        histogram = app.screen.query_one("#histogram", Static)
        top = str(table.get_row_at(0)[0])
        await until(pilot, lambda: top in str(histogram.render()))
        assert "reference" in str(histogram.render())
        timeline = app.screen.query_one("#timeline", Static)
        assert "drift over time" in str(timeline.render())
        await pilot.press("w")  # the next window: 6 h
        await until(
            pilot,
            lambda: "last 6 h" in str(title.render()) and "loading" not in str(title.render()),
        )


@pytest.mark.ray
async def test_replay_a_logged_request_and_read_the_report(controller):
    agent, _, cluster = controller
    url = f"{cluster.serve_url}/models/digits/predict"
    row = split()[1][0].tolist()
    r = httpx.post(url, json={"instances": [row]}, headers={"x-request-id": "console-replay-1"})
    version = r.headers["x-model-version"]
    app = TracksideConsole([LocalSource(agent.url, token=agent.token())], poll_interval_s=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.offers("/v1/replay") and app.state.models())
        await pilot.press("r")
        screen = app.screen
        filters = screen.query_one("#filters", Input)
        filters.focus()
        filters.value = "role=primary"
        await pilot.press("enter")

        def listed() -> bool:
            return any(r.request_id == "console-replay-1" for _, r in screen.rows)

        await until(pilot, listed, 30)
        table = screen.query_one("#requests", DataTable)
        index = next(
            i for i, (_, r) in enumerate(screen.rows) if r.request_id == "console-replay-1"
        )
        table.move_cursor(row=index)
        table.focus()
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, ReplayForm))
        assert app.screen.query_one("#version", Select).value == version  # the one that answered
        app.screen.query_one("#replay", Button).press()
        report = screen.query_one("#replay-report", Static)
        await until(pilot, lambda: "1/1 done" in str(report.render()), 60)
        text = str(report.render())
        assert f"digits → {version}" in text and "same artifact 1/1" in text
        assert "label changed 0" in text and "failed 0" in text


@pytest.mark.ray
async def test_rollout_start_pause_resume_and_abort_from_the_console(controller):
    agent, client, _ = controller
    if "v2" not in {v.version for v in client.model("digits").versions}:
        client.deploy("digits", "v2")
    stable = client.model("digits").stable
    canary = "v2" if stable == "v1" else "v1"
    app = TracksideConsole([LocalSource(agent.url, token=agent.token())], poll_interval_s=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.offers("/v1/rollouts") and app.state.models())
        await pilot.press("o")
        title = app.screen.query_one("#rollout-title", Static)
        await until(
            pilot,
            lambda: "no rollout yet" in str(title.render()) or "rollout" in str(title.render()),
        )
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, RolloutForm))
        form = app.screen
        assert form.query_one("#canary", Select).value == canary
        form.query_one("#steps", Input).value = "10,50"  # does not reach 100
        form.query_one("#start", Button).press()
        await pilot.pause()
        assert "rising to 100" in str(form.query_one("#error", Static).render())
        form.query_one("#steps", Input).value = "10,100"
        form.query_one("#dwell", Input).value = "3600"
        form.query_one("#start", Button).press()
        await until(pilot, lambda: "running" in str(title.render()), 30)
        # First the shadow stage: no user sees the canary, copies of stable's calls reach it.
        assert "step 1/3: the shadow stage" in str(title.render())
        assert "can advance in 59m" in str(title.render())

        # The rollout is saved before its traffic moves (a crash between the two must leave
        # it judged), so the shadow reaches the routing table a moment after "running".
        def shadowed() -> bool:
            table = client.model("digits").table
            return table.shadow is not None and table.shadow.version == canary

        await until(pilot, shadowed, 30)
        assert client.model("digits").table.weights == {stable: 100}
        await until(pilot, lambda: "look 2 in" in str(title.render()), 30)
        evidence = app.screen.query_one("#judgement", DataTable)
        assert evidence.row_count >= 1  # the first look's metrics, with their intervals

        await pilot.press("z")
        await until(pilot, lambda: "paused" in str(title.render()), 30)
        await pilot.press("z")  # pausing twice: the agent's refusal is shown
        note = app.screen.query_one("#rollout-note", Static)
        await until(pilot, lambda: "refused" in str(note.render()), 30)
        assert "not running" in str(note.render())
        await pilot.press("u")
        await until(pilot, lambda: "running" in str(title.render()), 30)

        await pilot.press("k")
        await _confirm(pilot, app, canary)
        await until(pilot, lambda: "aborted" in str(title.render()), 30)
        assert client.model("digits").table.weights == {stable: 100}


@pytest.mark.ray
async def test_audit_jumps_to_an_instant_and_names_the_table_then_serving(controller):
    from datetime import UTC, datetime

    from tests.e2e.test_console_house import _command

    agent, client, _ = controller
    stable = client.model("digits").stable
    at = datetime.now(UTC).replace(microsecond=0)
    then = client.routing_history("digits", at=at).in_force
    assert then is not None
    app = TracksideConsole([LocalSource(agent.url, token=agent.token())], poll_interval_s=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.offers("/v1/routing/history"))
        await _command(pilot, app, f"audit digits {at.isoformat()}")
        await until(pilot, lambda: getattr(app.screen, "screen_name", "") == "audit")
        note = app.screen.query_one("#note", Static)
        await until(pilot, lambda: "serving then" in str(note.render()), 30)
        text = str(note.render())
        assert f"route #{then.route_version}" in text and stable in text
        shown = app.screen.query_one("#audit", DataTable)
        entries = app.screen.entries
        assert entries and all(e.ts <= at and e.model == "digits" for e in entries)
        assert shown.row_count == len(entries)


@pytest.mark.ray
async def test_jobs_screen_follows_a_batch_job_and_cancels_it(controller):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from agent.schemas.batch import BatchStart

    agent, client, _ = controller
    folder = Path(agent.data_dir).parent
    rows = np.tile(split()[1].astype(np.float32), (2200, 1))  # ~1M digits: seconds to watch
    pq.write_table(
        pa.table({n: rows[:, j] for j, n in enumerate(FEATURES)}),
        folder / "score-me.parquet",
        row_group_size=10_000,
    )
    job = client.batch_start(
        BatchStart(
            model="digits",
            version="v2",
            input=str(folder / "score-me.parquet"),
            output=str(folder / "scores"),
        )
    )
    app = TracksideConsole([LocalSource(agent.url, token=agent.token())], poll_interval_s=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.offers("/v1/batch-jobs"))
        await pilot.press("j")
        table = app.screen.query_one("#jobs", DataTable)
        await until(pilot, lambda: table.row_count >= 1, 30)
        detail = app.screen.query_one("#job-detail", Static)
        assert job.id in str(detail.render())
        await until(pilot, lambda: "running" in str(table.get_row_at(0)[2]), 30)
        await pilot.press("c")
        await _confirm(pilot, app, "digits")
        await until(pilot, lambda: "cancelled" in str(table.get_row_at(0)[2]), 60)
        note = app.screen.query_one("#jobs-note", Static)
        assert f"{job.id} cancelled" in str(note.render())
    assert client.batch_job(job.id).state == "cancelled"
    assert not (folder / "scores").exists()
