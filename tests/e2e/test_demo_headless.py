"""`make demo ARGS="--headless --duration N"` tells its story without anyone typing: traffic
on both versions, the inputs shift, drift shows, accuracy (from the load's delayed true
labels) falls, an alert fires and its hook runs. Run here on its own ports and data folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from serve.local_cluster import free_port

pytestmark = pytest.mark.ray


def test_the_headless_demo_shows_drift_accuracy_and_a_fired_alert(tmp_path, demo_store, repo_root):
    config = tmp_path / "demo.toml"
    config.write_text(
        f"""
[ray]
num_cpus = 2
dashboard_port = {free_port()}
serve_port = {free_port()}
gcs_port = {free_port()}
[model_store]
path = "{demo_store.root}"
[models]
configs = ["{repo_root / "configs/models/digits.toml"}"]
[demo]
agent_port = {free_port()}
load_rps = 10
drift_after_s = 20
truth_delay_s = 2
alert_interval_s = 3
"""
    )
    env = {**os.environ, "TRACKSIDE_DEMO_DATA": str(tmp_path / "data")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.demo",
            "--config",
            str(config),
            "--headless",
            "--duration",
            "75",
        ],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    summary = out[out.index("\nsummary") :]
    print(summary)
    (line,) = [x for x in summary.splitlines() if x.strip().startswith("requests:")]
    requests = dict(re.findall(r"(v\d) (\d+)", line))
    assert set(requests) == {"v1", "v2"} and all(int(n) > 0 for n in requests.values())
    drifted = [int(n) for n in re.findall(r"drift of v\d: (\d+) of", summary)]
    assert max(drifted) > 0
    accuracy = re.findall(r"accuracy of (v\d): ([\d.]+)% on (\d+) labelled", summary)
    assert accuracy and all(int(n) > 0 for _, _, n in accuracy)
    fired = int(re.search(r"alerts fired: (\d+)", summary).group(1))
    hooks = int(re.search(r"hooks run: (\d+)", summary).group(1))
    assert fired >= 1 and hooks >= 1, summary
    assert re.search(r"digits/v\d (drifted_share|accuracy) [\d.]+ [<>]", summary), summary
