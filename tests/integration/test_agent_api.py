"""The agent's HTTP API in-process over ASGI, on a real DuckDB file: auth on every route,
schemathesis over the whole schema, and clear 4xx for bad input."""

from __future__ import annotations

import httpx
import pytest
import schemathesis

from agent.api import create_app
from agent.api.context import AgentContext
from agent.collectors.gpu import GpuCollector
from agent.collectors.host import HostCollector
from agent.ingest import ingest_once
from agent.local_log import LocalRequestLog
from agent.store import GPU_COLUMNS, HOST_COLUMNS, Store
from agent.tokens import TokenBook
from serve.spool import SpoolWriter
from tests.fake_nvml import three_gpus
from tests.promtool import check_metrics
from tests.records import make_record
from tests.schema_cases import SETTINGS, call_and_validate, load, past_the_token

TOKEN = "secret-token-for-tests"
FLEET_TOKEN = "the-controllers-fleet-token"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agent")
    store = Store(tmp / "agent.duckdb")
    gpu = GpuCollector(nvml=three_gpus())  # FAKE NVML: no GPU on this machine
    host = HostCollector()
    for _ in range(3):
        store.insert_rows("host_samples", HOST_COLUMNS, [host.sample()])
        store.insert_rows("gpu_samples", GPU_COLUMNS, gpu.sample())
    spool = tmp / "spool"
    writer = SpoolWriter(spool, "rep")
    for i in range(20):
        writer.append(
            make_record(
                i,
                request_id=f"req-{i}",
                status=200 if i % 5 else 503,
                latency_ms=2.0 + i,
                total_ms=3.0 + i,
                input='{"instances": [[1]]}',
                output='{"predictions": [{"label": 1}]}',
            )
        )
    writer.flush()
    ingested = ingest_once(store, spool)
    ctx = AgentContext(
        store=store,
        tokens=TokenBook(tmp / "tokens", TOKEN, FLEET_TOKEN),
        gpu=gpu,
        requests=LocalRequestLog(store),
        local=LocalRequestLog(store),
        collectors={"host": "ok"},
    )
    ctx.traffic.observe(ingested.traffic)  # as the daemon does after each ingest
    yield create_app(ctx)
    store.close()


@pytest.fixture
def http(app):
    async def make(token=TOKEN):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://agent", headers=headers
        )

    return make


def _routes(app):
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith(("/v1", "/metrics")):
            continue
        for method in operations:
            yield (
                method.upper(),
                path.replace("{model}", "digits")
                .replace("{version}", "v1")
                .replace("{request_id}", "req-1"),
            )


async def test_every_route_but_health_needs_the_token(app, http):
    routes = list(_routes(app))
    assert len(routes) >= 15
    async with await http(None) as anonymous, await http("wrong") as wrong:
        assert (await anonymous.get("/health")).status_code == 200
        for method, path in routes:
            r = await anonymous.request(method, path)
            assert r.status_code == 401, (method, path)
            r = await wrong.request(method, path)
            assert r.status_code == 401, (method, path)


async def test_the_fleet_token_reads_the_log_and_changes_nothing(http):
    async with await http(FLEET_TOKEN) as c:
        part = (await c.get("/v1/fleet/requests", params={"model": "digits"})).json()
        assert len(part) == 20
        assert (await c.get("/v1/requests", params={"status": 503})).status_code == 200
        r = await c.put("/v1/models/digits/traffic", json={"weights": {"v1": 100}})
        assert r.status_code == 403 and "may read, not PUT" in r.json()["detail"]


async def test_reads_with_the_token(http):
    async with await http() as c:
        host = (await c.get("/v1/host")).json()
        assert host["role"] == "agent"
        assert [g["uuid"] for g in host["gpus"]] == ["GPU-fake-0", "GPU-fake-1", "GPU-fake-2"]
        rows = (await c.get("/v1/telemetry/host", params={"step": 1})).json()
        assert rows and "cpu_pct" in rows[0]
        gpus = (await c.get("/v1/telemetry/gpu/latest")).json()
        assert {g["uuid"] for g in gpus} == {"GPU-fake-0", "GPU-fake-1", "GPU-fake-2"}
        lat = (await c.get("/v1/telemetry/latency", params={"model": "digits"})).json()
        assert sum(p["requests"] for p in lat) == 20
        assert any(p["error_rate"] > 0 for p in lat)
        listed = (await c.get("/v1/requests", params={"status": 503})).json()["rows"]
        assert len(listed) == 4 and all(r["status"] == 503 for r in listed)
        one = (await c.get("/v1/requests/req-1")).json()["rows"]
        assert one[0]["input"] == {"instances": [[1]]}
        metrics = (await c.get("/metrics")).text
        assert "trackside_host_cpu_pct" in metrics and 'uuid="GPU-fake-0"' in metrics
        assert "# TYPE trackside_gpu_xid_errors_total counter" in metrics
        assert 'trackside_gpu_remapped_rows{gpu="0",uuid="GPU-fake-0"} 1.0' in metrics
        assert (
            'trackside_requests_total{code="5xx",model="digits",role="primary",version="v1"} 4.0'
            in metrics
        )
        check_metrics(metrics)  # promtool's own lint of the exposition


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "needle"),
    [
        ("GET", "/v1/requests/nope", {}, 404, "no request"),
        ("GET", "/v1/requests", {"params": {"limit": 0}}, 422, "limit"),
        ("GET", "/v1/telemetry/host", {"params": {"since": "yesterday"}}, 422, "since"),
        # pydantic would read a number as seconds since 1970
        ("GET", "/v1/telemetry/host", {"params": {"until": "0.5"}}, 422, "RFC 3339"),
        ("GET", "/v1/audit", {"params": {"since": "0001-01-01T00:00:00+01:00"}}, 422, "1970"),
        ("GET", "/v1/requests", {"params": {"limt": 5}}, 422, "unknown query parameter 'limt'"),
        ("GET", "/v1/requests", {"params": {"model": "../etc"}}, 422, "not allowed"),
        (
            "GET",
            "/v1/telemetry/host",
            {"params": {"since": "2026-01-02T00:00:00", "until": "2026-01-01T00:00:00"}},
            422,
            "before",
        ),
        (
            "GET",
            "/v1/telemetry/host",
            {"params": {"since": "2020-01-01T00:00:00", "step": 1}},
            422,
            "at most",
        ),
        (
            "PUT",
            "/v1/models/digits/traffic",
            {"json": {"weights": {"v1": 100}}},
            409,
            "not the controller",
        ),
        (
            "POST",
            "/v1/models/digits/promote",
            {"content": b"{oops", "headers": {"content-type": "application/json"}},
            422,
            "JSON",
        ),
    ],
)
async def test_bad_input_gets_a_4xx_with_a_reason(http, method, path, kwargs, status, needle):
    async with await http() as c:
        r = await c.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert needle.lower() in r.json()["detail"].lower()


schema = schemathesis.pytest.from_fixture("api_schema")


STATUSES: dict[str, set[int]] = {}


@pytest.fixture
def api_schema(app):
    return load(app, TOKEN)


@schema.parametrize()
@SETTINGS
def test_every_check_passes_against_an_agent(case):
    """Not the controller: actions answer 409, telemetry and the request log answer."""
    call_and_validate(case, STATUSES)


def test_the_cases_got_past_the_token():
    assert STATUSES, "no case ran"
    assert past_the_token(STATUSES) == []


async def test_a_method_the_path_does_not_take_is_405_with_every_method_it_does(http):
    async with await http() as c:
        r = await c.request("PATCH", "/v1/replay")
    assert r.status_code == 405, r.text
    assert r.headers.get("allow") == "GET, POST", (
        r.headers,
        r.text,
    )  # GET and POST are two routes of one path
