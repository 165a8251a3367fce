"""Controller rules against a stand-in for Serve's REST API (httpx.MockTransport answering
with documents shaped like Serve 2.60's): the 409 for a version that is not RUNNING, and a
refused PUT that leaves the old table in force. The real-Serve paths are in
tests/integration/test_controller.py."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from agent.controller import Controller
from agent.controller_rules import ModelState
from agent.errors import ApiError
from agent.schemas.models import TrafficRequest
from agent.serve_api import ServeAPI
from agent.store import Store
from serve.model_config import parse_model_config
from serve.routing_table import RoutingTable
from serve.serve_config import ServeTarget


def serve_doc(v2_status: str) -> dict:
    def app(name: str, status: str) -> dict:
        return {
            "name": name,
            "status": status,
            "message": "",
            "deployments": {"D": {"name": "D", "status": "HEALTHY", "message": "", "replicas": []}},
        }

    return {
        "applications": {
            "digits--v1": app("digits--v1", "RUNNING"),
            "digits--v2": app("digits--v2", v2_status),
            "digits--router": app("digits--router", "RUNNING"),
        }
    }


class FakeServe:
    def __init__(
        self, v2_status: str = "RUNNING", put_status: int = 200, token: str | None = None
    ) -> None:
        self.v2_status = v2_status
        self.put_status = put_status
        self.token = token  # like Ray with RAY_AUTH_MODE=token: 401 without it
        self.puts: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, text="Unauthorized: Missing authentication token")
        if request.url.path == "/nodes":
            return httpx.Response(
                200,
                json={
                    "data": {
                        "summary": [{"raylet": {"state": "ALIVE", "resourcesTotal": {"CPU": 4.0}}}]
                    }
                },
            )
        if request.method == "GET":
            return httpx.Response(200, json=serve_doc(self.v2_status))
        self.puts.append(json.loads(request.content))
        return httpx.Response(self.put_status, text="controller unavailable")


def controller(
    tmp_path, demo_store, fake: FakeServe, ray_token: str | None = None, **config_fields
) -> Controller:
    store = Store(tmp_path / "agent.duckdb")
    config = parse_model_config(
        {"model": "digits", "versions": {"v1": {}, "v2": {}}, **config_fields}
    )
    ctl = Controller(
        store=store,
        serve_api=ServeAPI(
            "http://serve.test", token=ray_token, transport=httpx.MockTransport(fake)
        ),
        models=[config],
        model_store=demo_store,
        target=ServeTarget(store_root=demo_store.root, http_port=18000),
        spool_dir=tmp_path / "spool",
        replay_token="t",
        settle_s=0.5,
    )
    table = RoutingTable(route_version=4, weights={"v1": 100})
    store.put_state(
        "model:digits",
        ModelState(model="digits", versions=["v1", "v2"], table=table, stable="v1").model_dump(
            mode="json"
        ),
    )
    return ctl


def test_traffic_to_a_version_that_is_not_running_is_409(tmp_path, demo_store):
    fake = FakeServe(v2_status="DEPLOYING")
    ctl = controller(tmp_path, demo_store, fake)
    body = TrafficRequest(weights={"v1": 50, "v2": 50})
    with pytest.raises(ApiError) as info:
        asyncio.run(ctl.set_traffic("digits", body, "oncall"))
    assert info.value.status == 409
    assert "v2 of digits is DEPLOYING" in info.value.message
    assert fake.puts == []  # nothing was applied
    assert ctl.state("digits").table.route_version == 4
    (row,) = ctl.store.query("SELECT action, result, error FROM audit")
    assert row["result"] == "refused" and "DEPLOYING" in row["error"]


def test_a_dashboard_without_token_auth_is_a_warning_and_a_host_problem(
    tmp_path, demo_store, caplog
):
    """Ray's dashboard deploys code: open to anyone who reaches it unless token auth is on."""
    (tmp_path / "open").mkdir()
    (tmp_path / "closed").mkdir()
    open_ctl = controller(tmp_path / "open", demo_store, FakeServe())
    asyncio.run(open_ctl.bootstrap())
    (problem,) = open_ctl.problems()
    assert "answers without a token" in problem and "RAY_AUTH_MODE=token" in problem
    assert any("answers without a token" in r.getMessage() for r in caplog.records)
    closed = FakeServe(token="ray-cluster-token")
    closed_ctl = controller(tmp_path / "closed", demo_store, closed, ray_token="ray-cluster-token")
    asyncio.run(closed_ctl.bootstrap())
    assert closed_ctl.problems() == []
    assert closed.puts  # the controller's own calls carry the token


def test_a_refused_put_leaves_the_old_table_in_force(tmp_path, demo_store):
    fake = FakeServe(put_status=500)
    ctl = controller(tmp_path, demo_store, fake)
    with pytest.raises(ApiError) as info:
        asyncio.run(ctl.set_traffic("digits", TrafficRequest(weights={"v1": 90, "v2": 10}), "me"))
    assert info.value.status == 502
    assert "route_version 4" in info.value.message and "still in force" in info.value.message
    assert len(fake.puts) == 1 and ctl.state("digits").table.weights == {"v1": 100}
    # The PUT carried the whole config: both versions and the router.
    names = {a["name"] for a in fake.puts[0]["applications"]}
    assert names == {"digits--v1", "digits--v2", "digits--router"}


def test_a_successful_change_is_saved_and_audited(tmp_path, demo_store):
    fake = FakeServe()
    ctl = controller(tmp_path, demo_store, fake)
    result = asyncio.run(
        ctl.set_traffic("digits", TrafficRequest(weights={"v1": 90, "v2": 10}), "me")
    )
    assert result.before.route_version == 4 and result.after.route_version == 5
    assert ctl.state("digits").table.weights == {"v1": 90, "v2": 10}
    router = next(a for a in fake.puts[0]["applications"] if a["name"] == "digits--router")
    table_cfg = next(d for d in router["deployments"] if d["name"] == "RoutingTableHolder")
    assert table_cfg["user_config"]["table"]["weights"] == {"v1": 90, "v2": 10}


def test_the_fleet_is_every_alive_ray_node():
    """The dashboard's node list, as Serve 2.60's dashboard answers it."""

    def nodes(request: httpx.Request) -> httpx.Response:
        summary = [
            {"hostname": "gpu-1", "raylet": {"state": "ALIVE", "nodeManagerAddress": "10.0.0.1"}},
            {"hostname": "gpu-2", "raylet": {"state": "DEAD", "nodeManagerAddress": "10.0.0.2"}},
        ]
        return httpx.Response(200, json={"data": {"summary": summary}})

    api = ServeAPI("http://serve.test", transport=httpx.MockTransport(nodes))
    found = asyncio.run(api.nodes())
    assert [(n.hostname, n.address, n.alive) for n in found] == [
        ("gpu-1", "10.0.0.1", True),
        ("gpu-2", "10.0.0.2", False),
    ]


def test_a_missing_offline_metric_is_a_refusal_not_a_pass():
    from agent.controller_rules import Blessing, check_blessing
    from agent.errors import Conflict
    from serve.model_config import BlessingRule

    rules = {"accuracy": BlessingRule(higher_is_better=True, tolerance=0.01)}
    check_blessing("digits", "v2", Blessing(rules, {"accuracy": 0.95}, {"accuracy": 0.955}, "v1"))
    for candidate, stable, reason in (
        ({}, {"accuracy": 0.95}, "v2 has no accuracy in its manifest"),
        ({"accuracy": 0.99}, {}, "stable v1 has no accuracy to compare with"),
        ({"accuracy": 0.90}, {"accuracy": 0.95}, "worse by 0.05"),
    ):
        with pytest.raises(Conflict) as info:
            check_blessing("digits", "v2", Blessing(rules, candidate, stable, "v1"))
        assert reason in info.value.message and "force" in info.value.message
