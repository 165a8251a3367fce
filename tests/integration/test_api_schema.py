"""The agent's OpenAPI schema says what its API enforces: schemathesis, with every check it
has, against a controller (in-process over ASGI, its Serve a stand-in answering like Serve
2.60), finds no server error, no answer outside the schema, no valid request refused and no
invalid one accepted."""

from __future__ import annotations

import httpx
import pytest
import schemathesis

from agent.api import create_app
from agent.api.context import AgentContext
from agent.batch_jobs import BatchJobs
from agent.collectors.gpu import GpuCollector
from agent.controller import Controller
from agent.controller_rules import ModelState
from agent.feedback import FeedbackBook
from agent.local_log import LocalRequestLog
from agent.replay import Replayer
from agent.rollouts import Rollouts
from agent.serve_api import ServeAPI
from agent.store import Store
from agent.tokens import TokenBook
from serve.model_config import parse_model_config
from serve.routing_table import RoutingTable
from serve.serve_config import ServeTarget
from tests.fake_nvml import three_gpus
from tests.schema_cases import SETTINGS, call_and_validate, load, misplaced_bounds, past_the_token
from tests.unit.test_controller_rules import FakeServe

TOKEN = "schema-test-token"


@pytest.fixture(scope="module")
def controller_app(tmp_path_factory, demo_store):
    tmp = tmp_path_factory.mktemp("schema")
    store = Store(tmp / "agent.duckdb", model_store=demo_store.root)
    config = parse_model_config({"model": "digits", "versions": {"v1": {}, "v2": {}}})
    ctl = Controller(
        store=store,
        serve_api=ServeAPI("http://serve.test", transport=httpx.MockTransport(FakeServe())),
        models=[config],
        model_store=demo_store,
        target=ServeTarget(store_root=demo_store.root, http_port=18000),
        spool_dir=tmp / "spool",
        replay_token="t",
        settle_s=0.1,
    )
    table = RoutingTable(route_version=4, weights={"v1": 100})
    state = ModelState(model="digits", versions=["v1", "v2"], table=table, stable="v1")
    store.put_state("model:digits", state.model_dump(mode="json"))
    log = LocalRequestLog(store)
    ctx = AgentContext(
        store=store,
        tokens=TokenBook(tmp / "tokens", TOKEN),
        gpu=GpuCollector(nvml=three_gpus()),  # FAKE NVML: no GPU on this machine
        requests=log,
        local=log,
        controller=ctl,
        replayer=Replayer(store, log, "http://127.0.0.1:9", "t"),
        rollouts=Rollouts(store, ctl, log),
        feedback=FeedbackBook(store, log, {"digits"}),
        batch=BatchJobs(store, ctl, tmp / "batch", roots=[tmp / "batch-data"]),
    )
    yield create_app(ctx)
    store.close()


@pytest.fixture(scope="module")
def api(controller_app):
    return load(controller_app, TOKEN)


schema = schemathesis.pytest.from_fixture("api")
STATUSES: dict[str, set[int]] = {}  # operation → the statuses its cases got


@schema.parametrize()
@SETTINGS
def test_every_check_passes_against_a_controller(case):
    call_and_validate(case, STATUSES)


def test_the_cases_got_past_the_token():
    """After the cases above: had the token not reached the agent, every answer would be a
    401 and the checks above would prove nothing."""
    assert STATUSES, "no case ran"
    assert past_the_token(STATUSES) == []


def test_the_schema_says_its_bounds_in_json_schema_words(controller_app):
    assert misplaced_bounds(controller_app.openapi()) == []
