"""Start and stop a single-machine Ray head node on loopback, with its own ports.

Used by `make demo` and by the tests. It drives the `ray` command rather than importing Ray,
so the node outlives no one: `stop()` ends every process the node started.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from serve.cluster_watchdog import node_processes
from serve.ray_token import AUTH_MODE_ENV, ray_auth_token

# Ray resolves 127.0.0.1 to the host's external address and binds its servers to all
# interfaces unless it thinks it runs a single-machine cluster; this keeps it on loopback.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
# Serve's own throughput mode (user code and the handle router on the replica's event loop,
# gRPC between deployments): on 2 cores it took the router path at 50 rps from p50 ~160 ms to
# ~50 ms. Direct ingress stays off: it opens an HTTP server per replica on all interfaces.
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
PORT_NAMES = (
    "gcs",
    "dashboard",
    "serve_http",
    "client_server",
    "node_manager",
    "object_manager",
    "metrics_export",
    "dashboard_agent_listen",
    "dashboard_agent_grpc",
    "runtime_env_agent",
)
WORKER_PORTS = 200


def free_port(low: int = 30000, high: int = 32768) -> int:
    """A free port for a listener started later. Not from the kernel's ephemeral range
    (32768+ on Linux): Ray opens many outgoing connections, and one took a port handed out
    that way before Serve's proxy could bind it. Nor from the worker range (20000-30000)."""
    for _ in range(100):
        port = random.randrange(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {low} and {high}")


def _range_is_free(start: int, count: int) -> bool:
    for port in range(start, start + count):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_range(count: int, low: int = 20000, high: int = 30000) -> int:
    """First port of `count` consecutive free ports (random start, checked)."""
    for _ in range(50):
        start = random.randrange(low, high - count)
        if _range_is_free(start, count):
            return start
    raise RuntimeError(f"no {count} consecutive free ports between {low} and {high}")


@dataclass
class LocalCluster:
    """A Ray node bound to 127.0.0.1: the head, or (with `join`, the head's GCS address) a
    worker node of the same cluster. `ports` are chosen free unless given. `watchdog` stops
    the node when this process dies; a detached node (the local fleet) outlives it."""

    num_cpus: float = 4
    num_gpus: float = 0
    resources: dict[str, float] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    temp_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    join: str | None = None
    head_dashboard: str | None = None  # a worker node: where to see that it has joined
    watchdog: bool = True
    multi_node: bool = False  # the head of a cluster that other nodes of this machine join
    # The node's own loopback address. Ray turns "127.0.0.1" into the host's external
    # address as soon as several nodes may join, but keeps any other 127.x address: the
    # nodes of a fleet on one machine take 127.0.0.2, .3, ... and stay on loopback.
    node_ip: str = "127.0.0.1"

    @classmethod
    def worker_of(cls, head: LocalCluster, **options: Any) -> LocalCluster:
        """A node that joins `head`'s cluster (its own ports, resources and environment)."""
        options.setdefault("multi_node", True)
        return cls(
            join=head.gcs_address,
            head_dashboard=head.dashboard_url,
            temp_dir=head.temp_dir,
            **options,
        )

    def __post_init__(self) -> None:
        taken = set(self.ports.values())
        for name in PORT_NAMES:
            if name not in self.ports:
                # free_port() only checks that a port is free now: two draws can agree.
                port = free_port()
                while port in taken:
                    port = free_port()
                self.ports[name] = port
                taken.add(port)
        self.ports.setdefault("worker_min", free_port_range(WORKER_PORTS))
        if self.temp_dir is None:
            # Short path: Ray puts unix sockets under it (107-byte limit).
            self.temp_dir = Path(tempfile.mkdtemp(prefix="tsray-", dir="/tmp"))

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard']}"

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['serve_http']}"

    @property
    def gcs_address(self) -> str:
        return f"{self.node_ip}:{self.ports['gcs']}"

    def command(self) -> list[str]:
        p = self.ports
        ray = str(Path(sys.executable).with_name("ray"))
        if self.join is None:
            role = [
                "--head",
                f"--port={p['gcs']}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={p['dashboard']}",
                f"--ray-client-server-port={p['client_server']}",
                f"--temp-dir={self.temp_dir}",
            ]
        else:  # a worker node: the head's session and temp dir are the cluster's
            role = [f"--address={self.join}"]
        cmd = [
            ray if Path(ray).exists() else "ray",
            "start",
            *role,
            "--block",
            f"--node-ip-address={self.node_ip}",
            f"--node-manager-port={p['node_manager']}",
            f"--object-manager-port={p['object_manager']}",
            f"--metrics-export-port={p['metrics_export']}",
            f"--dashboard-agent-listen-port={p['dashboard_agent_listen']}",
            f"--dashboard-agent-grpc-port={p['dashboard_agent_grpc']}",
            f"--runtime-env-agent-port={p['runtime_env_agent']}",
            f"--min-worker-port={p['worker_min']}",
            f"--max-worker-port={p['worker_min'] + WORKER_PORTS - 1}",
            f"--num-cpus={self.num_cpus:g}",
            f"--num-gpus={self.num_gpus:g}",
            "--disable-usage-stats",
        ]
        if self.resources:
            import json

            cmd.append(f"--resources={json.dumps(self.resources)}")
        return cmd

    def start(self, timeout_s: float = 90.0) -> LocalCluster:
        env = {**os.environ, **LOOPBACK_ENV, **SERVE_ENV, **self.env}
        if self.multi_node or self.join is not None:
            # Ray refuses a second node while it believes it runs a one-machine cluster.
            if self.node_ip == "127.0.0.1":
                raise ValueError("a node of a multi-node cluster needs its own 127.x address")
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
        # Replicas must import trackside's packages; the venv's editable install provides
        # them, and PYTHONPATH covers a plain checkout.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        if self.log_file:
            with open(self.log_file, "ab") as out:  # the child keeps its own descriptor
                self.process = subprocess.Popen(
                    self.command(),
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        else:
            self.process = subprocess.Popen(
                self.command(),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        if self.watchdog:
            # If this process dies without calling stop(), the watchdog stops the node.
            self._watchdog = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "serve.cluster_watchdog",
                    str(os.getpid()),
                    str(self.process.pid),
                    str(self.temp_dir),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"ray start exited with {self.process.returncode}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            try:
                if self._ready():
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Ray node did not come up ({self.dashboard_url})")

    def _ready(self) -> bool:
        # A cluster started with Ray's token auth (RAY_AUTH_MODE=token) answers only with it.
        token = ray_auth_token(self.env) if AUTH_MODE_ENV in self.env else None
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        if self.join is None:
            r = httpx.get(f"{self.dashboard_url}/api/serve/applications/", timeout=2, headers=auth)
            return r.status_code == 200
        # A worker: the head lists a live node with this node's manager port.
        r = httpx.get(
            f"{self.head_dashboard}/nodes", params={"view": "summary"}, timeout=2, headers=auth
        )
        for node in r.json().get("data", {}).get("summary", []):
            raylet = node.get("raylet", {})
            if raylet.get("state") == "ALIVE" and raylet.get("nodeManagerPort") == int(
                self.ports["node_manager"]
            ):
                return True
        return False

    def processes(self) -> list[psutil.Process]:
        """Every live process of this node: descendants of `ray start`, and any process whose
        command line names this node's temp dir (workers re-parented after a crash)."""
        if self.process is None:
            return []
        # A worker node shares the head's temp dir: only its own `ray start` tree is its own.
        procs = node_processes(self.process.pid, str(self.temp_dir) if self.join is None else None)
        watchdog = getattr(self, "_watchdog", None)
        return [p for p in procs if watchdog is None or p.pid != watchdog.pid]

    def listening_addresses(self) -> list[tuple[str, int, str]]:
        """(ip, port, process name) of every listening TCP socket of this node."""
        pids = {p.pid: p for p in self.processes()}
        out = []
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
                try:
                    name = pids[conn.pid].name()
                except psutil.NoSuchProcess:
                    continue
                out.append((conn.laddr.ip, conn.laddr.port, name))
        return out

    def stop(self, grace_s: float = 5.0) -> None:
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(alive, timeout=5)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self.temp_dir is not None and self.join is None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
