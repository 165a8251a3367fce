"""Router overhead: four paths to the same model version, measured side by side in one run.

(a) direct to the version's application, (b) a bare pass-through deployment with one handle
hop (Ray's own floor for any router), (c) the trackside router without logging, (d) the
router with logging and a 10% shadow. Paths alternate within each round, at 1 and at 16
concurrent clients (closed loop). Prints a table, the ratios, and one RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from agent.deployer import wait_until_running
from agent.serve_api import ServeAPI
from scripts.load import digit_rows
from scripts.train_demo_models import train_and_register
from serve.local_cluster import LocalCluster
from serve.model_config import parse_model_config
from serve.model_store import ModelStore
from serve.routing_table import RoutingTable
from serve.serve_config import Deployed, ServeTarget, desired_config, router_app_config

PATHS = {
    "a_direct": "/models/digits/versions/v1",
    "b_passthrough": "/bench/passthrough",
    "c_router": "/bench/router-nolog",
    "d_router_log_shadow": "/models/digits/predict",
}


async def deploy(cluster: LocalCluster, store: ModelStore, spool: Path) -> None:
    config = parse_model_config(
        {
            "model": "digits",
            # Fixed replicas: autoscaling mid-run would make the paths incomparable.
            "defaults": {"num_replicas": 1, "num_cpus": 0.25},
            "versions": {"v1": {}, "v2": {}},
        }
    )
    plain = RoutingTable(route_version=1, weights={"v1": 100})
    shadowed = RoutingTable.model_validate(
        {"route_version": 1, "weights": {"v1": 100}, "shadow": {"version": "v2", "fraction": 0.1}}
    )
    nolog = config.router.model_copy(update={"log_requests": False})
    apps = [
        router_app_config("digits", shadowed, config.router, spool),
        router_app_config(
            "digits",
            plain,
            nolog,
            None,
            name="bench--router-nolog",
            route_prefix="/bench/router-nolog",
        ),
        {
            "name": "bench--passthrough",
            "route_prefix": "/bench/passthrough",
            "import_path": "scripts.bench.passthrough_app:build",
            "args": {"target_app": "digits--v1"},
            "deployments": [
                {
                    "name": "PassThrough",
                    "max_ongoing_requests": 256,
                    "ray_actor_options": {"num_cpus": 0.25},
                }
            ],
        },
    ]
    target = ServeTarget(store_root=store.root, http_port=cluster.ports["serve_http"])
    async with ServeAPI(cluster.dashboard_url) as api:
        wanted = {"digits": Deployed(["v1", "v2"], None)}
        cluster_resources = await api.cluster_resources()
        plan = desired_config(
            {"digits": config}, wanted, cluster_resources, target, extra_apps=apps
        )
        await api.put_applications(plan.config)
        names = [a["name"] for a in plan.config["applications"]]
        await wait_until_running(api, names, plan.plans, timeout_s=180)


async def closed_loop(url: str, clients: int, seconds: float) -> dict[str, float]:
    rows = digit_rows()
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(c: int) -> None:
            nonlocal failures
            i = c
            while time.perf_counter() < deadline:
                body = json.dumps({"instances": [rows[i % len(rows)]]})
                i += clients
                t0 = time.perf_counter()
                async with session.post(
                    url, data=body, headers={"content-type": "application/json"}
                ) as r:
                    await r.read()
                    failures += r.status != 200
                latencies.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "rps": len(latencies) / elapsed,
        "failed": failures,
        "requests": len(latencies),
    }


async def shadows_sent(base: str) -> int:
    """Shadow copies the (one-replica) router has sent so far."""
    async with aiohttp.ClientSession() as session, session.get(base + "/models/digits") as r:
        return (await r.json())["shadow"]["sent"]


async def measure(base: str, rounds: int, seconds: float) -> dict[tuple[str, int], list[dict]]:
    out: dict[tuple[str, int], list[dict]] = {}
    for path in PATHS.values():  # warm every path (handles, batches, connections)
        await closed_loop(base + path, 4, 1.0)
    for r in range(rounds):
        for clients in (1, 16):
            order = list(PATHS.items())
            if r % 2:
                order.reverse()  # alternate so drift in the machine hits every path alike
            for name, path in order:
                sent = await shadows_sent(base)
                run = await closed_loop(base + path, clients, seconds)
                # The share of requests that really got a shadow copy (shed when busy).
                run["shadowed"] = (await shadows_sent(base) - sent) / run["requests"]
                out.setdefault((name, clients), []).append(run)
    return out


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per path, per round")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        store = ModelStore(tmp_path / "models")
        train_and_register(store, tmp_path)
        with LocalCluster(num_cpus=4, log_file=tmp_path / "ray.log") as cluster:
            asyncio.run(deploy(cluster, store, tmp_path / "spool"))
            results = asyncio.run(measure(cluster.serve_url, args.rounds, args.seconds))
            spooled = len(list((tmp_path / "spool").glob("*.parquet")))
    print(f"\nrouter overhead ({args.rounds} rounds x {args.seconds:g}s per path; medians)")
    print(
        f"{'path':<22}{'clients':>8}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'failed':>8}"
        f"{'shadowed':>10}"
    )
    table = {}
    for (name, clients), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        row = {k: median_of(runs, k) for k in ("p50", "p99", "rps", "shadowed")}
        row["failed"] = sum(run["failed"] for run in runs)
        table[(name, clients)] = row
        print(
            f"{name:<22}{clients:>8}{row['p50']:>10.1f}{row['p99']:>10.1f}{row['rps']:>10.1f}"
            f"{row['failed']:>8}{row['shadowed']:>10.1%}"
        )
    ratios = {}
    for clients in (1, 16):
        a, b, c, d = (table[(n, clients)] for n in PATHS)
        ratios[clients] = {
            "c_b_p50": c["p50"] / b["p50"],
            "d_b_p50": d["p50"] / b["p50"],
            "d_a_p50": d["p50"] / a["p50"],
            "c_b_rps": c["rps"] / b["rps"],
            "d_b_rps": d["rps"] / b["rps"],
            "d_a_rps": d["rps"] / a["rps"],
        }
        print(
            f"clients={clients}: " + "  ".join(f"{k}={v:.2f}" for k, v in ratios[clients].items())
        )
    print(f"spool files written by (d): {spooled}")
    fields = " ".join(f"{k}_c{cl}={v:.3f}" for cl, rs in ratios.items() for k, v in rs.items())
    fields += " " + " ".join(
        f"d_shadowed_c{cl}={table[('d_router_log_shadow', cl)]['shadowed']:.3f}" for cl in (1, 16)
    )
    print(f"RESULT router_overhead {fields}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
