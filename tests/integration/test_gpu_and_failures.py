"""GPU placement with a logical GPU, the unschedulable report without one, and a tampered
artifact refused by a real replica."""

from __future__ import annotations

import asyncio
import shutil
import time

import httpx
import pytest

from agent.api import create_app
from agent.api.context import AgentContext
from agent.collectors.gpu import GpuCollector
from agent.deployer import DeployError
from agent.local_log import LocalRequestLog
from agent.replicas import alive, version_runtime
from agent.serve_api import ServeAPI
from agent.serve_status import ServeStatus, diagnose
from agent.store import GPU_COLUMNS, Store
from agent.tokens import TokenBook
from serve.local_cluster import LocalCluster
from serve.model_store import ModelStore
from serve.replica_facts import read_facts
from tests.fake_nvml import FakeGpu, FakeNvml
from tests.integration.serve_helpers import deploy, digits_config

pytestmark = pytest.mark.ray


def test_gpu_version_is_placed_on_a_logical_gpu(demo_store, tmp_path):
    # A cluster that declares one logical GPU: Ray places the replica and sets
    # CUDA_VISIBLE_DEVICES, but no CUDA is behind it, so ONNX Runtime stays on the CPU, and
    # the replica says so to the host's agent: never a silent CPU run on a "GPU" version.
    spool = tmp_path / "spool"
    with LocalCluster(num_cpus=2, num_gpus=1, log_file=tmp_path / "ray.log") as cluster:
        config = digits_config(accelerator="gpu", num_gpus=0.5)
        plan = deploy(cluster, demo_store, {"digits": ["v1"]}, models=[config], spool_dir=spool)
        assert plan.plans["digits--v1"].device == "gpu" and plan.plans["digits--v1"].problem is None
        info = httpx.get(f"{cluster.serve_url}/models/digits/versions/v1", timeout=10).json()
        assert info["gpu_ids"] == ["0"]
        assert info["cuda_visible_devices"] == "0"
        assert info["provider"] == "CPUExecutionProvider"
        doc = asyncio.run(_status(cluster))
        dep = doc["applications"]["digits--v1"]["deployments"]["ModelVersion"]["deployment_config"]
        assert dep["ray_actor_options"]["num_gpus"] == 0.5
        assert dep["max_surge_percent"] > 0
        check_the_agent_names_the_cpu_fallback(spool, tmp_path)


def check_the_agent_names_the_cpu_fallback(spool, tmp_path) -> None:
    deadline = time.monotonic() + 30
    while not list((spool / "replicas").glob("*.json")):
        assert time.monotonic() < deadline, "the replica wrote no facts"
        time.sleep(0.5)
    (facts,) = read_facts(spool / "replicas", alive)
    assert facts.model == "digits" and facts.version == "v1" and facts.gpu_ids == ["0"]
    assert facts.asked_gpus == 0.5 and facts.provider == "CPUExecutionProvider"
    store = Store(tmp_path / "agent.duckdb")
    try:
        # FAKE NVML (no GPU here): GPU 0 shows the replica's process, and one other.
        gpu = GpuCollector(
            nvml=FakeNvml(
                gpus=[
                    FakeGpu(
                        "FAKE A100", "GPU-fake-0", processes=[(facts.pid, 3 << 29), (1, 1 << 20)]
                    )
                ]
            )
        )
        store.insert_rows("gpu_samples", GPU_COLUMNS, gpu.sample())
        log = LocalRequestLog(store, "gpu-host", spool)
        (report,) = log.replicas()
        assert report.gpu_memory == {"GPU-fake-0": 3 << 29}
        assert report.problem is not None
        assert report.problem.startswith("asked for GPU 0.5, running on CPU: this onnxruntime")
        assert "no CUDA provider" in report.problem and "trackside[gpu]" in report.problem
        runs_on, memory, problem = version_runtime([report], "digits", "v1")
        assert runs_on == {"CPU": 1} and memory == 3 << 29 and facts.host in (problem or "")
        ctx = AgentContext(
            store=store,
            tokens=TokenBook(tmp_path / "tokens", "t"),
            gpu=gpu,
            requests=log,
            local=log,
            spool=spool,
        )
        page, (gpu0,) = asyncio.run(
            _get(create_app(ctx), "/v1/replicas", "/v1/telemetry/gpu/latest")
        )
        assert page["rows"][0]["problem"] == report.problem
        named = [p for p in gpu0["processes"] if p.get("model")]
        assert named == [
            {
                "pid": facts.pid,
                "used_mem": 3 << 29,
                "model": "digits",
                "version": "v1",
                "replica": facts.replica,
            }
        ]
    finally:
        store.close()


async def _get(app, *paths: str) -> list:
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": "Bearer t"}
    async with httpx.AsyncClient(transport=transport, base_url="http://a", headers=headers) as c:
        return [(await c.get(p)).json() for p in paths]


async def _status(cluster) -> dict:
    async with ServeAPI(cluster.dashboard_url) as api:
        return await api.get_applications()


def test_gpu_version_without_gpu_is_reported_unschedulable_within_60s(ray_cluster, demo_store):
    config = digits_config(accelerator="gpu", num_gpus=0.5)
    started = time.monotonic()
    # Our plan knows at once: the deploy call says so instead of waiting forever.
    with pytest.raises(DeployError, match=r"needs GPU 0\.5, cluster has none"):
        deploy(ray_cluster, demo_store, {"digits": ["v1"]}, models=[config])
    # And Serve's own status, read with no plan at all (as after an agent restart), says the
    # same within 60 s.
    found = None
    while time.monotonic() - started < 60 and found is None:
        app = ServeStatus.parse(asyncio.run(_status(ray_cluster))).applications.get("digits--v1")
        found = diagnose(app) if app else None
        time.sleep(1)
    assert found == "unschedulable: needs GPU 0.5, cluster has none"
    assert time.monotonic() - started < 60


def test_tampered_artifact_is_refused_by_the_replica(ray_cluster, demo_store, tmp_path):
    store = ModelStore(tmp_path / "models")
    shutil.copytree(demo_store.root, store.root)
    manifest = store.manifest("digits", "v2")
    artifact = store.version_dir("digits", "v2") / manifest.artifact
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(DeployError) as info:
        deploy(ray_cluster, store, {"digits": ["v2"]}, timeout_s=150)
    message = str(info.value)
    assert "IntegrityError" in message and manifest.sha256 in message, message
