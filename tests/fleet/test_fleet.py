"""A fleet on this machine, for real: three Ray nodes (`ray start`, each its own ports, a custom
resource naming its host, a logical GPU on the last), an agent per node with its own data
folder, spool and port, a router replica on every node writing that node's spool, and the
controller on the head reading every agent through the fleet API. Started by the project's
own `python -m scripts.fleet up`, as a user would."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agent.analysis.drift import drift_reports
from agent.client import AgentClient, AgentError
from agent.ingest import ingest_once
from agent.local_log import LocalRequestLog
from agent.request_log import DriftSource
from agent.schemas.drift import DriftThresholds
from agent.store import Store
from scripts.load import digit_rows, run_load
from scripts.train_demo_models import split
from serve.model_store import ModelStore
from serve.spool import SpoolWriter
from tests.integration.broken_model import register_broken
from tests.load_helpers import FAST, LOOSE
from tests.records import make_record

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Node:
    name: str
    agent: str
    serve: str
    folder: Path

    def client(self) -> AgentClient:
        token = (self.folder / "data" / "agent.token").read_text().strip()
        return AgentClient(self.agent, token=token, user="fleet-test")


@dataclass
class Fleet:
    folder: Path
    fleet_file: Path
    controller: AgentClient
    nodes: list[Node]

    @property
    def serve(self) -> str:
        return self.nodes[0].serve

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def agent_pid(self, name: str) -> int:
        state = json.loads((self.folder / "fleet.json").read_text())
        return next(n["agent_pid"] for n in state["nodes"] if n["name"] == name)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fleet")
    up = subprocess.run(
        [sys.executable, "-m", "scripts.fleet", "up", "--nodes", "3", "--dir", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        fleet_file = Path(re.search(r"^fleet (\S+)$", up.stdout, re.M)[1])
        url, token = re.search(r"^controller (\S+) token=(\S+)$", up.stdout, re.M).groups()
        nodes = [
            Node(m[1], m[2], m[3], folder / m[1])
            for m in re.finditer(r"^node (\S+) agent=(\S+) serve=(\S+)$", up.stdout, re.M)
        ]
        assert len(nodes) == 3, up.stdout
        controller = AgentClient(url, token=Path(token).read_text().strip(), user="fleet-test")
        yield Fleet(folder, fleet_file, controller, nodes)
        controller.close()
    finally:
        subprocess.run(
            [sys.executable, "-m", "scripts.fleet", "down", "--dir", str(folder)],
            cwd=ROOT,
            timeout=120,
        )


def send(fleet: Fleet, rows: list[list[float]], prefix: str) -> Counter:
    """One call per row through the nodes' proxies; which node's router answered each."""
    routers: Counter = Counter()
    url = f"{fleet.serve}/models/digits/predict"
    for i, row in enumerate(rows):
        # A new connection each call: the kernel spreads them over the nodes' proxies.
        r = httpx.post(url, json={"instances": [row]}, headers={"x-request-id": f"{prefix}-{i}"})
        assert r.status_code == 200, r.text
        routers[r.headers["x-trackside-router"]] += 1
    return routers


def until(check, timeout_s: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except AgentError as exc:
            last = exc.message
        time.sleep(0.5)
    raise AssertionError(f"{what} not met in {timeout_s:.0f}s (last: {last})")


def own(node: Node, path: str, **params: object) -> object:
    """What one agent holds itself (the part of the fleet API the controller merges)."""
    token = (node.folder / "data" / "agent.token").read_text().strip()
    r = httpx.get(
        f"{node.agent}{path}", params=params, headers={"Authorization": f"Bearer {token}"}
    )
    r.raise_for_status()
    return r.json()


def own_rows(node: Node, since: datetime) -> int:
    rows = own(node, "/v1/fleet/requests", model="digits", since=since.isoformat(), limit=1000)
    assert isinstance(rows, list)
    return len(rows)


def test_calls_through_every_node_are_counted_once_fleet_wide(fleet):
    t0 = datetime.now(UTC)
    n = 240
    routers = send(fleet, digit_rows()[:n], "count")
    assert len(routers) >= 2, routers  # the calls really were spread over the nodes

    def fleet_wide() -> bool:
        return len(fleet.controller.requests(model="digits", since=t0, limit=1000).rows) == n

    until(fleet_wide, what=f"the controller seeing all {n} calls")
    page = fleet.controller.requests(model="digits", since=t0, limit=1000)
    assert page.coverage.missing == [] and len(page.coverage.answered) == 3
    # One call, looked up on the controller, from whichever host served it.
    detail = fleet.controller.request("count-7")
    (primary,) = [r for r in detail.rows if r.role == "primary"]
    assert primary.host in {n.name for n in fleet.nodes} and primary.replica
    assert primary.sha256 and detail.tables[primary.route_version].weights == {"v1": 100}
    per_agent = {node.name: own_rows(node, t0) for node in fleet.nodes}
    assert sum(per_agent.values()) == n and sum(1 for v in per_agent.values() if v) >= 2
    assert Counter(r.host for r in page.rows) == {k: v for k, v in per_agent.items() if v}

    # The summaries agree: the per-host split on Models is each agent's own count.
    (model,) = fleet.controller.models()
    v1 = next(v for v in model.versions if v.version == "v1")
    for node in fleet.nodes:
        now = datetime.now(UTC)
        since = (now - timedelta(minutes=5)).isoformat()
        mine = own(node, "/v1/fleet/traffic", model="digits", since=since, until=now.isoformat())
        assert isinstance(mine, dict)
        assert v1.hosts.get(node.name, 0) == mine["calls"].get("v1", 0)
    assert sum(v1.hosts.values()) >= n


def test_fleet_drift_equals_drift_of_every_hosts_calls_together(fleet, tmp_path):
    # A minute of its own, so the window holds exactly these calls.
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    time.sleep((minute - now).total_seconds() + 0.5)
    rows = split()[1][:200].tolist()
    send(fleet, rows, "drift")
    window = {"since": minute.isoformat(), "until": (minute + timedelta(minutes=1)).isoformat()}
    until(
        lambda: fleet.controller.drift("digits", version="v1", **window).current_rows == len(rows),
        what="the fleet's drift counting every call",
    )
    report = fleet.controller.drift("digits", version="v1", **window)
    assert report.coverage.missing == [] and len(report.coverage.answered) == 3

    # The same calls on one host, through the same ingest and drift code.
    models = ModelStore(fleet.folder / "models")
    store = Store(tmp_path / "one.duckdb", model_store=models.root)
    writer = SpoolWriter(tmp_path / "spool", "one")
    for i, row in enumerate(rows):
        writer.append(
            make_record(
                i,
                version="v1",
                ts=minute + timedelta(seconds=i * 0.1),
                input=json.dumps({"instances": [row]}),
                output=json.dumps({"predictions": [{"label": 0}]}),
            )
        )
    writer.flush()
    ingest_once(store, tmp_path / "spool")
    manifest = models.manifest("digits", "v1")
    source = DriftSource(
        "digits", "v1", models.reference_path("digits", "v1"), list(manifest.input.features)
    )
    (alone,) = drift_reports(
        LocalRequestLog(store), source, minute, minute + timedelta(minutes=1), DriftThresholds()
    )
    store.close()
    fleet_features = {f.feature: f for f in report.features}
    for f in alone.features:
        got = fleet_features[f.feature]
        assert got.current_rows == f.result.n_cur == len(rows)
        assert got.statistic == pytest.approx(f.result.statistic, abs=1e-12)
        assert got.psi == pytest.approx(f.result.psi, abs=1e-12)
        assert got.drifted == f.decision.drifted


def steady(fleet: Fleet, rps: float, seconds: float):
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    box: dict = {}
    import threading

    def run() -> None:
        box["report"] = loop.run_until_complete(
            run_load(f"{fleet.serve}/models/digits/predict", rps, seconds, stop=stop)
        )

    thread = threading.Thread(target=run)
    thread.start()
    return box, stop, thread, loop


def wait_rollout(client: AgentClient, states: set[str], timeout_s: float = 240):
    return until(
        lambda: (r := client.rollout("digits")).state in states and r,
        timeout_s,
        f"a rollout in {states}",
    )


def verdicts(r) -> list:
    return [
        (
            j.weight,
            j.verdict,
            [(m.metric, m.verdict, m.note) for m in j.metrics if m.verdict != "pass"],
        )
        for j in r.judgements
    ]


def test_a_batch_job_scores_on_more_than_one_node(fleet):
    """The actor pool spreads over the cluster: the job's rows are scored on two nodes (the
    version's max_replicas), read and written in a folder every node sees."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from agent.schemas.batch import BatchStart
    from scripts.train_demo_models import FEATURES

    batch = fleet.folder / "batch"
    batch.mkdir(exist_ok=True)
    rows = np.tile(split()[1].astype(np.float32), (140, 1))  # ~63k digits
    table = pa.table({f: rows[:, j] for j, f in enumerate(FEATURES)})
    pq.write_table(table, batch / "in.parquet", row_group_size=4096)
    ctl = fleet.controller
    job = ctl.batch_start(
        BatchStart(
            model="digits",
            version="v1",
            input=str(batch / "in.parquet"),
            output=str(batch / "out"),
        )
    )
    job = until(lambda: (j := ctl.batch_job(job.id)).state != "running" and j, 180, "the job")
    assert job.state == "succeeded", job.error
    assert job.scored == len(rows) and job.rejected == 0
    assert len(job.nodes) == 2, job.nodes  # two actors, each on its own node
    assert pq.read_table(batch / "out" / "predictions").num_rows == len(rows)


def test_a_rollout_is_judged_across_the_nodes(fleet):
    ctl = fleet.controller
    ctl.deploy("digits", "v2", force=True)
    box, stop, thread, loop = steady(fleet, 25, 600)
    try:
        ctl.rollout_start(
            "digits",
            "v2",
            steps=[50, 100],
            gates=LOOSE,
            **FAST,
        )
        done = wait_rollout(ctl, {"done", "rolled_back", "paused"})
        assert done.state == "done", verdicts(done)
        # The judgement counted the calls of every node's router.
        assert all("coverage" not in {m.metric for m in j.metrics} for j in done.judgements), (
            done.judgements
        )
        assert ctl.model("digits").stable == "v2"

        register_broken(
            ModelStore(fleet.folder / "models"),
            fleet.folder / "models" / "digits" / "v1" / "reference.parquet",
            fleet.folder,
        )
        ctl.deploy("digits", "broken", force=True)
        ctl.rollout_start(
            "digits",
            "broken",
            steps=[50, 100],
            gates=LOOSE,
            **FAST,
        )
        failed = wait_rollout(ctl, {"done", "rolled_back", "paused"})
        assert failed.state == "rolled_back", verdicts(failed)
        assert ctl.model("digits").table.weights == {"v2": 100}
    finally:
        stop.set()
        thread.join()
        loop.close()
    report = box["report"]
    assert report.summary()["failed"] == 0  # the fallback answered for the broken canary


def test_a_stopped_agent_is_named_and_the_rollout_holds_until_it_is_back(fleet):
    ctl = fleet.controller
    stable = ctl.model("digits").stable
    canary = "v1" if stable != "v1" else "v2"
    _, stop, thread, loop = steady(fleet, 25, 600)
    gone = fleet.nodes[2]
    try:
        time.sleep(8)  # every host's share of the traffic is known
        ctl.models()
        pid = fleet.agent_pid(gone.name)
        subprocess.run(["kill", "-TERM", str(pid)], check=True)
        until(lambda: not _alive(pid), 30, "the agent stopping")
        page = ctl.requests(model="digits", limit=10)
        (missing,) = page.coverage.missing
        assert missing.host == gone.name and missing.last_share and missing.last_share > 0.1
        down = until(
            lambda: [a for a in ctl.alerts().firing if a.rule == "agent-down"],
            30,
            "the agent-down alert firing",
        )
        assert [a.host for a in down] == [gone.name]

        ctl.rollout_start(
            "digits",
            canary,
            steps=[50, 100],
            gates=LOOSE,
            **FAST,
        )
        held = until(
            lambda: (r := ctl.rollout("digits")).judgements and r,
            60,
            "a judgement",
        )
        verdict = {m.metric: m for m in held.judgements[-1].metrics}["coverage"]
        assert verdict.verdict == "marginal" and gone.name in verdict.note, verdict
        assert held.state in ("running", "paused") and held.step == 0

        with open(gone.folder / "agent.log", "ab") as log:
            restart = subprocess.Popen(
                [sys.executable, "-m", "agent.daemon", "--config", str(gone.folder / "agent.toml")],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _update_pid(fleet, gone.name, restart.pid)  # `down` stops it
        until(
            lambda: not ctl.requests(model="digits", limit=1).coverage.missing,
            60,
            "the agent answering again",
        )
        until(
            lambda: not [a for a in ctl.alerts().firing if a.rule == "agent-down"],
            30,
            "the agent-down alert resolving",
        )
        if ctl.rollout("digits").state == "paused":
            ctl.rollout_verb("digits", "resume")
        done = wait_rollout(ctl, {"done", "rolled_back"})
        assert done.state == "done", done
        assert not done.judgements[-1].metrics or all(
            m.metric != "coverage" for m in done.judgements[-1].metrics
        )
    finally:
        stop.set()
        thread.join()
        loop.close()


def _alive(pid: int) -> bool:
    try:
        import os

        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _update_pid(fleet: Fleet, name: str, pid: int) -> None:
    path = fleet.folder / "fleet.json"
    state = json.loads(path.read_text())
    for n in state["nodes"]:
        if n["name"] == name:
            n["agent_pid"] = pid
    path.write_text(json.dumps(state))


async def test_the_console_on_the_fleet_file_shows_three_hosts_and_the_split(fleet):
    from textual.widgets import DataTable

    from agent.client import load_fleet
    from console.app import TracksideConsole
    from console.sources import LocalSource
    from console.widgets.fleet_table import FleetTable

    send(fleet, digit_rows()[:60], "console")
    hosts = load_fleet(fleet.fleet_file).hosts
    sources = [LocalSource(h.url, token_file=Path(h.token_file), name=h.name) for h in hosts]
    app = TracksideConsole(sources, poll_interval_s=0.5)
    async with app.run_test(size=(200, 50)) as pilot:
        deadline = time.monotonic() + 60
        while not all(s.connected for s in app.state.hosts.values()):
            assert time.monotonic() < deadline
            await pilot.pause(0.2)
        app.refresh_screen()
        await pilot.pause()
        rows = [key for key, _ in app.screen.query_one(FleetTable).rows if "/" not in key]
        assert sorted(rows) == ["node-a", "node-b", "node-c"]
        await pilot.press("m")
        table = app.screen.query_one("#versions", DataTable)
        deadline = time.monotonic() + 30
        while True:
            await pilot.pause(0.3)
            cells = {str(c) for i in range(table.row_count) for c in table.get_row_at(i)}
            split_cell = next((c for c in cells if "node-a" in c and "%" in c), None)
            if (
                split_cell
                and sum(name in split_cell for name in ("node-a", "node-b", "node-c")) >= 2
            ):
                break
            assert time.monotonic() < deadline, cells
