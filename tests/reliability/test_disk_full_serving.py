"""A full disk under a serving controller: its DuckDB file and the routers' spool on one small
tmpfs, filled while 20 requests/s go through. Serving goes on (no client request fails), the
agent says it is degraded, nothing already stored is lost, and every request is ingested once
the space comes back (the routers held what they could not write). Real Ray Serve, a real
agent process, a real filled tmpfs."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from serve.model_store import ModelStore
from tests.agent_process import start_controller
from tests.load_helpers import steady_load
from tests.reliability.tmpfs import fill, small_disk

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
[router]
num_replicas = 1
"""


def minute(t: datetime, up: bool = False) -> datetime:
    floor = t.replace(second=0, microsecond=0)
    return floor + timedelta(minutes=1) if up and floor != t else floor


def calls_ingested(agent, since: datetime, until: datetime) -> int:
    counts = agent.get(
        "/v1/fleet/traffic", model="digits", since=since.isoformat(), until=until.isoformat()
    )
    return sum(counts["calls"].values())


def health(agent) -> str:
    try:
        return httpx.get(f"{agent.url}/health", timeout=5).json()["status"]
    except (httpx.HTTPError, ValueError) as exc:
        return f"no answer ({type(exc).__name__})"


def test_a_full_disk_loses_nothing_and_serving_goes_on(ray_cluster, demo_store, tmp_path):
    store = ModelStore(tmp_path / "models")
    shutil.copytree(demo_store.root, store.root)
    (tmp_path / "digits.toml").write_text(MODEL_TOML)
    with small_disk(tmp_path / "disk", "96m") as disk:
        agent, client = start_controller(
            tmp_path, ray_cluster, tmp_path / "digits.toml", store.root, data_dir=disk / "data"
        )
        try:
            start = datetime.now(UTC)
            states = set()
            with steady_load(ray_cluster, rps=20) as load:
                time.sleep(10)
                filler = fill(disk)
                full_since = time.monotonic()
                while time.monotonic() - full_since < 20:
                    states.add(health(agent))
                    time.sleep(1)
                filler.unlink()  # the space comes back
                time.sleep(10)
            end = datetime.now(UTC)
            s = load["report"].summary()
            since, until = minute(start), minute(end, up=True) + timedelta(minutes=1)
            deadline = time.monotonic() + 90
            while (ingested := calls_ingested(agent, since, until)) < s["requests"]:
                assert time.monotonic() < deadline, (ingested, s["requests"])
                time.sleep(2)
            print(
                f"[reliability] disk full under DuckDB and the spool: requests={s['requests']},"
                f" failed={s['failed']}, ingested={ingested}, lost={s['requests'] - ingested},"
                f" health while full={sorted(states)}"
            )
            assert s["failed"] == 0
            assert ingested == s["requests"]  # each once: none lost, none twice
            assert "degraded" in states, states
            assert health(agent) == "ok"
        finally:
            client.close()
            if agent.proc is not None and agent.proc.poll() is None:
                agent.stop()
