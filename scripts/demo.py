"""`make demo`: the whole system on this machine, ending in the console.

Trains the demo models if needed, starts a local Ray head node (loopback only), the agent in
the controller role (which deploys digits/v1 behind the router), deploys digits/v2 and splits
traffic 90/10, runs a small steady load, and opens the console on it. Quitting the console
(q) stops all of it, in reverse order.

The load tells a story: its true labels reach the controller's /v1/feedback a few seconds
after each call (accuracy per version), and after `drift_after_s` its inputs shift (noise on
every pixel): drift shows on the Drift screen, accuracy falls, and the model's alerts fire and
run their hook (`scripts/alert_hook.py` appends a line to .trackside/alerts.log).
`--headless --duration 90` does the same without the console and prints a summary.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agent.client import AgentClient, AgentError
from agent.defaults import DEFAULT_PORT
from scripts.alert_hook import ALERT_LOG_ENV
from serve.config_file import ConfigError, load_toml
from serve.local_cluster import LocalCluster
from serve.model_store import ModelStore
from serve.ray_token import token_auth_env

ROOT = Path(__file__).resolve().parent.parent
# The demo's data folder (tests give it another, with other ports in their demo config).
DATA = Path(os.environ.get("TRACKSIDE_DEMO_DATA", ROOT / ".trackside"))
BATCH_DATA = DATA / "batch-data"  # what batch jobs may read and write in the demo


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RaySection(_Section):
    num_cpus: float = 2
    dashboard_port: int = 8265
    serve_port: int = 8000
    gcs_port: int = 6379


class ModelStoreSection(_Section):
    path: Path = DATA / "models"


class ModelsSection(_Section):
    configs: list[Path] = Field(default_factory=lambda: [Path("configs/models/digits.toml")])


class DemoSection(_Section):
    agent_port: int = DEFAULT_PORT
    load_rps: float = 5
    drift_after_s: float = 45  # then the load's inputs shift
    truth_delay_s: float = 5  # the load's true labels reach /v1/feedback this much later
    alert_interval_s: float = 5  # the controller evaluates the alerts this often


class DemoConfig(_Section):
    """`configs/demo.toml`."""

    ray: RaySection = Field(default_factory=RaySection)
    model_store: ModelStoreSection = Field(default_factory=ModelStoreSection)
    models: ModelsSection = Field(default_factory=ModelsSection)
    demo: DemoSection = Field(default_factory=DemoSection)


def ensure_demo_models(store: ModelStore) -> None:
    if store.exists("digits", "v1") and store.exists("digits", "v2"):
        print(f"demo models already in {store.root}")
        return
    from scripts.train_demo_models import main as train

    train(["--store", str(store.root)])


def write_batch_sample(rows: int = 20_000) -> Path:
    """A file of digits to score with `trackside batch` (three bad rows among them)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scripts.train_demo_models import FEATURES, split

    path = BATCH_DATA / "customers.parquet"
    if path.exists():
        return path
    BATCH_DATA.mkdir(parents=True, exist_ok=True, mode=0o700)
    x = split()[1].astype(np.float64)
    data = x[np.arange(rows) % len(x)]
    data[[17, 4242], 9] = np.nan  # missing pixels: set aside with the reason
    data[9000, 30] = np.inf
    pq.write_table(pa.table({f: data[:, j] for j, f in enumerate(FEATURES)}), path)
    os.chmod(path, 0o600)
    return path


def start_agent(ray: LocalCluster, config: DemoConfig) -> subprocess.Popen:
    """The controller, with the cluster's token (Ray's token auth is on)."""
    agent_toml = DATA / "demo-agent.toml"
    models = ", ".join(f'"{ROOT / p}"' for p in config.models.configs)
    agent_toml.write_text(
        f'data_dir = "{DATA}"\n[api]\nport = {config.demo.agent_port}\n'
        f'[controller]\nenabled = true\ndashboard = "{ray.dashboard_url}"\n'
        f"serve_port = {ray.ports['serve_http']}\nmodels = [{models}]\n"
        f"alert_interval_s = {config.demo.alert_interval_s}\n"
        f'batch_roots = ["{BATCH_DATA}"]\n'
        f'[model_store]\npath = "{ROOT / config.model_store.path}"\n'
    )
    log = open(DATA / "agent.log", "ab")  # noqa: SIM115 - the child keeps writing to it
    return subprocess.Popen(
        [sys.executable, "-m", "agent.daemon", "--config", str(agent_toml)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        # The demo's alert hook (scripts/alert_hook.py) writes where the demo looks.
        env={**os.environ, **ray.env, ALERT_LOG_ENV: str(DATA / "alerts.log")},
    )


def wait_for(what: str, check, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except AgentError as exc:
            last = exc.message
        time.sleep(1)
    raise RuntimeError(f"{what} did not happen within {timeout_s:.0f}s ({last})")


def stop(proc: subprocess.Popen | None, name: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    print(f"stopping {name} ...")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/demo.toml")
    parser.add_argument("--no-wait", action="store_true", help="stop once it runs (smoke test)")
    parser.add_argument("--no-console", action="store_true", help="wait for Ctrl-C instead")
    parser.add_argument(
        "--headless", action="store_true", help="no console: run --duration s, print a summary"
    )
    parser.add_argument("--duration", type=float, default=90, help="seconds, with --headless")
    args = parser.parse_args(argv)
    try:
        config = load_toml(args.config, DemoConfig, "demo config")
    except ConfigError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    DATA.mkdir(exist_ok=True)
    store = ModelStore(ROOT / config.model_store.path)
    ensure_demo_models(store)

    cluster = LocalCluster(
        num_cpus=config.ray.num_cpus,
        ports={
            "dashboard": config.ray.dashboard_port,
            "serve_http": config.ray.serve_port,
            "gcs": config.ray.gcs_port,
        },
        log_file=DATA / "ray.log",
        # Ray's token auth on: the dashboard deploys code, and this host has other users.
        env=token_auth_env(DATA / "ray.token"),
    )
    agent = load = None
    agent_port = config.demo.agent_port
    try:
        print(f"starting Ray (log {cluster.log_file}) ...")
        started = time.monotonic()
        cluster.start()
        print(f"Ray is up in {time.monotonic() - started:.1f}s; dashboard {cluster.dashboard_url}")
        agent = start_agent(cluster, config)
        url = f"http://127.0.0.1:{agent_port}"
        wait_for("agent start", lambda: (DATA / "agent.token").exists() and _health(url), 60)
        client = AgentClient(url, token=(DATA / "agent.token").read_text().strip(), user="demo")
        print(f"agent (controller) on {url}; log {DATA / 'agent.log'}")
        wait_for("digits/v1 behind the router", lambda: _running(client, {"v1"}))
        client.deploy("digits", "v2")
        wait_for("digits/v2", lambda: _running(client, {"v1", "v2"}))
        result = client.set_traffic("digits", {"v1": 90, "v2": 10}, fallback="v1")
        print(f"traffic: {result.message}; {result.after.weights}")
        predict = f"{cluster.serve_url}/models/digits/predict"
        sample = write_batch_sample()
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scripts.load",
                predict,
                "--rps",
                str(config.demo.load_rps),
                "--duration",
                "86400",
                "--users",
                "500",
                "--drift-after",
                str(config.demo.drift_after_s),
                "--truth",
                url,
                "--truth-token-file",
                str(DATA / "agent.token"),
                "--truth-delay",
                str(config.demo.truth_delay_s),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        print(
            f"\nthe system is up, {config.demo.load_rps:g} requests/s flowing:\n"
            f"  curl -s -X POST {predict} -H 'x-trackside-key: alice' \\\n"
            '    -d \'{"instances": [[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,'
            "0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,"
            "10,0,0,0]]}' -i\n"
            "  .venv/bin/trackside status\n"
            "  .venv/bin/trackside traffic digits v1=50 v2=50\n"
            "  .venv/bin/trackside promote digits v2 ; .venv/bin/trackside rollback digits\n"
            f"  .venv/bin/trackside batch digits --input {sample}"
            f" --output {BATCH_DATA / 'scores-1'}\n"
            f'  curl -s -H "Authorization: Bearer $(cat {DATA / "agent.token"})"'
            f" {url}/v1/telemetry/latency?model=digits\n"
        )
        if args.no_wait:
            return 0
        if args.headless:
            began = datetime.now(UTC)
            shift = config.demo.drift_after_s
            print(f"running for {args.duration:g} s; the inputs shift after {shift:g} s")
            time.sleep(args.duration)
            print(headless_summary(client, began))
            return 0
        if sys.stdin.isatty() and sys.stdout.isatty() and not args.no_console:
            from console.app import TracksideConsole
            from console.sources import LocalSource

            source = LocalSource(url, token_file=DATA / "agent.token")
            TracksideConsole([source]).run()  # q quits the console and stops the demo
        else:
            print("Ctrl-C stops everything.")
            wait_for_signal()
        return 0
    except (RuntimeError, AgentError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stop(load, "load")
        stop(agent, "agent")
        print("stopping Ray ...")
        cluster.stop()


def headless_summary(client: AgentClient, since: datetime) -> str:
    """What happened: requests per version, drifted features, accuracy, alerts and hooks."""
    lines = ["", "summary"]
    accuracy = client.accuracy("digits", since=since).versions
    calls = {v.version: v.calls for v in accuracy}
    lines.append("  requests: " + ", ".join(f"{v} {n}" for v, n in sorted(calls.items())))
    for version in sorted(calls):
        report = client.drift("digits", version, since=since)
        drifted = [f.feature for f in report.features if f.drifted]
        lines.append(
            f"  drift of {version}: {len(drifted)} of {len(report.features)} features drifted"
        )
    for v in accuracy:
        right = "-" if v.accuracy is None else f"{v.accuracy:.1%}"
        lines.append(f"  accuracy of {v.version}: {right} on {v.labelled} labelled calls")
    page = client.alerts()
    fired = [e for e in page.history if e.change == "firing"]
    lines.append(f"  alerts fired: {len(fired)}")
    lines += [f"    {e.ts:%H:%M:%S} {e.message}" for e in reversed(fired)]
    hook_log = DATA / "alerts.log"
    hooks = hook_log.read_text().splitlines() if hook_log.exists() else []
    ran = [h for h in hooks if h >= since.strftime("%Y-%m-%dT%H:%M:%S")]
    lines.append(f"  hooks run: {len(ran)} (lines in {hook_log})")
    return "\n".join(lines)


def _health(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _running(client: AgentClient, versions: set[str]) -> bool:
    models = {m.model: m for m in client.models()}
    model = models.get("digits")
    if model is None or model.router_status != "RUNNING":
        return False
    status = {v.version: v.app_status for v in model.versions}
    return all(status.get(v) == "RUNNING" for v in versions)


def wait_for_signal() -> None:
    """Until Ctrl-C or SIGTERM. (Blocking the signals instead would be inherited by every
    child process, which then could not be stopped with SIGTERM.)"""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
