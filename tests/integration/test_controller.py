"""The agent's controller role against a real local Ray Serve with digits v1 and v2: deploy
(with the blessing check), traffic, promote and rollback through the API and the CLI, what
the router then serves, refusals (409/422), a failed apply, and the audit trail."""

from __future__ import annotations

import concurrent.futures
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agent.client import AgentError
from scripts.train_demo_models import split
from serve.model_store import ModelStore
from serve.registration import manifest_fields
from tests.agent_process import start_controller
from tests.integration.broken_model import register_broken
from tests.load_helpers import FAST, LOOSE, advanced_through, steady_load, wait_for_rollout

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
[versions.v3]
accelerator = "gpu"
num_gpus = 0.5
[versions.tampered]
[router]
num_replicas = 1
timeout_s = 2.0
[blessing.log_loss]
higher_is_better = false
tolerance = 0.1
"""


@pytest.fixture(scope="module")
def controller(ray_cluster, demo_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("controller")
    store = ModelStore(tmp / "models")
    shutil.copytree(demo_store.root, store.root)
    v1 = store.version_dir("digits", "v1")
    fields = manifest_fields(
        "digits",
        "v3",
        v1 / "digits-v1.onnx",
        v1 / "reference.parquet",
        metrics=demo_store.manifest("digits", "v1").metrics,
    )
    store.register(fields, v1 / "digits-v1.onnx", v1 / "reference.parquet")
    register_broken(store, v1 / "reference.parquet", tmp)  # raises on every call
    register_tampered(store, v1)
    (tmp / "digits.toml").write_text(MODEL_TOML)
    agent, client = start_controller(tmp, ray_cluster, tmp / "digits.toml", store.root)
    yield agent, client, ray_cluster
    client.close()
    agent.stop()


def register_tampered(store: ModelStore, v1: Path) -> None:
    """v1's artifact under a manifest whose answers at registration are not what it answers:
    as if the artifact had been swapped, or development ran another runtime."""
    fields = manifest_fields("digits", "tampered", v1 / "digits-v1.onnx", v1 / "reference.parquet")
    manifest = store.register(fields, v1 / "digits-v1.onnx", v1 / "reference.parquet")
    assert manifest.expected is not None
    predictions = [dict(p) for p in manifest.expected.predictions]
    predictions[0]["label"] = (predictions[0]["label"] + 1) % 10
    expected = manifest.expected.model_copy(update={"predictions": predictions})
    path = store.version_dir("digits", "tampered") / "manifest.json"
    path.write_text(manifest.model_copy(update={"expected": expected}).model_dump_json(indent=2))


def _agent_of(controller):
    return controller[0]


def served(cluster, n: int = 30) -> Counter:
    url = f"{cluster.serve_url}/models/digits/predict"
    body = {"instances": [[0.0] * 64]}
    return Counter(
        httpx.post(url, json=body, timeout=30).headers["x-model-version"] for _ in range(n)
    )


def cli(agent, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "console.cli",
            *args,
            "--agent",
            agent.url,
            "--token",
            agent.token(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bootstrap_serves_the_stable_version(controller):
    _, client, cluster = controller
    (model,) = client.models()
    assert model.stable == "v1" and model.table.weights == {"v1": 100}
    assert set(served(cluster, 10)) == {"v1"}


def test_deploy_refuses_an_unblessed_version_unless_forced(controller):
    _, client, _ = controller
    with pytest.raises(AgentError) as info:
        client.deploy("digits", "v2")
    assert info.value.status == 409
    assert "log_loss" in info.value.message and "force" in info.value.message
    result = client.deploy("digits", "v2", force=True)
    assert result.changed and "deployed digits/v2" in result.message
    (model,) = client.models()
    assert {v.version for v in model.versions} == {"v1", "v2"}


def test_a_version_that_answers_unlike_at_registration_gets_no_traffic(controller):
    _, client, _ = controller
    ok = client.deploy("digits", "v2", force=True)  # already there: checked again
    assert "16 reference rows answered as at registration" in ok.message, ok.message
    result = client.deploy("digits", "tampered", force=True)
    assert "does not answer as at registration" in result.message
    assert "1 of 16 labels differ" in result.message, result.message
    for attempt in (
        lambda: client.set_traffic("digits", {"v1": 90, "tampered": 10}),
        lambda: client.promote("digits", "tampered"),
        lambda: client.rollout_start("digits", "tampered"),
    ):
        with pytest.raises(AgentError) as info:
            attempt()
        assert info.value.status == 409 and "does not answer as it did at registration" in (
            info.value.message
        )
    (version,) = [v for v in client.model("digits").versions if v.version == "tampered"]
    assert "answers unlike at registration" in (version.problem or "")
    checks = [e for e in client.audit(limit=50) if e.action == "check_answers"]
    assert {e.result for e in checks} >= {"ok", "refused"}
    client.retire("digits", "tampered")


def test_bad_actions_get_a_4xx_and_change_nothing(controller):
    agent, client, _ = controller
    before = client.model("digits").table
    # Strict bodies: `[false]` is not a number.
    r = httpx.put(
        f"{agent.url}/v1/models/digits/traffic",
        json={"weights": {"v1": [False]}},
        headers={"Authorization": f"Bearer {agent.token()}"},
    )
    assert r.status_code == 422 and "weights" in r.json()["detail"]
    # 422: the body is wrong; 404: no such thing; 409: not in this state.
    cases = [
        (lambda: client.set_traffic("digits", {"v1": 90, "v2": 20}), 422, "sum to 110"),
        (lambda: client.set_traffic("digits", {"v1": 90, "v9": 10}), 409, "not deployed"),
        (lambda: client.promote("digits", "v9"), 409, "not deployed"),
        (lambda: client.deploy("digits", "v9"), 404, "unknown version"),
        (lambda: client.rollback("digits"), 409, "no previous stable"),
        (lambda: client.promote("digits", "V9"), 422, "not allowed"),
    ]
    for call, status, needle in cases:
        with pytest.raises(AgentError) as info:
            call()
        assert info.value.status == status, info.value.message
        assert needle in info.value.message
    assert client.model("digits").table == before


def test_a_failed_apply_leaves_the_old_table_in_force(controller):
    _, client, cluster = controller
    before = client.model("digits").table
    with pytest.raises(AgentError) as info:
        client.deploy("digits", "v3", force=True)  # wants a GPU; this cluster has none
    assert info.value.status == 502
    assert "needs GPU 0.5, cluster has none" in info.value.message
    assert "still in force" in info.value.message
    model = client.model("digits")
    assert model.table == before and "v3" not in {v.version for v in model.versions}
    assert set(served(cluster, 10)) == {"v1"}


def test_concurrent_actions_on_one_model_get_409(controller):
    _, client, _ = controller
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(client.set_traffic, "digits", {"v1": 90, "v2": 10}),
            pool.submit(client.set_traffic, "digits", {"v1": 80, "v2": 20}),
        ]
        outcomes = []
        for f in futures:
            try:
                outcomes.append(f.result().changed)
            except AgentError as exc:
                outcomes.append(exc.status)
    assert 409 in outcomes and True in outcomes, outcomes


def test_traffic_promote_and_rollback_change_what_the_router_serves(controller):
    agent, client, cluster = controller
    out = cli(agent, "traffic", "digits", "v1=50", "v2=50")
    assert out.returncode == 0, out.stderr
    assert "after:" in out.stdout and "v2=50" in out.stdout
    time.sleep(1.5)
    assert set(served(cluster, 30)) == {"v1", "v2"}

    out = cli(agent, "promote", "digits", "v2")
    assert out.returncode == 0, out.stderr
    time.sleep(1.5)
    assert set(served(cluster)) == {"v2"}
    model = client.model("digits")
    assert model.stable == "v2" and model.previous_stable[-1] == "v1"

    result = client.rollback("digits")
    assert result.after.weights == {"v1": 100}
    time.sleep(1.5)
    assert set(served(cluster)) == {"v1"}

    out = cli(agent, "audit")
    assert out.returncode == 0
    actions = [(e.action, e.result) for e in client.audit()]
    assert ("promote", "ok") in actions and ("rollback", "ok") in actions
    assert ("deploy", "refused") in actions and ("deploy", "failed") in actions
    promote = next(e for e in client.audit() if e.action == "promote")
    assert promote.before.weights == {"v1": 50, "v2": 50}
    assert promote.after.weights == {"v2": 100}
    assert promote.who  # the CLI passes the local user


def test_retire_is_refused_while_a_version_has_traffic(controller):
    _, client, _ = controller
    with pytest.raises(AgentError) as info:
        client.retire("digits", "v1")
    assert info.value.status == 409 and "still has traffic" in info.value.message
    result = client.retire("digits", "v2")
    assert result.changed
    assert {v.version for v in client.model("digits").versions} == {"v1"}


def test_status_cli_shows_versions(controller):
    agent, _, _ = controller
    out = cli(agent, "status")
    assert out.returncode == 0, out.stderr
    assert "digits" in out.stdout and "v1" in out.stdout and "RUNNING" in out.stdout


def _wait_for_replay(client, job_id: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while True:
        report = client.replay_report(job_id)
        if report.state != "running":
            return report
        assert time.monotonic() < deadline, report
        time.sleep(0.5)


def test_replay_reproduces_predictions_and_compares_versions(controller, capsys):
    _, client, cluster = controller
    _, held_out, _, _ = split()
    url = f"{cluster.serve_url}/models/digits/predict"
    served_by = {}
    for i, row in enumerate(held_out[:40].tolist()):
        r = httpx.post(url, json={"instances": [row]}, headers={"x-request-id": f"rp-{i}"})
        assert r.status_code == 200
        served_by[f"rp-{i}"] = r.headers["x-model-version"]
    version = Counter(served_by.values()).most_common(1)[0][0]
    ids = [rid for rid, v in served_by.items() if v == version]
    deadline = time.monotonic() + 30
    while not set(ids) <= {r.request_id for r in client.requests(model="digits", limit=1000).rows}:
        assert time.monotonic() < deadline, "the requests were not ingested"
        time.sleep(0.3)

    same = _wait_for_replay(client, client.replay("digits", version, ids).id)
    assert same.state == "done" and same.done == same.total == len(ids)
    assert same.counts["identical"] + same.counts["within_tolerance"] == len(ids), same.counts
    assert same.same_artifact == len(ids)  # the same bytes answered, by sha256
    assert same.max_abs_diff is None or same.max_abs_diff <= 1e-6

    other = "v2" if version == "v1" else "v1"
    if other not in {v.version for v in client.model("digits").versions}:
        client.deploy("digits", other, force=True)  # an earlier test retired it
    versus = _wait_for_replay(client, client.replay("digits", other, ids).id)
    assert versus.counts["failed"] == 0 and versus.same_artifact == 0
    direct = f"{cluster.serve_url}/models/digits/versions/{other}"
    for item in versus.items[:5]:
        row = held_out[int(item.request_id.split("-")[1])].tolist()
        answer = httpx.post(direct, json={"instances": [row]}, timeout=30).json()
        assert item.replay_labels == [p["label"] for p in answer["predictions"]]

    with capsys.disabled():
        print(
            f"\n[replay] {len(ids)} calls: against {version} {same.counts},"
            f" max |diff| {same.max_abs_diff}; against {other} {versus.counts}"
        )
    # The replays are in the log as role replay, paired to the calls they reproduce.
    deadline = time.monotonic() + 30
    while len(client.requests(model="digits", role="replay", limit=1000).rows) < 2 * len(ids):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    replays = client.requests(model="digits", role="replay", limit=1000).rows
    assert {r.primary_request_id for r in replays} >= set(ids)
    assert {r.version for r in replays} == {version, other}
    assert [r.id for r in client.replays()][:2] == [versus.id, same.id]

    out = cli(_agent_of(controller), "replay", "digits", version, ids[0])
    assert out.returncode == 0, out.stderr
    assert "1/1 done" in out.stdout and "same artifact 1/1" in out.stdout


def test_replay_refuses_unknown_requests_and_undeployed_versions(controller):
    _, client, _ = controller
    with pytest.raises(AgentError) as info:
        client.replay("digits", "v1", ["no-such-request"])
    assert info.value.status == 404 and "not in the request log" in info.value.message
    with pytest.raises(AgentError) as info:
        client.replay("digits", "v3", ["rp-0"])
    assert info.value.status == 409 and "no deployed version 'v3'" in info.value.message
    with pytest.raises(AgentError) as info:
        client.replay_report("nope")
    assert info.value.status == 404


def _ensure(client, stable: str, other: str) -> None:
    versions = {v.version for v in client.model("digits").versions}
    if other not in versions:
        client.deploy("digits", other, force=True)
    if client.model("digits").stable != stable:
        client.promote("digits", stable)


def test_a_rollout_walks_its_steps_and_promotes_the_canary(controller):
    _, client, cluster = controller
    _ensure(client, "v1", "v2")
    with steady_load(cluster) as load:
        started = client.rollout_start("digits", "v2", steps=[50, 100], gates=LOOSE, **FAST)
        # The shadow stage first: no user sees v2, half of v1's calls are copied to it.
        table = client.model("digits").table
        assert started.state == "running" and table.weights == {"v1": 100}
        assert table.shadow is not None and table.shadow.version == "v2"
        with pytest.raises(AgentError) as info:  # one rollout per model at a time
            client.rollout_start("digits", "v2")
        assert info.value.status == 409
        done = wait_for_rollout(client, {"done", "rolled_back", "paused"})
    assert done.state == "done", done
    assert advanced_through(done) == [0, 50, 100]
    assert done.judgements[-1].verdict == "pass"
    assert all(j.verdict != "fail" for j in done.judgements)
    metrics = {m.metric: m for m in done.judgements[-1].metrics}
    assert metrics["disagreement"].high is not None  # the evidence's numbers are kept
    model = client.model("digits")
    assert model.stable == "v2" and model.table.weights == {"v2": 100}
    assert load["report"].summary()["failed"] == 0
    actions = [(e.action, e.who) for e in client.audit(limit=50)]
    assert ("rollout_judge", "rollout") in actions
    assert any(a == "traffic" and w.startswith("rollout (") for a, w in actions)


def test_a_failing_canary_is_rolled_back_and_clients_never_see_it(controller):
    _, client, cluster = controller
    _ensure(client, "v1", "broken")
    with steady_load(cluster) as load:
        client.rollout_start("digits", "broken", steps=[20, 100], gates=LOOSE, **FAST)
        r = wait_for_rollout(client, {"done", "rolled_back", "paused"})
    # Failed on the copies of stable's calls, before any user was sent to it.
    assert r.state == "rolled_back" and "error_rate" in r.reason, r
    assert advanced_through(r) == [0] and "shadow stage" in r.reason
    assert client.model("digits").table.weights == {"v1": 100}
    assert client.model("digits").stable == "v1"
    assert load["report"].summary()["failed"] == 0  # the router's fallback answered


def test_pause_resume_and_abort_through_the_api(controller):
    _, client, _ = controller
    _ensure(client, "v1", "v2")
    client.rollout_start(
        "digits", "v2", steps=[10, 100], shadow_stage=False, min_dwell_s=3600, gates=LOOSE
    )
    paused = client.rollout_verb("digits", "pause")
    assert paused.state == "paused" and "paused by" in paused.reason
    with pytest.raises(AgentError) as info:
        client.rollout_verb("digits", "pause")
    assert info.value.status == 409 and "not running" in info.value.message
    out = cli(_agent_of(controller), "rollout", "resume", "digits")
    assert out.returncode == 0, out.stderr
    assert "running" in out.stdout and "[10%] -> 100%" in out.stdout
    aborted = client.rollout_verb("digits", "abort")
    assert aborted.state == "aborted"
    assert client.model("digits").table.weights == {"v1": 100}
    with pytest.raises(AgentError) as info:
        client.rollout_start("digits", "v1")
    assert info.value.status == 409 and "already the stable" in info.value.message


def test_a_rollout_survives_an_agent_restart(controller):
    agent, client, cluster = controller
    _ensure(client, "v1", "v2")
    with steady_load(cluster) as load:
        policy = {**FAST, "min_dwell_s": 8}
        client.rollout_start("digits", "v2", steps=[50, 100], gates=LOOSE, **policy)
        assert agent.stop() == 0  # SIGTERM mid-step; the rollout is in DuckDB
        agent.start()
        r = wait_for_rollout(client, {"done", "rolled_back", "paused"})
    assert r.state == "done", r
    assert advanced_through(r) == [0, 50, 100]
    assert "drift" in {m.metric for m in r.judgements[-1].metrics}
    assert client.model("digits").stable == "v2"
    assert load["report"].summary()["failed"] == 0  # Serve kept serving while the agent was down


def test_feedback_on_real_predictions_gives_their_exact_accuracy(controller):
    """Ground truth through the API for calls Serve really answered: the controller joins
    it to the logged predictions and its accuracy per version is the exact share right."""
    _, client, cluster = controller
    _, x_test, _, y_test = split()
    started = datetime.now(UTC) - timedelta(seconds=1)
    answered: dict[str, tuple[str, int]] = {}
    url = f"{cluster.serve_url}/models/digits/predict"
    for i in range(60):
        rid = f"truth-{i}-{time.time_ns()}"
        r = httpx.post(
            url, json={"instances": [x_test[i].tolist()]}, headers={"x-request-id": rid}, timeout=30
        )
        assert r.status_code == 200, r.text
        answered[rid] = (r.headers["x-model-version"], r.json()["predictions"][0]["label"])
    truth = {rid: int(y_test[i]) for i, rid in enumerate(answered)}
    records = [{"request_id": rid, "label": label} for rid, label in truth.items()]
    deadline = time.monotonic() + 30
    while True:  # the calls reach the log within a spool flush and an ingest
        result = client.feedback("digits", records)
        if result.unknown == 0:
            break
        assert time.monotonic() < deadline, result
        time.sleep(1)
    assert result.joined == 60 and not result.rejected
    report = client.accuracy("digits", since=started)
    labelled = [v for v in report.versions if v.labelled]  # others had calls, no truth
    assert {v.version for v in labelled} == {version for version, _ in answered.values()}
    for v in labelled:
        mine = [rid for rid, (version, _) in answered.items() if version == v.version]
        right = sum(answered[rid][1] == truth[rid] for rid in mine)
        assert v.labelled == len(mine) and v.accuracy == right / len(mine), v
    assert sum(v.labelled for v in report.versions) == 60


def test_the_cli_verbs_of_the_loop(controller, tmp_path):
    """feedback FILE, accuracy, routing --at and alerts, as an operator types them."""
    agent, _, cluster = controller
    url = f"{cluster.serve_url}/models/digits/predict"
    _, x_test, _, y_test = split()
    rid = f"cli-{time.time_ns()}"
    r = httpx.post(url, json={"instances": [x_test[0].tolist()]}, headers={"x-request-id": rid})
    assert r.status_code == 200
    truth = tmp_path / "truth.csv"
    truth.write_text(f"request_id,label\n{rid},{int(y_test[0])}\nnot-logged,3\n")
    deadline = time.monotonic() + 30
    while True:  # until the call is in the log
        out = cli(agent, "feedback", "digits", str(truth))
        if "1 joined" in out.stdout or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert out.returncode == 0 and "2 records, 1 joined" in out.stdout, out.stdout + out.stderr
    assert "1 not in the request log (e.g. not-logged)" in out.stdout
    out = cli(agent, "accuracy", "digits")
    assert out.returncode == 0 and "ACCURACY" in out.stdout and "ESTIMATED" in out.stdout
    out = cli(agent, "routing", "digits", "--at", datetime.now(UTC).isoformat())
    assert out.returncode == 0 and "route_version" in out.stdout, out.stderr
    out = cli(agent, "alerts")
    assert out.returncode in (0, 1) and "STATE" in out.stdout, out.stderr
