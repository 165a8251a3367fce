"""The reliability suite under load, against a real local Ray Serve and a controller agent
(a real process): actions every few seconds at 50+ requests/s, a replica killed, the
controller killed with -9 in the middle of a rollout, and a 10x step in load that Serve's
autoscaling must absorb. Each prints its figures (requests sent, failed, what was lost) on a
line that starts with `[reliability]`; the README lists them."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from agent.client import AgentError
from console.app import TracksideConsole
from console.sources import LocalSource
from serve.model_store import ModelStore
from serve.registration import manifest_fields
from tests.agent_process import start_controller
from tests.integration.broken_model import register_flaky
from tests.load_helpers import FAST, LOOSE, steady_load, wait_for_rollout

pytestmark = pytest.mark.ray

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
# The version the load step is sent to. A digit takes a few ms, too little to keep requests in
# flight; a 50 ms batch wait makes each call last ~50 ms, so 5 requests/s keep ~0.25 in flight
# (one replica) and 50/s ~2.5: Serve adds replicas above one in flight each.
[versions.v3]
batch_wait_timeout_s = 0.05
[versions.v3.autoscaling]
min_replicas = 1
max_replicas = 4
target_ongoing_requests = 1
upscale_delay_s = 2
downscale_delay_s = 60
[router]
num_replicas = 1
timeout_s = 2.0
"""


VERSIONS = ("v2", "v3", "v4", "flaky")


def report(name: str, **figures) -> None:
    print(f"[reliability] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture(scope="module")
def controller(ray_cluster, demo_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reliability")
    store = ModelStore(tmp / "models")
    shutil.copytree(demo_store.root, store.root)
    v1 = store.version_dir("digits", "v1")
    m = demo_store.manifest("digits", "v1")
    for copy in ("v3", "v4"):  # v1's artifact again: a canary exactly as good as stable
        store.register(
            manifest_fields("digits", copy, v1 / m.artifact, v1 / "reference.parquet", m.metrics),
            v1 / m.artifact,
            v1 / "reference.parquet",
        )
    register_flaky(store, v1 / m.artifact, v1 / "reference.parquet", tmp)  # fails 5% of digits
    (tmp / "digits.toml").write_text(MODEL_TOML)
    agent, client = start_controller(tmp, ray_cluster, tmp / "digits.toml", store.root)
    for version in VERSIONS:
        client.deploy("digits", version, force=True)
    wait_running(client, {"v1", *VERSIONS})
    yield agent, client, ray_cluster
    client.close()
    if agent.proc is not None and agent.proc.poll() is None:
        agent.stop()


def wait_running(client, versions: set[str], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        states = {v.version: v.app_status for v in client.model("digits").versions}
        if all(states.get(v) == "RUNNING" for v in versions):
            return
        assert time.monotonic() < deadline, states
        time.sleep(1)


def reset(client, weights: dict[str, int] | None = None, fallback: str | None = None) -> None:
    try:  # a rollout a failed test left running would refuse every action
        if client.rollout("digits").state in ("running", "paused"):
            client.rollout_verb("digits", "abort")
    except AgentError:
        pass  # none yet
    if client.model("digits").stable != "v1":
        client.promote("digits", "v1")
    client.set_traffic("digits", weights or {"v1": 100}, fallback=fallback)


def test_actions_every_few_seconds_under_50_rps_fail_no_request(controller):
    _, client, cluster = controller
    reset(client)
    actions = itertools.cycle(
        [
            ("weights 50/50", lambda: client.set_traffic("digits", {"v1": 50, "v2": 50})),
            ("weights 90/10", lambda: client.set_traffic("digits", {"v1": 90, "v2": 10})),
            ("promote v2", lambda: client.promote("digits", "v2")),
            ("rollback", lambda: client.rollback("digits")),
            ("weights v1", lambda: client.set_traffic("digits", {"v1": 100})),
        ]
    )
    done, refused = 0, []
    with steady_load(cluster, rps=55) as load:
        time.sleep(3)  # the load is up before the first change
        end = time.monotonic() + 60
        while time.monotonic() < end:
            name, act = next(actions)
            try:
                act()
                done += 1
            except AgentError as exc:  # an action may be refused; a client request may not fail
                refused.append(f"{name}: {exc.message}")
            time.sleep(2.5)
    s = load["report"].summary()
    report(
        "actions under load",
        requests=s["requests"],
        rps=f"{s['rps']:.1f}",
        actions=done,
        refused=len(refused),
        failed=s["failed"],
        p99_ms=f"{s['p99_ms']:.0f}",
    )
    assert s["failed"] == 0, [r for r in load["report"].results if r.status != 200][:5]
    assert s["rps"] >= 50 and s["requests"] >= 50 * 60
    assert done >= 20 and not refused, refused
    reset(client)


def test_a_replica_killed_under_load_is_answered_by_the_fallback(controller):
    _, client, cluster = controller
    reset(client, {"v1": 100}, fallback="v2")
    (victim,) = [r for r in client.replicas().rows if (r.model, r.version) == ("digits", "v1")]
    with steady_load(cluster, rps=30) as load:
        time.sleep(5)
        killed_at = datetime.now(UTC)
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        replaced = []
        while not replaced:  # Serve starts another replica; its facts name a new process
            assert time.monotonic() < deadline, "no replacement replica"
            time.sleep(1)
            replaced = [
                r
                for r in client.replicas().rows
                if (r.model, r.version) == ("digits", "v1") and r.pid != victim.pid
            ]
        time.sleep(5)
    s = load["report"].summary()
    page = client.requests(model="digits", since=killed_at - timedelta(seconds=1), limit=1000)
    fallbacks = [r for r in page.rows if r.fallback_from == "v1"]
    events = client.serve_events(since=killed_at - timedelta(seconds=5), app="digits--v1")
    mine = [e for e in events if e.deployment == "ModelVersion"]
    seen = [e.replicas for e in mine]
    report(
        "replica killed",
        requests=s["requests"],
        failed=s["failed"],
        answered_by_fallback=len(fallbacks),
        serve_events=seen,
        replicas_stopped=sum(len(e.stopped) for e in mine),
        p99_ms=f"{s['p99_ms']:.0f}",
    )
    assert s["failed"] == 0
    # The event is in the controller's telemetry: the replica stopped (fewer than one RUNNING,
    # or, when Serve replaced it between two samples, another replica id), then one RUNNING.
    assert any(r.get("RUNNING", 0) < 1 for r in seen) or any(e.stopped for e in mine), mine
    assert mine and mine[-1].replicas.get("RUNNING") == 1, mine
    reset(client)


def test_the_controller_killed_mid_rollout_resumes_it_and_traffic_stays_defined(controller):
    agent, client, cluster = controller
    reset(client)
    with steady_load(cluster, rps=25) as load:
        policy = {**FAST, "min_dwell_s": 10}
        client.rollout_start("digits", "v2", steps=[30, 100], gates=LOOSE, **policy)
        before = client.model("digits").table
        agent.stop(signal.SIGKILL)  # no flush, no goodbye
        time.sleep(5)  # Serve keeps serving the table it has
        agent.start()
        after_restart = client.model("digits").table
        r = wait_for_rollout(client, {"done", "rolled_back", "paused"}, timeout_s=180)
    s = load["report"].summary()
    tables = {res.headers.get("x-route-version") for res in load["report"].results}
    report(
        "controller kill -9 mid-rollout",
        requests=s["requests"],
        failed=s["failed"],
        rollout=r.state,
        judgements=len(r.judgements),
        route_versions=len(tables),
    )
    assert s["failed"] == 0 and None not in tables  # every answer named its table
    assert after_restart.route_version >= before.route_version
    assert r.state == "done", r
    model = client.model("digits")
    assert model.stable == "v2" and model.table.weights == {"v2": 100}
    reset(client)


async def test_a_10x_step_in_load_is_absorbed_by_autoscaling(controller):
    agent, client, cluster = controller
    reset(client, {"v3": 100}, fallback="v1")

    def running() -> int:
        (v3,) = [v for v in client.model("digits").versions if v.version == "v3"]
        return v3.replicas.get("RUNNING", 0)

    scaled_after: float | None = None
    most = 1
    with steady_load(cluster, rps=5) as low:
        time.sleep(20)
    before = running()
    with steady_load(cluster, rps=50) as high:
        step = time.monotonic()
        while time.monotonic() - step < 45:
            now = running()
            most = max(most, now)
            if now > before and scaled_after is None:
                scaled_after = time.monotonic() - step
            time.sleep(1)
        assert scaled_after is not None, f"no replica added in 45 s at 50 requests/s ({most})"
        # What the operator sees: the Models screen shows the added replicas.
        app = TracksideConsole([LocalSource(agent.url, token=agent.token())], poll_interval_s=1)
        async with app.run_test(size=(200, 40)) as pilot:
            await pilot.press("m")
            deadline = time.monotonic() + 20
            while True:
                screen = app.screen
                shown = screen.screen_name == "models" and "digits/v3" in screen.rows
                cells = screen.query_one("#versions").get_row("digits/v3") if shown else []
                if any(
                    str(c).startswith("running:") and str(c) != f"running:{before}" for c in cells
                ):
                    break
                assert time.monotonic() < deadline, cells
                await pilot.pause(0.5)
    with steady_load(cluster, rps=5) as after:
        time.sleep(20)
    figures = {}
    for name, box in (("before", low), ("during", high), ("after", after)):
        s = box["report"].summary()
        figures[f"{name}_rps"] = f"{s['rps']:.0f}"
        figures[f"{name}_p99_ms"] = f"{s['p99_ms']:.0f}"
        figures[f"{name}_failed"] = s["failed"]
    report(
        "10x load step",
        time_to_scale_s=f"{scaled_after:.0f}" if scaled_after is not None else "never",
        replicas_before=before,
        replicas_max=most,
        **figures,
    )
    assert scaled_after is not None and before < most <= 4
    assert all(box["report"].summary()["failed"] == 0 for box in (low, high, after))
    reset(client)


def not_passing(r) -> list:
    """The rollout's last looks, the metrics that did not pass in each, printed in full too
    (pytest cuts a long assertion message in the middle, where the failing look is)."""
    looks = [
        (
            j.look,
            j.weight,
            j.verdict,
            [(m.metric, m.note) for m in j.metrics if m.verdict != "pass"],
        )
        for j in r.judgements[-3:]
    ]
    for look in looks:
        print("[not passing]", look)
    return looks


@pytest.mark.timeout(1200)  # the default policy's rollout takes minutes, and so may its wait
def test_the_default_policy_promotes_a_healthy_canary_at_50_rps(controller):
    """The issue's figure: 1% -> 100% in at most 5 minutes at 50 requests/s (the simulation
    says 210 s median); reported, not asserted (timings are noisy here), beside the walk."""
    _, client, cluster = controller
    reset(client)
    with steady_load(cluster, rps=50) as load:
        started = time.monotonic()
        client.rollout_start("digits", "v4")  # no overrides: the default policy and gates
        r = wait_for_rollout(client, {"done", "rolled_back", "paused"}, timeout_s=900)
        took = time.monotonic() - started
    s = load["report"].summary()
    report(
        "healthy canary, default policy",
        rps=f"{s['rps']:.0f}",
        rollout=r.state,
        seconds=f"{took:.0f}",
        looks=r.looks,
        failed=s["failed"],
    )
    assert r.state == "done", not_passing(r)
    assert [w for w in dict.fromkeys(j.weight for j in r.judgements)] == [0, 1, 5, 25, 50, 100]
    assert s["failed"] == 0
    reset(client)


def test_the_default_policy_rolls_back_a_canary_failing_5_percent_before_users_see_it(
    controller,
):
    """The issue's figure: rolled back within 30 s at 5 requests/s on the canary (here: 10/s
    in all, half of them copied to the canary in the shadow stage), no client error."""
    _, client, cluster = controller
    reset(client)
    with steady_load(cluster, rps=10) as load:
        started = time.monotonic()
        client.rollout_start("digits", "flaky")
        r = wait_for_rollout(client, {"done", "rolled_back", "paused"}, timeout_s=300)
        took = time.monotonic() - started
    s = load["report"].summary()
    served = {res.headers.get("x-model-version") for res in load["report"].results}
    report(
        "canary failing 5%, default policy",
        rps=f"{s['rps']:.0f}",
        rollout=r.state,
        seconds=f"{took:.0f}",
        looks=r.looks,
        failed=s["failed"],
        users_served_by_canary="flaky" in served,
    )
    assert r.state == "rolled_back" and "error_rate" in (r.reason or ""), not_passing(r)
    assert "shadow stage" in (r.reason or "") and "flaky" not in served  # no user saw it
    assert s["failed"] == 0
    reset(client)
