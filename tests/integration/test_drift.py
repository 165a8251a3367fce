"""Drift on a real DuckDB file: request records go through the spool and the agent's ingest,
the reference is the demo model's own sample, and traffic is real digits (held-out rows),
then the same rows with one band of pixels brightened."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from agent.analysis.drift import DriftSource, drift_reports, histogram
from agent.ingest import ingest_once
from agent.local_log import LocalRequestLog
from agent.schemas.drift import DriftThresholds
from agent.store import Store
from scripts.train_demo_models import split
from serve.local_cluster import free_port
from serve.spool import SpoolWriter
from tests.agent_process import AgentProcess
from tests.records import make_record

BAND = [f"px_3_{c}" for c in range(8)]  # the fourth pixel row


@pytest.fixture
def store(tmp_path, demo_store):
    s = Store(tmp_path / "agent.duckdb", model_store=demo_store.root)
    yield s
    s.close()


@pytest.fixture
def source(demo_store) -> DriftSource:
    manifest = demo_store.manifest("digits", "v1")
    return DriftSource(
        "digits", "v1", demo_store.reference_path("digits", "v1"), manifest.input.features
    )


def log_traffic(store, tmp_path, rows, labels, start: datetime, span_s: float, **extra) -> None:
    """Each row one request, spread evenly over [start, start + span_s), ingested for real."""
    writer = SpoolWriter(tmp_path / "spool", "test")
    step = span_s / len(rows)
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        writer.append(
            make_record(
                i,
                request_id=f"{extra.get('role', 'primary')}-{start.timestamp()}-{i}",
                ts=start + timedelta(seconds=i * step),
                input=json.dumps({"instances": [row]}),
                output=json.dumps({"predictions": [{"label": int(label)}]}),
                **extra,
            )
        )
    writer.flush()
    ingest_once(store, tmp_path / "spool")


def brightened(rows: np.ndarray, features: list[str]) -> np.ndarray:
    out = rows.copy()
    cols = [features.index(f) for f in BAND]
    out[:, cols] = np.minimum(out[:, cols] + 8, 16)
    return out


def test_unchanged_traffic_shows_no_drift_and_a_brightened_band_does(store, source, tmp_path):
    _, held_out, _, held_labels = split()
    now = datetime.now(UTC).replace(tzinfo=None)
    # Summaries are per minute: the slices of a timeline are whole minutes.
    start = (now - timedelta(minutes=30)).replace(second=0, microsecond=0)
    rows = held_out.tolist()
    log_traffic(store, tmp_path, rows, held_labels, start, 600)
    (calm,) = drift_reports(
        LocalRequestLog(store), source, start, start + timedelta(seconds=600), DriftThresholds()
    )
    assert calm.rows == len(rows)
    assert [f.feature for f in calm.features if f.decision.drifted] == []
    assert not calm.prediction.decision.drifted

    later = start + timedelta(seconds=600)
    bright = brightened(held_out, source.features).tolist()
    log_traffic(store, tmp_path, bright, [1] * len(bright), later, 600)
    (report,) = drift_reports(
        LocalRequestLog(store), source, later, later + timedelta(seconds=600), DriftThresholds()
    )
    drifted = {f.feature for f in report.features if f.decision.drifted}
    assert set(BAND) - {"px_3_0", "px_3_7"} <= drifted  # the border pixels are near 0 anyway
    assert drifted <= set(BAND)
    assert report.prediction.decision.drifted  # every prediction is now "1"

    # Over the whole hour, in buckets: the drift starts half way.
    timeline = drift_reports(
        LocalRequestLog(store),
        source,
        start,
        start + timedelta(seconds=1200),
        DriftThresholds(),
        buckets=4,
    )
    counts = [sum(f.decision.drifted for f in b.features) for b in timeline]
    assert counts[:2] == [0, 0] and min(counts[2:]) >= 4, counts


def test_shadow_and_replay_rows_do_not_count(store, source, tmp_path):
    _, held_out, _, held_labels = split()
    start = (datetime.now(UTC) - timedelta(minutes=5)).replace(tzinfo=None, second=0, microsecond=0)
    log_traffic(store, tmp_path, held_out.tolist(), held_labels, start, 60)
    noise = brightened(held_out, source.features).tolist()
    for role in ("shadow", "replay"):
        log_traffic(store, tmp_path, noise, [1] * len(noise), start, 60, role=role)
    (report,) = drift_reports(
        LocalRequestLog(store), source, start, start + timedelta(seconds=60), DriftThresholds()
    )
    assert report.rows == len(held_out)
    assert not any(f.decision.drifted for f in report.features)


def test_histogram_of_one_feature_compares_reference_and_traffic(store, source, tmp_path):
    _, held_out, _, held_labels = split()
    start = (datetime.now(UTC) - timedelta(minutes=5)).replace(tzinfo=None, second=0, microsecond=0)
    bright = brightened(held_out, source.features)
    log_traffic(store, tmp_path, bright.tolist(), held_labels, start, 60)
    edges, ref, cur = histogram(
        LocalRequestLog(store), source, "px_3_3", start, start + timedelta(seconds=60), bins=20
    )
    assert len(edges) == len(ref) + 1 == len(cur) + 1
    assert ref.sum() == pytest.approx(1) and cur.sum() == pytest.approx(1)
    # Brightened by 8: almost nothing of the traffic is left below 8.
    low = [i for i in range(len(ref)) if edges[i + 1] <= 8]
    assert sum(cur[i] for i in low) < 0.05 < sum(ref[i] for i in low)


def test_no_traffic_in_the_window_is_not_drift(store, source):
    now = datetime.now(UTC).replace(tzinfo=None)
    (report,) = drift_reports(
        LocalRequestLog(store), source, now - timedelta(hours=1), now, DriftThresholds()
    )
    assert report.rows == 0
    assert all(f.result.p_value is None and not f.decision.drifted for f in report.features)


@pytest.fixture
def drift_agent(tmp_path, demo_store, repo_root):
    """A controller agent (real process, real HTTP on 127.0.0.1) with the demo models' store.
    Drift needs no Ray: the dashboard address points at a port where nothing listens."""
    agent = AgentProcess(tmp_path / "data")
    agent.config.write_text(
        agent.config.read_text()
        + f'[controller]\nenabled = true\ndashboard = "http://127.0.0.1:{free_port()}"\n'
        f'models = ["{repo_root / "configs/models/digits.toml"}"]\n'
        f'[model_store]\npath = "{demo_store.root}"\n'
    )
    agent.start()
    yield agent
    agent.stop()


def spool_traffic(agent: AgentProcess, rows, labels, start: datetime, span_s: float) -> None:
    writer = SpoolWriter(agent.data_dir / "spool", "test")
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        writer.append(
            make_record(
                i,
                request_id=f"api-{start.timestamp()}-{i}",
                ts=start + timedelta(seconds=i * span_s / len(rows)),
                input=json.dumps({"instances": [row]}),
                output=json.dumps({"predictions": [{"label": int(label)}]}),
            )
        )
    writer.flush()
    deadline = time.monotonic() + 20
    while any((agent.data_dir / "spool").glob("*.parquet")):
        assert time.monotonic() < deadline, "the agent did not ingest the spool"
        time.sleep(0.1)


def test_drift_api_reports_histograms_and_a_timeline(drift_agent, source):
    _, held_out, _, held_labels = split()
    # Summaries are per minute: a timeline's slices are whole minutes.
    start = (datetime.now(UTC) - timedelta(minutes=20)).replace(second=0, microsecond=0)
    spool_traffic(drift_agent, held_out.tolist(), held_labels, start, 300)
    bright = brightened(held_out, source.features)
    spool_traffic(
        drift_agent, bright.tolist(), [1] * len(bright), start + timedelta(minutes=5), 300
    )

    window = {"since": start.isoformat(), "until": (start + timedelta(minutes=10)).isoformat()}
    report = drift_agent.get("/v1/drift", model="digits", version="v1", **window)
    assert report["current_rows"] == 2 * len(held_out)
    assert set(report["drifted"]) <= set(BAND) | {"prediction"}
    assert "px_3_3" in report["drifted"]
    assert report["prediction"]["drifted"] and report["prediction"]["test"] == "chi2"
    assert len(report["features"]) == 64 and report["thresholds"]["alpha"] == 0.05

    hist = drift_agent.get(
        "/v1/drift/histogram", model="digits", version="v1", feature="px_3_3", **window
    )
    assert len(hist["edges"]) == len(hist["reference"]) + 1
    assert sum(hist["current"]) == pytest.approx(1)

    timeline = drift_agent.get(
        "/v1/drift/timeline", model="digits", version="v1", buckets=2, **window
    )
    assert [p["current_rows"] for p in timeline] == [len(held_out)] * 2
    assert timeline[0]["drifted"] == 0 and timeline[1]["drifted"] >= 4

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "console.cli",
            "drift",
            "digits",
            "--version",
            "v1",
            "--since",
            window["since"],
            "--until",
            window["until"],
            "--agent",
            drift_agent.url,
            "--token",
            drift_agent.token(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "px_3_3" in out.stdout and f"{2 * len(held_out)} rows" in out.stdout


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"model": "nope", "version": "v1"}, 404, "unknown model"),
        ({"model": "digits", "version": "v9"}, 404, "not registered"),
        ({"model": "digits"}, 409, "not been deployed"),  # no stable version without Ray
        (
            {
                "model": "digits",
                "version": "v1",
                "since": "2026-01-02T00:00:00Z",
                "until": "2026-01-01T00:00:00Z",
            },
            422,
            "since must be before until",
        ),
    ],
)
def test_drift_api_bad_input_gets_a_clear_4xx(drift_agent, params, status, needle):
    r = httpx.get(
        f"{drift_agent.url}/v1/drift",
        params=params,
        headers={"Authorization": f"Bearer {drift_agent.token()}"},
        timeout=10,
    )
    assert r.status_code == status and needle in r.json()["detail"], r.text
    feature = httpx.get(
        f"{drift_agent.url}/v1/drift/histogram",
        params={"model": "digits", "version": "v1", "feature": "nope"},
        headers={"Authorization": f"Bearer {drift_agent.token()}"},
        timeout=10,
    )
    assert feature.status_code == 404 and "no input feature 'nope'" in feature.json()["detail"]
