"""Nothing readable or reachable that should not be, on a real agent process: the token
before the body, bounded bodies, the schema behind the token, private files, named tokens
with roles, and idle connections that cannot starve /health."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from serve.spool import SpoolWriter
from tests.agent_process import AgentProcess
from tests.records import make_record


@pytest.fixture
def agent(tmp_path):
    a = AgentProcess(tmp_path / "data").start()
    yield a
    if a.proc and a.proc.poll() is None:
        a.stop()


def test_a_big_body_without_a_token_is_refused_before_it_is_read(agent):
    rss = psutil.Process(agent.proc.pid).memory_info().rss
    chunk = b"x" * (1 << 20)

    def hundred_mb():
        for _ in range(100):
            yield chunk

    try:
        r = httpx.put(f"{agent.url}/v1/models/digits/traffic", content=hundred_mb(), timeout=30)
        assert r.status_code == 401
    except httpx.HTTPError:
        pass  # the agent answered 401 and closed the connection while the body was coming
    grown = (psutil.Process(agent.proc.pid).memory_info().rss - rss) / (1 << 20)
    assert grown < 20, f"the agent grew by {grown:.0f} MiB"
    assert httpx.get(f"{agent.url}/health").status_code == 200


def test_bodies_are_bounded_per_route(agent):
    auth = {"Authorization": f"Bearer {agent.token()}"}
    r = httpx.post(
        f"{agent.url}/v1/models/digits/promote", content=b"{" + b" " * (200 << 10), headers=auth
    )
    assert r.status_code == 413 and "at most" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/v1/host", "/metrics"])
def test_only_health_answers_without_a_token(agent, path):
    assert httpx.get(f"{agent.url}{path}").status_code == 401
    assert httpx.get(f"{agent.url}/health").status_code == 200


def test_data_files_and_folders_are_the_owners_only(agent):
    writer = SpoolWriter(agent.data_dir / "spool", "rep")
    writer.append(make_record(1))
    writer.flush()
    (spooled,) = list((agent.data_dir / "spool").glob("*.parquet"))
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o600
    deadline = time.monotonic() + 10
    while spooled.exists():  # ingested
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for folder in (agent.data_dir, agent.data_dir / "spool"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for path in agent.data_dir.glob("agent.duckdb*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE((agent.data_dir / "agent.token").stat().st_mode) == 0o600


def token(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", "token", "--data-dir", str(agent.data_dir), *args],
        capture_output=True,
        text=True,
    )


def test_named_tokens_have_roles_and_can_be_revoked(agent):
    made = token(agent, "add", "alice", "--role", "read")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    auth = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{agent.url}/v1/host", headers=auth).status_code == 200
    refused = httpx.put(
        f"{agent.url}/v1/models/digits/traffic", json={"weights": {"v1": 100}}, headers=auth
    )
    assert refused.status_code == 403 and "alice (read)" in refused.json()["detail"]
    listed = token(agent, "list")
    assert "alice" in listed.stdout and "read" in listed.stdout and secret not in listed.stdout
    assert token(agent, "add", "alice").returncode == 2  # one token per name
    assert token(agent, "revoke", "alice").returncode == 0
    assert httpx.get(f"{agent.url}/v1/host", headers=auth).status_code == 401


def test_idle_connections_cannot_starve_health(tmp_path):
    agent = AgentProcess(tmp_path / "data").start(max_files=64)
    idle = []
    try:
        for _ in range(56):
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", agent.port))
            except OSError:
                s.close()
                break
            idle.append(s)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{agent.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "health never answered"
            time.sleep(0.5)
        time.sleep(6)  # past the head timeout: the idle ones are closed
        closed = 0
        for s in idle:
            s.settimeout(0.5)
            try:
                closed += s.recv(1) == b""
            except OSError:
                closed += 1
        assert closed == len(idle)
        assert agent.log.stat().st_size < 200_000  # a flood is logged once, not per socket
    finally:
        for s in idle:
            s.close()
        agent.stop()
