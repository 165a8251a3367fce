"""The agent as a real process: token file, telemetry, one agent per DuckDB file, SIGTERM,
and spool ingest that survives kill -9 with no duplicates and no loss."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import duckdb
import httpx
import pytest

from agent.config import AgentConfig, CollectSettings
from agent.daemon import Agent
from serve.local_cluster import free_port
from serve.spool import SpoolWriter
from tests.agent_process import AgentProcess
from tests.fake_nvml import FakeGpu, FakeNvml, three_gpus
from tests.records import make_record


def test_token_file_telemetry_single_writer_and_clean_sigterm(tmp_path):
    agent = AgentProcess(tmp_path / "data").start()
    try:
        mode = stat.S_IMODE((tmp_path / "data" / "agent.token").stat().st_mode)
        assert mode == 0o600
        assert httpx.get(f"{agent.url}/v1/host", timeout=5).status_code == 401
        host = agent.get("/v1/host")
        assert host["gpu_status"].startswith("no GPU")  # no NVIDIA library on this machine
        time.sleep(3)
        rows = agent.get("/v1/telemetry/host", step=1)
        samples = sum(r["samples"] for r in rows)
        assert samples >= 6, rows  # 4 per second configured; generous for a busy machine
        assert all(r["cpu_pct"] is not None for r in rows)
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "agent.daemon",
                "--data-dir",
                str(tmp_path / "data"),
                "--port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert "held by another process" in second.stderr
        assert "Only one agent" in second.stderr
    finally:
        code = agent.stop()
    assert code == 0
    assert "DuckDB closed cleanly" in agent.log.read_text()


def test_kill_9_during_ingest_loses_nothing_and_duplicates_nothing(tmp_path):
    data = tmp_path / "data"
    spool = data / "spool"
    writer = SpoolWriter(spool, "rep")
    total = 0
    agent = AgentProcess(data).start()
    rng = random.Random(5)
    for _ in range(4):
        for _ in range(15):  # files arrive while the agent ingests
            for _ in range(200):
                writer.append(make_record(total))
                total += 1
            writer.flush()
            time.sleep(rng.uniform(0.0, 0.05))
        agent.stop(signal.SIGKILL)  # anywhere: mid-insert, between commit and delete, idle
        agent.start()
    deadline = time.monotonic() + 60
    while any(spool.glob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert agent.stop() == 0
    con = duckdb.connect(str(data / "agent.duckdb"), read_only=True)
    count, distinct = con.execute(
        "SELECT count(*), count(DISTINCT request_id) FROM requests"
    ).fetchall()[0]
    con.close()
    assert (count, distinct) == (total, total)


@contextlib.contextmanager
def agent_in_thread(tmp_path, nvml) -> Iterator[Agent]:
    """The daemon's own run loop (collectors on their schedule, API, ingest) in a thread, so
    a test can hand it a fake NVML."""
    config = AgentConfig(
        data_dir=tmp_path / "data",
        collect=CollectSettings(interval_s=0.25, write_interval_s=0.5),
        api={"port": free_port()},
    )
    agent = Agent(config, nvml=nvml)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(agent.run(stop),))
    thread.start()
    try:
        yield agent
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_failing_collector_does_not_stop_the_others(tmp_path):
    class ExplodingNvml(FakeNvml):
        def nvmlDeviceGetUtilizationRates(self, gpu):
            raise RuntimeError("driver wedged")

    # A FAKE NVML (this machine has no GPU): same calls and exception classes as pynvml.
    nvml = ExplodingNvml(gpus=[FakeGpu("FAKE GPU that raises", "GPU-fake-x")])
    with agent_in_thread(tmp_path, nvml) as agent:
        time.sleep(2.5)
        assert agent.collectors.get("gpu", "").startswith("error: driver wedged")
        assert agent.collectors.get("host") == "ok"
        n = agent.store.query("SELECT count(*) AS n FROM host_samples")[0]["n"]
        assert n >= 4


def test_fake_gpus_are_sampled_on_the_daemon_schedule(tmp_path):
    # A FAKE NVML (this machine has no GPU): three GPUs behind pynvml's interface, one with
    # only the basic fields, one that falls off the bus after its third sample.
    with agent_in_thread(tmp_path, three_gpus(lost_after=3)) as agent:
        time.sleep(3)
        rows = agent.store.query(
            "SELECT uuid, count(*) AS n, count(power_w) AS with_power, "
            "count(util_gpu) AS with_util FROM gpu_samples GROUP BY uuid ORDER BY uuid"
        )
        url = f"http://127.0.0.1:{agent.config.api.port}"
        headers = {"authorization": f"Bearer {agent.token}"}
        host = httpx.get(f"{url}/v1/host", headers=headers, timeout=5).json()
        latest = httpx.get(f"{url}/v1/telemetry/gpu/latest", headers=headers, timeout=5).json()
        assert agent.collectors.get("gpu") == "ok"
    by_uuid = {r["uuid"]: r for r in rows}
    # 4 samples a second for 3 s: at least 6 even on a busy machine.
    assert by_uuid["GPU-fake-0"]["n"] >= 6
    assert by_uuid["GPU-fake-0"]["with_power"] == by_uuid["GPU-fake-0"]["n"]
    basic = by_uuid["GPU-fake-1"]
    assert basic["n"] >= 6 and basic["with_util"] == basic["n"] and basic["with_power"] == 0
    assert by_uuid["GPU-fake-2"]["n"] <= 3  # lost: no sample after it fell off
    assert host["gpu_status"] == "ok: 3 GPU(s)"
    assert [g["lost"] for g in host["gpus"]] == [False, False, True]
    assert {g["uuid"] for g in latest} >= {"GPU-fake-0", "GPU-fake-1"}


@pytest.mark.parametrize("value", ["0.1", "-1"])
def test_interval_floor_is_enforced(tmp_path, value):
    cfg = tmp_path / "a.toml"
    cfg.write_text(f"[collect]\ninterval_s = {value}\n")
    out = subprocess.run(
        [sys.executable, "-m", "agent.daemon", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "at least 0.25" in out.stderr
