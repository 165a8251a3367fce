"""A fleet on this machine: `python -m scripts.fleet up --nodes 3` (or `make fleet`), and
`python -m scripts.fleet down` to stop it.

`up` starts a Ray cluster of N nodes with `ray start` (the head and N-1 workers, each with its
own ports and a custom resource naming its "host"; the last has a logical GPU), one agent per
node with its own data folder, spool and port, the controller on the head (its fleet is the
fleet file it writes), the demo models behind a router with one replica on every node (each
writing its node's spool), and a fleet file for the console. It ends by printing one line per
part, for scripts:

    fleet FILE
    controller URL token=FILE
    node NAME agent=URL serve=URL

On one machine every node's Serve proxy shares one port (Serve binds it with SO_REUSEPORT), so
each node's `serve=` is the same address: the kernel spreads connections over the proxies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from agent.client import AgentClient, AgentError
from serve.cluster_watchdog import node_processes
from serve.local_cluster import LocalCluster, free_port
from serve.model_store import ModelStore
from serve.names import HOST_ENV, SPOOL_ENV
from serve.ray_token import token_auth_env

ROOT = Path(__file__).resolve().parent.parent
NAMES = "abcdefghij"
STATE = "fleet.json"


@dataclass
class NodeState:
    name: str
    ray_pid: int
    agent_pid: int
    agent_port: int
    data_dir: str


@dataclass
class FleetState:
    temp_dir: str
    dashboard: str
    serve_url: str
    nodes: list[NodeState]


def model_toml(folder: Path, nodes: int) -> Path:
    path = folder / "digits.toml"
    path.write_text(
        f"""# The demo model on the local fleet: a router replica on every node.
model = "digits"
stable = "v1"
[defaults]
accelerator = "cpu"  # node-c's GPU is logical: no version asks for it here
num_cpus = 0.1
[defaults.autoscaling]
min_replicas = 1
max_replicas = 2
[versions.v1]
[versions.v2]
[router]
num_replicas = {nodes}
max_replicas_per_node = 1
num_cpus = 0.1
[rollout]
steps = [50, 100]
min_dwell_s = 20
[rollout.gates]
min_requests = 50
min_pairs = 20
"""
    )
    return path


def agent_toml(node: Path, name: str, port: int, store: Path, fleet: Path, token: Path) -> Path:
    path = node / "agent.toml"
    path.write_text(
        f'data_dir = "{node / "data"}"\nspool_dir = "{node / "spool"}"\n'
        f"[api]\nport = {port}\n"
        "[collect]\ninterval_s = 1.0\ningest_interval_s = 0.5\n"
        f'[model_store]\npath = "{store}"\n'
        f'[fleet]\nhost = "{name}"\nfile = "{fleet}"\ntoken_file = "{token}"\n'
    )
    return path


def write_fleet_file(path: Path, nodes: list[tuple[str, int, Path]]) -> None:
    lines = [
        "# The local fleet (scripts/fleet.py): agents reached directly on 127.0.0.1.",
        "",
    ]
    for name, port, data in nodes:
        lines += [
            "[[hosts]]",
            f'name = "{name}"',
            'address = "127.0.0.1"',
            f"agent_port = {port}",
            f'url = "http://127.0.0.1:{port}"',
            f'token_file = "{data / "agent.token"}"',
            "",
        ]
    path.write_text("\n".join(lines))


def start_agent(
    config: Path, log: Path, controller: bool, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "agent.daemon", "--config", str(config)]
    if controller:
        command.append("--controller")
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
            env={**os.environ, **env},
        )


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited ({proc.returncode}): {log.read_text()[-1500:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"agent at {url} did not start")


def up(folder: Path, nodes: int) -> int:
    folder = folder.resolve()
    if (folder / STATE).exists():
        print(f"a fleet is up already ({folder / STATE}); `down` first", file=sys.stderr)
        return 1
    folder.mkdir(parents=True, exist_ok=True)
    store = ModelStore(folder / "models")
    if not (store.exists("digits", "v1") and store.exists("digits", "v2")):
        from scripts.train_demo_models import train_and_register

        work = folder / "train"
        work.mkdir(exist_ok=True)
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the lines scripts read
            train_and_register(store, work)
    names = [f"node-{NAMES[i]}" for i in range(nodes)]
    ports = [free_port() for _ in names]
    fleet_file = folder / "fleet.toml"
    fleet_token = folder / "fleet.token"
    hosts = [(n, p, folder / n / "data") for n, p in zip(names, ports, strict=True)]
    write_fleet_file(fleet_file, hosts)
    # Ray's token auth on, as on a real fleet: the dashboard deploys code (README).
    ray_auth = token_auth_env(folder / "ray.token")
    rays: list[LocalCluster] = []
    agents: list[subprocess.Popen[bytes]] = []
    states = []
    try:
        for i, name in enumerate(names):
            node = folder / name
            (node / "spool").mkdir(parents=True, exist_ok=True)
            options = {
                "num_cpus": 2 if i == 0 else 1,
                "num_gpus": 1 if i == nodes - 1 and nodes > 1 else 0,
                "resources": {f"host_{NAMES[i]}": 1},
                "env": {HOST_ENV: name, SPOOL_ENV: str(node / "spool"), **ray_auth},
                "log_file": node / "ray.log",
                "watchdog": False,
                "multi_node": True,
                "node_ip": f"127.0.0.{2 + i}",
            }
            cluster = (
                LocalCluster(**options) if i == 0 else LocalCluster.worker_of(rays[0], **options)
            )
            print(f"starting Ray node {name} ...", file=sys.stderr)
            rays.append(cluster.start(timeout_s=120))
        head = rays[0]
        for i, name in enumerate(names):
            node = folder / name
            config = agent_toml(node, name, ports[i], store.root, fleet_file, fleet_token)
            if i == 0:
                config.write_text(
                    config.read_text() + f'[controller]\ndashboard = "{head.dashboard_url}"\n'
                    f"serve_port = {head.ports['serve_http']}\n"
                    f'models = ["{model_toml(folder, nodes)}"]\n'
                    # Batch jobs read and write here: one folder every node sees (one disk).
                    f'batch_roots = ["{folder / "batch"}"]\n'
                    # The fleet's own watch: an agent that stops answering, a GPU in trouble.
                    "alert_interval_s = 2\n"
                    '[[controller.alerts]]\nname = "agent-down"\nkind = "agent_down"\nfor = 4\n'
                    '[[controller.alerts]]\nname = "gpu-xid"\nkind = "gpu_xid"\nfor = 0\n'
                )
            proc = start_agent(config, node / "agent.log", i == 0, ray_auth)
            agents.append(proc)
            wait_healthy(f"http://127.0.0.1:{ports[i]}", proc, node / "agent.log")
            ray_start = rays[i].process
            assert ray_start is not None
            states.append(NodeState(name, ray_start.pid, proc.pid, ports[i], str(node / "data")))
    except BaseException:
        _stop([a.pid for a in agents])
        for cluster in reversed(rays):
            cluster.stop()
        raise
    state = FleetState(str(head.temp_dir), head.dashboard_url, head.serve_url, states)
    (folder / STATE).write_text(json.dumps(asdict(state), indent=2))
    controller = f"http://127.0.0.1:{ports[0]}"
    wait_serving(controller, folder / names[0] / "data" / "agent.token")
    print(f"fleet {fleet_file}")
    print(f"controller {controller} token={folder / names[0] / 'data' / 'agent.token'}")
    for s in states:
        print(f"node {s.name} agent=http://127.0.0.1:{s.agent_port} serve={head.serve_url}")
    return 0


def wait_serving(url: str, token_file: Path, timeout_s: float = 240) -> None:
    """Until the controller's digits/v1 and its router (a replica per node) run."""
    deadline = time.monotonic() + timeout_s
    with AgentClient(url, token=token_file.read_text().strip(), user="fleet") as client:
        while time.monotonic() < deadline:
            try:
                models = client.models()
                if (
                    models
                    and models[0].router_status == "RUNNING"
                    and all(v.app_status == "RUNNING" for v in models[0].versions)
                ):
                    return
            except AgentError:
                pass
            time.sleep(1)
    raise RuntimeError("the fleet's controller did not get digits serving in time")


def _stop(pids: list[int], grace_s: float = 20) -> None:
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        proc.kill()


def down(folder: Path) -> int:
    path = folder.resolve() / STATE
    if not path.exists():
        print(f"no fleet is up in {folder}", file=sys.stderr)
        return 1
    doc = json.loads(path.read_text())
    state = FleetState(
        doc["temp_dir"], doc["dashboard"], doc["serve_url"], [NodeState(**n) for n in doc["nodes"]]
    )
    _stop([n.agent_pid for n in state.nodes])  # agents first: they flush their spools
    workers = [p for n in state.nodes[1:] for p in node_processes(n.ray_pid, None)]
    head = node_processes(state.nodes[0].ray_pid, state.temp_dir)
    _stop([p.pid for p in workers])
    _stop([p.pid for p in head])
    path.unlink()
    print(f"fleet in {folder} stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=ROOT / ".trackside" / "fleet")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= len(NAMES):
        parser.error(f"--nodes is 1..{len(NAMES)}")
    return up(args.dir, args.nodes) if args.action == "up" else down(args.dir)


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
