"""Batch jobs end to end: the controller agent (a real process) submits Ray jobs to the session's
real local Ray cluster; Ray Data reads generated Parquet and CSV files with bad rows, scores
them with digits v1 and v2 in an actor pool and writes Parquet; the results are compared with
the ONNX model run directly on the same rows, a rerun byte for byte, v1 with v2 by `batch
diff`; a tampered artifact is refused, a running job cancelled, and a `[[batch]]` schedule
that fell due while the agent was down runs once when it starts."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.client import AgentClient, AgentError
from agent.schemas.batch import BatchJob, BatchStart
from agent.store import Store
from scripts.train_demo_models import split
from serve.model_store import ModelStore
from serve.onnx_model import OnnxModel
from serve.registration import manifest_fields
from tests.agent_process import AgentProcess, start_controller

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
[versions.gpuonly]
accelerator = "gpu"
[router]
num_replicas = 1
[[batch]]
name = "nightly"
input = "{input}"
output = "{output}"
version = "best:accuracy"
cron = "30 0 * * *"
"""


def digits_rows(n: int) -> np.ndarray:
    x_train, x_test, _, _ = split()
    x = np.concatenate([x_train, x_test]).astype(np.float64)
    return x[np.arange(n) % len(x)]


def features(store: ModelStore) -> list[str]:
    return list(store.manifest("digits", "v1").input.features)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, demo_store) -> dict[str, Path]:
    """A Parquet file (one column per feature) with missing and non-finite values, and a CSV
    with a short line, a word and an empty field."""
    tmp = tmp_path_factory.mktemp("batch-inputs")
    names = features(demo_store)
    rows = digits_rows(3000)
    columns = {name: rows[:, j].copy() for j, name in enumerate(names)}
    columns[names[3]][[10, 11]] = [np.nan, np.inf]
    table = pa.table(columns)
    mask = np.zeros(len(rows), dtype=bool)
    mask[20] = True  # a null
    table = table.set_column(5, names[5], pa.array(columns[names[5]], mask=mask))
    parquet_dir = tmp / "parquet"
    parquet_dir.mkdir()
    pq.write_table(table.slice(0, 2000), parquet_dir / "part-a.parquet", row_group_size=700)
    pq.write_table(table.slice(2000), parquet_dir / "part-b.parquet")
    lines = [",".join(names)] + [",".join(f"{v:g}" for v in r) for r in rows[:400]]
    lines[1 + 7] = ",".join(lines[1 + 7].split(",")[:-1])  # row 7: a field short
    cells = lines[1 + 9].split(",")
    cells[2] = "abc"  # row 9: a word
    lines[1 + 9] = ",".join(cells)
    cells = lines[1 + 12].split(",")
    cells[0] = ""  # row 12: empty
    lines[1 + 12] = ",".join(cells)
    (tmp / "rows.csv").write_text("\n".join(lines) + "\n")
    big = tmp / "big"
    big.mkdir()
    many = digits_rows(1_500_000).astype(np.float32)  # ~10 s of scoring: time to cancel
    pq.write_table(
        pa.table({name: many[:, j] for j, name in enumerate(names)}),
        big / "many.parquet",
        row_group_size=20_000,
    )
    return {"parquet": parquet_dir, "csv": tmp / "rows.csv", "big": big, "root": tmp}


def tamper(store: ModelStore) -> None:
    """digits/tampered: v1 registered, then one byte of its artifact changed on disk."""
    v1 = store.version_dir("digits", "v1")
    fields = manifest_fields("digits", "tampered", v1 / "digits-v1.onnx", v1 / "reference.parquet")
    store.register(fields, v1 / "digits-v1.onnx", v1 / "reference.parquet")
    artifact = store.version_dir("digits", "tampered") / "digits-v1.onnx"
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF
    artifact.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def controller(ray_cluster, demo_store, inputs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch-controller")
    store = ModelStore(tmp / "models")
    shutil.copytree(demo_store.root, store.root)
    tamper(store)
    v1 = store.version_dir("digits", "v1")
    fields = manifest_fields("digits", "gpuonly", v1 / "digits-v1.onnx", v1 / "reference.parquet")
    store.register(fields, v1 / "digits-v1.onnx", v1 / "reference.parquet")
    scheduled = tmp / "scheduled"
    scheduled.mkdir()
    (tmp / "digits.toml").write_text(
        MODEL_TOML.format(input=inputs["parquet"] / "*.parquet", output=scheduled)
    )
    # The schedule last ran three nights ago, and the agent has been down since.
    data = tmp / "data"
    seeded = Store(data / "agent.duckdb")
    last = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3)
    seeded.put_state("batch_schedule:digits:nightly", last.isoformat())
    seeded.close()
    roots = f'batch_roots = ["{inputs["root"]}", "{tmp}"]\n'
    agent, client = start_controller(
        tmp, ray_cluster, tmp / "digits.toml", store.root, data, controller_lines=roots
    )
    yield agent, client, store, tmp
    client.close()
    agent.stop()


def wait_done(client: AgentClient, job: BatchJob, timeout_s: float = 240) -> BatchJob:
    deadline = time.monotonic() + timeout_s
    while job.state == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
        job = client.batch_job(job.id)
    return job


def run_job(client: AgentClient, version: str, source: Path, output: Path) -> BatchJob:
    job = client.batch_start(
        BatchStart(model="digits", version=version, input=str(source), output=str(output))
    )
    return wait_done(client, job)


def predictions(output: Path) -> pa.Table:
    return pq.read_table(output / "predictions").sort_by("row_id")


def rejects(output: Path) -> dict[str, str]:
    table = pq.read_table(output / "rejects")
    return dict(zip(table["row_id"].to_pylist(), table["reason"].to_pylist(), strict=True))


def file_hashes(output: Path) -> dict[str, str]:
    return {
        p.relative_to(output).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(output.rglob("*.parquet"))
    }


def cli(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess:
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


def test_every_good_row_is_scored_as_the_onnx_model_scores_it_and_bad_rows_set_aside(
    controller, inputs
):
    agent, client, store, tmp = controller
    job = run_job(client, "v1", inputs["parquet"], tmp / "out-v1")
    assert job.state == "succeeded", job.error
    assert (job.total, job.read, job.scored, job.rejected) == (3000, 3000, 2997, 3)
    assert job.files == 2 and job.format == "parquet" and job.who == "test-oncall"
    assert job.provider == "CPUExecutionProvider"
    assert rejects(tmp / "out-v1") == {
        "part-a.parquet:10": "feature 'px_0_3': nan is not finite",
        "part-a.parquet:11": "feature 'px_0_3': inf is not finite",
        "part-a.parquet:20": "feature 'px_0_5' is missing",
    }
    got = predictions(tmp / "out-v1")
    modes = {p.stat().st_mode & 0o777 for p in (tmp / "out-v1").rglob("*") if p.is_file()}
    assert modes == {0o600}  # predictions are data
    assert set(got["version"].to_pylist()) == {"v1"}
    assert set(got["sha256"].to_pylist()) == {store.manifest("digits", "v1").sha256}
    # The same rows through the same runtime, in one process, without Ray.
    loaded = store.load("digits", "v1")
    model = OnnxModel(loaded.data, loaded.manifest)
    rows = digits_rows(3000).astype(np.float32)
    good = np.setdiff1d(np.arange(3000), [10, 11, 20])
    direct = model.predict(rows[good])
    expected_ids = [
        f"part-a.parquet:{i}" if i < 2000 else f"part-b.parquet:{i - 2000}" for i in good
    ]
    order = np.argsort(expected_ids)
    assert got["row_id"].to_pylist() == [expected_ids[i] for i in order]
    assert got["label"].to_numpy().tolist() == direct.labels[order].tolist()
    probabilities = np.stack(got["probabilities"].to_numpy(zero_copy_only=False))
    assert direct.probabilities is not None
    assert np.array_equal(probabilities, direct.probabilities[order])  # bit for bit
    # The job's record, its drift report and the audit.
    assert job.timeline is not None and job.timeline.first_scored_s is not None
    assert "driver started" in (job.startup() or "")
    assert job.drift is not None and len(job.drift.features) == 64
    assert job.drift.current_rows == 2997
    started = [e for e in client.audit(model="digits") if e.action == "batch_start"]
    assert any(e.result == "ok" and e.request["id"] == job.id for e in started)
    ended = [e for e in client.audit(model="digits") if e.action == "batch_end"]
    assert any(e.request["id"] == job.id and e.request["scored"] == 2997 for e in ended)
    text = httpx.get(
        f"{agent.url}/metrics", headers={"Authorization": f"Bearer {agent.token()}"}
    ).text
    jobs = {
        line.split("{")[1].split("}")[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("trackside_batch_jobs{")
    }
    assert jobs['model="digits",state="succeeded"'] >= 1
    assert 'trackside_batch_rows_rejected_total{model="digits"}' in text


def test_a_csv_sets_aside_a_short_line_a_word_and_an_empty_field(controller, inputs):
    _, client, _, tmp = controller
    job = run_job(client, "v1", inputs["csv"], tmp / "out-csv")
    assert job.state == "succeeded", job.error
    assert (job.read, job.scored, job.rejected) == (400, 397, 3)
    assert rejects(tmp / "out-csv") == {
        "rows.csv:7": "has 63 fields, the header has 64",
        "rows.csv:9": "feature 'px_0_2': 'abc' is not a number",
        "rows.csv:12": "feature 'px_0_0' is missing",
    }
    got = predictions(tmp / "out-csv")
    assert "rows.csv:8" in got["row_id"].to_pylist() and got.num_rows == 397


def test_a_rerun_writes_the_same_bytes_and_batch_diff_says_so(controller, inputs):
    agent, client, _, tmp = controller
    first = run_job(client, "v1", inputs["parquet"], tmp / "rerun-1")
    result = cli(
        agent, "batch", "digits", "--version", "v1", "--input", str(inputs["parquet"]),
        "--output", str(tmp / "rerun-2"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout and "2,997 scored, 3 set aside" in result.stdout
    second = client.batch_jobs(limit=1)[0]
    assert second.input_sha256 == first.input_sha256
    assert file_hashes(tmp / "rerun-1") == file_hashes(tmp / "rerun-2")
    diff = cli(agent, "batch", "diff", first.id, second.id)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert "identical" in diff.stdout


def test_v1_against_v2_reports_the_labels_that_changed(controller, inputs):
    agent, client, store, tmp = controller
    a = run_job(client, "v1", inputs["parquet"], tmp / "cmp-v1")
    b = run_job(client, "best:accuracy", inputs["parquet"], tmp / "cmp-v2")
    assert b.version == "v2"  # the registered version with the best offline accuracy
    d = client.batch_diff(a.id, b.id)
    rows = digits_rows(3000).astype(np.float32)
    good = np.setdiff1d(np.arange(3000), [10, 11, 20])
    labels = {}
    for version in ("v1", "v2"):
        loaded = store.load("digits", version)
        labels[version] = OnnxModel(loaded.data, loaded.manifest).predict(rows[good]).labels
    expected = int((labels["v1"] != labels["v2"]).sum())
    assert expected > 0
    assert (d.common, d.only_a, d.only_b, d.labels_changed) == (2997, 0, 0, expected)
    assert not d.identical and len(d.examples) == min(10, expected)
    result = cli(agent, "batch", "diff", a.id, b.id)
    assert result.returncode == 1 and f"labels changed: {expected:,} of 2,997" in result.stdout


def test_a_tampered_artifact_refuses_the_job_before_a_row_is_read(controller, inputs):
    _, client, _, tmp = controller
    with pytest.raises(AgentError) as refused:
        client.batch_start(
            BatchStart(
                model="digits",
                version="tampered",
                input=str(inputs["csv"]),
                output=str(tmp / "never"),
            )
        )
    assert refused.value.status == 409 and "sha256" in refused.value.message
    assert not (tmp / "never").exists()
    assert all(j.version != "tampered" for j in client.batch_jobs())
    refusal = next(e for e in client.audit(model="digits") if e.action == "batch_start")
    assert refusal.result == "refused" and "sha256" in (refusal.error or "")


def test_bad_requests_are_refused_with_the_reason(controller, inputs):
    _, client, _, tmp = controller
    cases = [
        (dict(model="nope", input=str(inputs["csv"]), output=str(tmp / "x")), 404, "unknown model"),
        (dict(model="digits", input=str(tmp / "missing"), output=str(tmp / "x")), 422, "no such"),
        (dict(model="digits", input=str(inputs["csv"]), output=str(tmp)), 409, "exists"),
        (dict(model="digits", input="/etc/hostname", output=str(tmp / "x")), 422, "outside"),
        (dict(model="digits", input=str(inputs["csv"]), output="/var/tmp/x"), 422, "outside"),
        (dict(model="digits", input=str(inputs["parquet"]), output=str(inputs["parquet"] / "o")),
         422, "inside the input"),
        (dict(model="digits", input="rows.csv", output=str(tmp / "x")), 422, "absolute"),
        (dict(model="digits", input=str(inputs["root"]) + "/**/*.csv", output=str(tmp / "x")),
         422, "`**`"),
        (dict(model="digits", version="v9", input=str(inputs["csv"]), output=str(tmp / "x")),
         404, "not registered"),
        (dict(model="digits", version="best:f1", input=str(inputs["csv"]), output=str(tmp / "x")),
         422, "offline metric"),
        (dict(model="digits", version="gpuonly", input=str(inputs["csv"]), output=str(tmp / "x")),
         409, "cannot run here: unschedulable: needs GPU 0.5, cluster has none"),
    ]  # fmt: skip
    for fields, status, why in cases:
        with pytest.raises(AgentError) as refused:
            client.batch_start(BatchStart(**fields))
        assert refused.value.status == status and why in refused.value.message, fields
    with pytest.raises(AgentError) as missing:
        client.batch_job("no-such-job")
    assert missing.value.status == 404


def test_cancel_stops_a_running_job_and_keeps_nothing_of_it(controller, inputs):
    _, client, _, tmp = controller
    job = client.batch_start(
        BatchStart(model="digits", version="v2", input=str(inputs["big"]), output=str(tmp / "big"))
    )
    deadline = time.monotonic() + 120
    while client.batch_job(job.id).read == 0:  # scoring has begun
        assert time.monotonic() < deadline
        time.sleep(0.5)
    cancelled = client.batch_cancel(job.id)
    assert cancelled.state == "cancelled"
    assert cancelled.read < cancelled.total
    assert not (tmp / "big").exists()
    assert not list(tmp.glob(".big.staging-*"))
    with pytest.raises(AgentError) as again:
        client.batch_cancel(job.id)
    assert again.value.status == 409
    cancels = [e for e in client.audit(model="digits") if e.action == "batch_cancel"]
    assert [e.result for e in cancels[:2]] == ["refused", "ok"]  # newest first
    assert all(e.request["id"] == job.id for e in cancels[:2]) and "already" in cancels[0].error


def test_a_schedule_due_while_the_agent_was_down_runs_once_at_start(controller):
    _, client, _, tmp = controller
    deadline = time.monotonic() + 120
    while not [j for j in client.batch_jobs() if j.schedule == "nightly"]:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(5)  # more ticks: still the one run
    scheduled = [j for j in client.batch_jobs() if j.schedule == "nightly"]
    assert len(scheduled) == 1
    job = wait_done(client, scheduled[0])
    assert job.state == "succeeded" and job.version == "v2" and job.who == "schedule nightly"
    now = datetime.now(UTC)
    slot = now.replace(hour=0, minute=30, second=0, microsecond=0)
    if slot > now:
        slot -= timedelta(days=1)
    assert Path(job.output) == tmp / "scheduled" / f"{slot:%Y%m%dT%H%MZ}"
    assert (Path(job.output) / "predictions").is_dir()
