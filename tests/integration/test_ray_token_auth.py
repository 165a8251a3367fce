"""A Ray node started with Ray's token auth (RAY_AUTH_MODE=token), as the README's multi-host
guide starts the head: its dashboard refuses a caller without the token, the agent's Serve
client passes it (Serve deploys), says what to set when it is missing, and the controller's
check sees that the dashboard is closed. Its own cluster and ports, torn down at the end."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest

from agent.serve_api import ServeAPI, ServeAPIError
from serve.local_cluster import LocalCluster


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory):
    token = secrets.token_hex(32)
    log = tmp_path_factory.mktemp("ray-auth") / "ray.log"
    cluster = LocalCluster(
        num_cpus=1, log_file=log, env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    )
    cluster.start()
    try:
        yield cluster, token
    finally:
        cluster.stop()


def test_the_dashboard_answers_only_with_the_token_and_the_agent_passes_it(
    auth_cluster, monkeypatch
):
    cluster, token = auth_cluster
    anonymous = httpx.get(f"{cluster.dashboard_url}/api/serve/applications/", timeout=10)
    assert anonymous.status_code == 401

    async def check() -> None:
        async with ServeAPI(cluster.dashboard_url, token=token) as api:
            assert not await api.answers_without_token()
            await api.put_applications({"applications": []})  # Serve starts, with auth on
            assert "applications" in await api.get_applications()
        # Without it (no RAY_AUTH_TOKEN here, no ~/.ray/auth_token): the reason, not a 500.
        monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/nonexistent/auth_token")
        async with ServeAPI(cluster.dashboard_url) as api:
            with pytest.raises(ServeAPIError, match="RAY_AUTH_TOKEN") as info:
                await api.get_applications()
            assert info.value.status == 401

    asyncio.run(check())
