"""The controller of a large fleet: N simulated agents (in-process ASGI apps, so the machine
runs one event loop for all of them) answer a fleet-wide canary judgement and a 24 h drift
report of one model, through the real FleetRequestLog, its HTTP client, gzip, and the merge.

Each simulated agent serves what a real one would for a day of traffic: per-feature counts on
the version's bins (20 features, 16 normal and 4 small-integer; about 20k numbers), predicted
labels, and the canary window's per-call latencies. Prints time and bytes for each size and
one RESULT line; the goal at 1,000 hosts is <= 5 s and <= 100 MB.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agent.analysis.bins import bin_counts
from agent.analysis.drift import drift_reports
from agent.fleet_log import FleetRequestLog, Peer
from agent.local_log import LocalRequestLog
from agent.request_log import DriftSource, dense_features
from agent.rollout_judge import judge_rollout
from agent.rollout_machine import start
from agent.schemas.drift import DriftThresholds
from agent.schemas.fleet import Columns, LabelCount, PairTotals
from agent.store import Store
from scripts.bench.synthetic_model import FEATURES, MODEL, VERSION, register
from serve.model_config import RolloutPolicy

TEMPLATES = 50  # distinct synthetic hosts; host i answers as template i % TEMPLATES
CALLS_PER_HOST = 60  # the canary step's calls on one host (a 5 min step at ~0.2 rps a host)


def reference(path: Path, rows: int = 100_000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    cols = {f: rng.normal(0, 1, rows) for f in FEATURES[:16]}
    cols.update({f: rng.poisson(3, rows).astype(float) for f in FEATURES[16:]})
    cols["prediction"] = (cols["f0"] > 0).astype(np.int64)
    con = duckdb.connect()
    con.register("ref", cols)
    con.execute(f"COPY ref TO '{path}' (FORMAT parquet)")
    con.close()
    return cols


def host_answers(log: LocalRequestLog, seed: int) -> dict[str, bytes]:
    """One simulated host's answers (gzip-encoded JSON, as an agent's GZipMiddleware sends
    them): a day of feature counts on the version's bins, labels, and a canary window."""
    rng = np.random.default_rng(seed)
    vb = log.bins(MODEL, VERSION)
    parts = []
    for i, b in enumerate(vb.bins):
        values = rng.normal(0.02 * (seed % 5), 1, 5000) if i < 16 else rng.poisson(3, 5000)
        n, vsum = bin_counts(b, np.asarray(values, dtype=float))
        used = np.flatnonzero(n)
        parts.append((np.zeros(len(used)), np.full(len(used), i), used, n[used], vsum[used]))
    bucket, feature, bin_, n, vsum = (np.concatenate(x) for x in zip(*parts, strict=True))
    sparse = {"bucket": bucket, "feature": feature, "bin": bin_, "n": n, "vsum": vsum}
    features = Columns.of(dense_features(vb, list(range(len(vb.bins))), 1, sparse))
    labels = [LabelCount(bucket=0, label=str(k), n=int(rng.integers(2000, 3000))) for k in (0, 1)]
    now_us = int(datetime.now(UTC).timestamp() * 1e6)
    calls = Columns.of(
        {
            "ts_us": now_us - rng.integers(0, 250_000_000, CALLS_PER_HOST),
            "total_ms": rng.lognormal(np.log(20), 0.4, CALLS_PER_HOST),
            "canary": rng.random(CALLS_PER_HOST) < 0.5,
            "failed": rng.random(CALLS_PER_HOST) < 0.005,
        }
    )
    pairs = PairTotals(pairs=CALLS_PER_HOST // 4, disagreements=0)
    docs = {
        "/v1/fleet/features": features.model_dump_json(),
        "/v1/fleet/labels": "[" + ",".join(x.model_dump_json() for x in labels) + "]",
        "/v1/fleet/calls": calls.model_dump_json(),
        "/v1/fleet/pairs": pairs.model_dump_json(),
    }
    return {path: gzip.compress(doc.encode(), 5) for path, doc in docs.items()}


def simulated_agents(templates: list[dict[str, bytes]]) -> Starlette:
    """Every simulated agent in one ASGI app: the Host header says which one is asked."""

    async def answer(request: Request) -> Response:
        host = request.headers.get("host", "host-0")
        body = templates[int(host.rsplit("-", 1)[1]) % len(templates)][request.url.path]
        return Response(body, media_type="application/json", headers={"content-encoding": "gzip"})

    paths = list(templates[0])
    return Starlette(routes=[Route(p, answer) for p in paths])


def run(hosts: int, log: LocalRequestLog, app: Starlette, token: str, ref: Path) -> dict:
    transport = httpx.ASGITransport(app=app)
    peers = [Peer(f"host-{i}", f"http://host-{i}", transport) for i in range(1, hosts + 1)]
    fleet = FleetRequestLog(log, peers, token, deadline_s=30, max_concurrency=128)
    try:
        until = datetime.now(UTC).replace(tzinfo=None)
        source = DriftSource(MODEL, VERSION, ref, list(FEATURES))
        t0 = time.perf_counter()
        (report,) = drift_reports(
            fleet, source, until - timedelta(hours=24), until, DriftThresholds()
        )
        drift_s = time.perf_counter() - t0
        drift_bytes = fleet.bytes_received
        policy = RolloutPolicy(steps=[50, 100])
        begun = datetime.now(UTC) - timedelta(minutes=5)
        rollout, _ = start(MODEL, "v2", VERSION, policy, begun, "bench")
        t0 = time.perf_counter()
        judgement = judge_rollout(fleet, rollout, datetime.now(UTC))
        judge_s = time.perf_counter() - t0
        judge_bytes = fleet.bytes_received - drift_bytes
    finally:
        fleet.close()
    return {
        "hosts": hosts,
        "drift_s": drift_s,
        "drift_mb": drift_bytes / 1e6,
        "judge_s": judge_s,
        "judge_mb": judge_bytes / 1e6,
        "rows": report.rows,
        "verdict": judgement.verdict,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ref = tmp / "reference.parquet"
        reference(ref)
        root = register(tmp / "models", ref)
        store = Store(tmp / "controller.duckdb", model_store=root)
        log = LocalRequestLog(store, host="controller")
        log.bins(MODEL, VERSION)
        templates = [host_answers(log, seed) for seed in range(TEMPLATES)]
        app = simulated_agents(templates)
        results = [run(n, log, app, "fleet-token", ref) for n in args.hosts]
        store.close()
    print(
        f"\n{'hosts':>6} {'drift 24h s':>12} {'drift MB':>9} {'judge s':>8} {'judge MB':>9}"
        f" {'rows':>12} {'verdict':>9}"
    )
    for r in results:
        print(
            f"{r['hosts']:>6} {r['drift_s']:>12.2f} {r['drift_mb']:>9.1f} {r['judge_s']:>8.2f}"
            f" {r['judge_mb']:>9.2f} {r['rows']:>12,} {r['verdict']:>9}"
        )
    last = results[-1]
    print(
        f"RESULT fleet hosts={last['hosts']} drift_s={last['drift_s']:.2f}"
        f" drift_mb={last['drift_mb']:.1f} judge_s={last['judge_s']:.2f}"
        f" judge_mb={last['judge_mb']:.2f} "
        + " ".join(f"drift_s_{r['hosts']}={r['drift_s']:.2f}" for r in results)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
