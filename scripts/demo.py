"""`make demo`: train the demo models if needed, start Ray Serve with both digits versions.

Everything runs on this machine and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import tomllib
from pathlib import Path

from agent.deployer import DeployError, plan_deployment, wait_until_running
from agent.serve_api import ServeAPI
from serve.local_cluster import LocalCluster
from serve.model_config import load_model_config
from serve.model_store import ModelStore
from serve.serve_config import ServeTarget

ROOT = Path(__file__).resolve().parent.parent


def ensure_demo_models(store: ModelStore) -> None:
    if store.exists("digits", "v1") and store.exists("digits", "v2"):
        print(f"demo models already in {store.root}")
        return
    from scripts.train_demo_models import main as train

    train(["--store", str(store.root)])


async def deploy(cluster: LocalCluster, store: ModelStore, model_configs: list[Path]) -> None:
    models = [load_model_config(ROOT / p) for p in model_configs]
    target = ServeTarget(store_root=store.root, http_port=cluster.ports["serve_http"])
    async with ServeAPI(cluster.dashboard_url) as api:
        versions = {m.model: [v for v in m.versions if v != "*"] for m in models}
        started = time.monotonic()
        plan = await plan_deployment(api, models, versions, target)
        await api.put_applications(plan.config)
        await wait_until_running(api, list(plan.plans), plan.plans, timeout_s=180)
        print(f"deployed {', '.join(plan.plans)} in {time.monotonic() - started:.1f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/demo.toml")
    parser.add_argument("--no-wait", action="store_true", help="stop after deploying (smoke test)")
    args = parser.parse_args(argv)
    config = tomllib.loads(args.config.read_text())
    ray_cfg = config.get("ray", {})
    store = ModelStore(ROOT / config.get("store", {}).get("path", ".trackside/models"))
    ensure_demo_models(store)

    data = ROOT / ".trackside"
    data.mkdir(exist_ok=True)
    cluster = LocalCluster(
        num_cpus=ray_cfg.get("num_cpus", 2),
        ports={
            "dashboard": ray_cfg.get("dashboard_port", 8265),
            "serve_http": ray_cfg.get("serve_port", 8000),
            "gcs": ray_cfg.get("gcs_port", 6379),
        },
        log_file=data / "ray.log",
    )
    print(f"starting Ray (log: {cluster.log_file}) ...")
    started = time.monotonic()
    cluster.start()
    print(f"Ray is up in {time.monotonic() - started:.1f}s; dashboard {cluster.dashboard_url}")
    try:
        asyncio.run(deploy(cluster, store, config.get("models", {}).get("configs", [])))
        url = f"{cluster.serve_url}/models/digits/versions/v1"
        print(
            "\nquery a version:\n"
            f"  curl -s -X POST {url} -H 'content-type: application/json' \\\n"
            '    -d \'{"instances": [[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,'
            "0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,"
            "10,0,0,0]]}'\n"
            f"  curl -s {url}        # which artifact and replica answer\n"
        )
        if not args.no_wait:
            print("Ctrl-C stops everything.")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except DeployError as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping Ray ...")
        cluster.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
