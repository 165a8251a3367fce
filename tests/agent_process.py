"""An agent started as a real process on 127.0.0.1 with its own data folder and port."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from serve.local_cluster import free_port


class AgentProcess:
    def __init__(self, data_dir: Path, interval: float = 0.25, home: Path | None = None) -> None:
        """Config and log go in `home` (default: beside the data folder)."""
        self.data_dir = data_dir
        self.port = free_port()
        home = home or data_dir.parent
        self.config = home / f"{data_dir.name}.toml"
        self.config.write_text(
            f'data_dir = "{data_dir}"\n[api]\nport = {self.port}\n'
            f"[collect]\ninterval_s = {interval}\ningest_interval_s = 0.25\n"
            "write_interval_s = 0.5\n"
        )
        self.proc: subprocess.Popen | None = None
        self.log = home / f"{data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, max_files: int | None = None) -> AgentProcess:
        def limit() -> None:
            if max_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))

        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.daemon", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limit if max_files is not None else None,
            )
        if wait:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()[-2000:]
                try:
                    if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                        return self
                except httpx.HTTPError:
                    time.sleep(0.1)
            raise AssertionError("agent did not start")
        return self

    def token(self) -> str:
        return (self.data_dir / "agent.token").read_text().strip()

    def get(self, path: str, **params):
        r = httpx.get(
            f"{self.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=10,
        )
        r.raise_for_status()
        return r.json()

    def stop(self, sig=signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def start_controller(
    tmp: Path,
    cluster,
    model_toml: Path,
    store_root: Path,
    data_dir: Path | None = None,
    controller_lines: str = "",
):
    """An agent with the controller role on `cluster`, once its stable version serves;
    `controller_lines` are more settings of its [controller] table."""
    from agent.client import AgentClient, AgentError

    agent = AgentProcess(data_dir or tmp / "data", interval=1.0, home=tmp)
    agent.config.write_text(
        agent.config.read_text()
        + f'[controller]\nenabled = true\ndashboard = "{cluster.dashboard_url}"\n'
        f'serve_port = {cluster.ports["serve_http"]}\nmodels = ["{model_toml}"]\n'
        f"{controller_lines}"
        f'[model_store]\npath = "{store_root}"\n'
    )
    agent.start()
    client = AgentClient(agent.url, token=agent.token(), user="test-oncall")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            models = client.models()
            if (
                models
                and models[0].versions[0].app_status == "RUNNING"
                and models[0].router_status == "RUNNING"
            ):
                return agent, client
        except AgentError:
            pass
        time.sleep(1)
    agent.stop()
    raise AssertionError(agent.log.read_text()[-3000:])
