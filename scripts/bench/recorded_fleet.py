"""A recorded-looking fleet: host snapshots generated from a seed (the same every run), for
the console benchmark and its snapshot tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from agent.client import AlertsPage, HostInfo, LatencyPoint, ModelStatus
from agent.schemas.alerts import AlertEvent, AlertState
from agent.schemas.batch import BatchDrift, BatchJob
from agent.schemas.drift import FeatureDrift
from console.poller import HostSnapshot
from serve.batch_contract import PhaseSeconds
from serve.routing_table import RoutingTable

THROTTLE = [[], [], [], ["sw_power_cap"], ["sw_thermal_slowdown"], ["hw_slowdown"]]
START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _alerts() -> AlertsPage:
    """Two alerts firing (a model version's, a host's), one pending, and what happened
    before."""
    at = START + timedelta(minutes=42)
    firing = AlertState(
        rule="inputs-drifted",
        model="digits",
        version="v2",
        state="firing",
        since=at,
        value=0.81,
        threshold=0.5,
        updated=at,
    )
    pending = AlertState(
        rule="accuracy-fell",
        model="digits",
        version="v2",
        state="pending",
        since=at + timedelta(seconds=20),
        value=0.79,
        threshold=0.85,
        updated=at,
    )
    xid = AlertState(
        rule="gpu-xid",
        model="",
        version="",
        host="gpu-03",
        state="firing",
        since=at + timedelta(seconds=35),
        value=1,
        threshold=0,
        updated=at,
    )
    history = [
        AlertEvent(
            ts=at + timedelta(seconds=35),
            rule="gpu-xid",
            model="",
            version="",
            host="gpu-03",
            change="firing",
            value=1,
            threshold=0,
            message="gpu-03 gpu_xid 1 > 0 for 0 s",
        ),
        AlertEvent(
            ts=at,
            rule="inputs-drifted",
            model="digits",
            version="v2",
            change="firing",
            value=0.81,
            threshold=0.5,
            message="digits/v2 drifted_share 0.81 > 0.5 for 10 s",
        ),
        AlertEvent(
            ts=at - timedelta(minutes=30),
            rule="errors",
            model="digits",
            version="v1",
            change="resolved",
            value=0.01,
            threshold=0.05,
            message="digits/v1 error_rate 0.01: back within 0.05",
        ),
    ]
    return AlertsPage(firing=[firing, xid], pending=[pending], history=history)


def _gpus(rng: random.Random, host: int, count: int) -> tuple[list[dict], dict[str, list[float]]]:
    latest, history = [], {}
    for i in range(count):
        uuid = f"GPU-{host:03d}-{i}"
        series = [min(100.0, max(0.0, rng.gauss(60, 25))) for _ in range(30)]
        history[uuid] = series
        latest.append(
            {
                "gpu_index": i,
                "uuid": uuid,
                "name": "NVIDIA A100-SXM4-80GB",
                "util_gpu": series[-1],
                "mem_used": rng.randint(5, 78) << 30,
                "mem_total": 80 << 30,
                "temp_c": rng.randint(35, 84),
                "power_w": rng.uniform(80, 400),
                "throttle_reasons": rng.choice(THROTTLE),
                # What the agent names: replicas of model versions, and other processes.
                "processes": [
                    {"pid": 1000 + i, "used_mem": 9 << 30, "model": "digits", "version": "v1"},
                    *([{"pid": 2000 + i, "used_mem": 1 << 30}] if i % 2 else []),
                ],
                "xid_errors": 2 if (host, i) == (3, 1) else 0,
                "last_xid": 79 if (host, i) == (3, 1) else None,
                "ecc_uncorrected": 1 if (host, i) == (3, 1) else 0,
            }
        )
    return latest, history


def batch_jobs() -> list[BatchJob]:
    """A nightly job running, one that finished with rows set aside and drift, one failed."""
    at = START + timedelta(minutes=30)
    base = {
        "model": "digits",
        "sha256": "aa8afafb09bf" + "0" * 52,
        "input_sha256": "5e1d0c7d2a9b" + "0" * 52,
        "format": "parquet",
    }
    features = [
        FeatureDrift(
            feature=f"px_{i // 8}_{i % 8}",
            kind="numeric",
            test="ks",
            reference_rows=600,
            current_rows=999_412,
            statistic=0.31 if i in (19, 27, 35) else 0.01,
            p_value=1e-9 if i in (19, 27, 35) else 0.6,
            p_adjusted=1e-8 if i in (19, 27, 35) else 0.9,
            psi=0.42 if i in (19, 27, 35) else 0.01,
            wasserstein=0.3 if i in (19, 27, 35) else 0.01,
            drifted=i in (19, 27, 35),
        )
        for i in range(64)
    ]
    return [
        BatchJob(
            **base,
            id="digits-20261121-123000-4f2a1c",
            selector="best:accuracy",
            version="v2",
            input="/data/customers/2026-11-21/*.parquet",
            files=12,
            output="/data/scores/digits/20261121T1230Z",
            state="running",
            who="schedule nightly",
            schedule="nightly",
            started_at=at,
            total=1_200_000,
            read=734_208,
            scored=734_190,
            rejected=18,
            rows_per_s=61_184.0,
            eta_s=7.6,
        ),
        BatchJob(
            **base,
            id="digits-20261121-120500-9b0d3e",
            selector="stable",
            version="v1",
            input="/data/customers/2026-11-20",
            files=8,
            output="/data/scores/digits/adhoc-1120",
            state="succeeded",
            who="oncall",
            started_at=at - timedelta(minutes=25),
            ended_at=at - timedelta(minutes=24),
            total=1_000_000,
            read=1_000_000,
            scored=999_412,
            rejected=588,
            duration_s=41.3,
            provider="CPUExecutionProvider",
            phases=PhaseSeconds(validate_s=6.2, score_s=51.8, write_s=4.4),
            drift=BatchDrift(
                reference_rows=600,
                current_rows=999_412,
                drifted=["px_2_3", "px_3_3", "px_4_3"],
                features=features,
                prediction=None,
            ),
        ),
        BatchJob(
            **base,
            id="digits-20261121-115000-77c1aa",
            selector="v3",
            version="v3",
            input="/data/customers/2026-11-20",
            files=8,
            output="/data/scores/digits/v3-try",
            state="failed",
            who="oncall",
            started_at=at - timedelta(minutes=40),
            ended_at=at - timedelta(minutes=40),
            total=1_000_000,
            duration_s=6.0,
            error="digits/v3 asked for a GPU but ONNX Runtime runs it on CPUExecutionProvider"
            " (is this the onnxruntime-gpu build, and a GPU free?)",
        ),
    ]


def recorded_fleet(hosts: int = 64, gpus: int = 8, seed: int = 0) -> dict[str, HostSnapshot]:
    rng = random.Random(seed)
    out: dict[str, HostSnapshot] = {}
    for h in range(hosts):
        name = f"gpu-{h:02d}"
        controller = h == 0
        latest, history = _gpus(rng, h, gpus)
        cpu = [min(100.0, max(0.0, rng.gauss(40, 20))) for _ in range(30)]
        mem = [min(100.0, max(0.0, rng.gauss(55, 10))) for _ in range(30)]
        down = h % 29 == 7  # a couple of hosts are unreachable, as in real life
        out[name] = HostSnapshot(
            name=name,
            address=f"{name}.example.internal",
            connected=not down,
            error="gpu-07: cannot reach gpu-07.example.internal over SSH: timed out"
            if down
            else None,
            poll_ms=rng.uniform(20, 180),
            retry_in_s=8.0 if down else None,
            info=HostInfo(
                hostname=name,
                role="controller" if controller else "agent",
                gpu_status=f"ok: {gpus} GPU(s)",
                gpus=[],
                cpu_count=128,
                mem_total=1 << 40,
                started_at=START,
                collectors={"host": "ok", "gpu": "ok"},
            ),
            host={"cpu_pct": cpu[-1], "mem_pct": mem[-1], "load1": rng.uniform(1, 60)},
            cpu_history=cpu,
            mem_history=mem,
            gpus=latest,
            gpu_history=history,
            models=_models() if controller else None,
            latency=_latency() if controller else [],
            alerts=_alerts() if controller else None,
            paths=[
                "/health",
                "/v1/host",
                "/v1/models",
                "/v1/audit",
                "/v1/requests",
                "/v1/alerts",
                "/v1/batch-jobs",
            ],
        )
    return out


def _models() -> list[ModelStatus]:
    table = RoutingTable.model_validate(
        {
            "route_version": 12,
            "weights": {"v1": 90, "v2": 10},
            "shadow": {"version": "v3", "fraction": 0.05},
            "fallback": "v1",
        }
    )
    scaling = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16}
    return [
        ModelStatus(
            model="digits",
            stable="v1",
            previous_stable=["v0"],
            table=table,
            router_status="RUNNING",
            versions=[
                {
                    "version": "v1",
                    "weight": 90,
                    "is_stable": True,
                    "is_fallback": True,
                    "app_status": "RUNNING",
                    "replicas": {"RUNNING": 3},
                    "runs_on": {"CUDA": 3},
                    "gpu_memory": 27 << 30,
                    "autoscaling": scaling,
                },
                {
                    "version": "v2",
                    "weight": 10,
                    "app_status": "RUNNING",
                    "replicas": {"RUNNING": 1},
                    "runs_on": {"CPU": 1},
                    "autoscaling": scaling,
                    "problem": "gpu-02 digits--v2#ModelVersion#x7: asked for GPU 0.5, running on"
                    " CPU: this onnxruntime (1.32.0) has no CUDA provider; install trackside[gpu]"
                    " (onnxruntime-gpu) on the host",
                },
                {
                    "version": "v3",
                    "shadow_fraction": 0.05,
                    "app_status": "DEPLOYING",
                    "replicas": {"PENDING_ALLOCATION": 1},
                    "autoscaling": scaling,
                    "problem": "unschedulable: needs GPU 0.5, cluster has none",
                },
            ],
        )
    ]


def _latency() -> list[LatencyPoint]:
    t = START + timedelta(minutes=5)
    return [
        LatencyPoint(
            t=t,
            model="digits",
            version="v1",
            requests=5400,
            rps=90.0,
            error_rate=0.001,
            p50_ms=21.0,
            p95_ms=48.0,
            p99_ms=85.0,
        ),
        LatencyPoint(
            t=t,
            model="digits",
            version="v2",
            requests=600,
            rps=10.0,
            error_rate=0.004,
            p50_ms=19.0,
            p95_ms=35.0,
            p99_ms=61.0,
        ),
    ]
