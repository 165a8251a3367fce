"""The router on a real Ray Serve: split, stickiness, shadow, fallback, replay, the one switch
under load, and the request spool read back with DuckDB."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import time
import uuid
from collections import Counter

import duckdb
import httpx
import pytest
from scipy.stats import binomtest, chisquare

from scripts.load import run_load
from serve.model_store import ModelStore
from serve.routing_table import RoutingTable
from tests.integration.broken_model import register_broken
from tests.integration.serve_helpers import (
    REPLAY_TOKEN,
    deploy,
    digits_config,
    serve_status,
    wait_for_route_version,
)

pytestmark = pytest.mark.ray
BODY = {"instances": [[0.0] * 64]}
ROUTER = {"num_replicas": 2, "timeout_s": 1.0, "shadow_timeout_s": 3.0}


class Router:
    """The deployed router of the module: one place that knows its URL, table and spool."""

    def __init__(self, cluster, store, spool):
        self.cluster, self.store, self.spool = cluster, store, spool
        self.url = f"{cluster.serve_url}/models/digits/predict"
        self.route_version = 0

    def set_table(self, weights, router=None, **kw) -> RoutingTable:
        self.route_version += 1
        table = RoutingTable.model_validate(
            {"route_version": self.route_version, "weights": weights, **kw}
        )
        deploy(
            self.cluster,
            self.store,
            {"digits": ["v1", "v2", "broken"]},
            models=[digits_config(router={**ROUTER, **(router or {})})],
            table=table,
            spool_dir=self.spool,
        )
        wait_for_route_version(self.url, self.route_version)
        return table

    def post(self, body=None, **headers) -> httpx.Response:
        return httpx.post(
            self.url, json=BODY if body is None else body, headers=headers, timeout=30
        )

    def records(self, where: str = "true") -> list[tuple]:
        time.sleep(0.8)  # > flush interval (0.25 s) with margin
        files = list(self.spool.glob("*.parquet"))
        if not files:
            return []
        return duckdb.sql(
            f"SELECT request_id, version, role, status, route_version, primary_request_id,"
            f" fallback_from, error FROM read_parquet('{self.spool}/*.parquet') WHERE {where}"
        ).fetchall()


@pytest.fixture(scope="module")
def router(ray_cluster, demo_store, tmp_path_factory):
    work = tmp_path_factory.mktemp("router")
    store = ModelStore(work / "models")
    shutil.copytree(demo_store.root, store.root)
    register_broken(store, demo_store.reference_path("digits", "v1"), work)
    r = Router(ray_cluster, store, work / "spool")
    r.set_table({"v1": 90, "v2": 10})
    return r


async def _fire(url: str, n: int, concurrency: int = 8, headers=None) -> list[httpx.Response]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(i: int) -> httpx.Response:
            async with sem:
                h = dict(headers(i) if callable(headers) else (headers or {}))
                return await client.post(url, json=BODY, headers=h)

        return await asyncio.gather(*(one(i) for i in range(n)))


def fire(url, n, **kw) -> list[httpx.Response]:
    return asyncio.run(_fire(url, n, **kw))


def test_headers_and_client_request_id(router):
    rid = f"client-{uuid.uuid4().hex}"
    r = router.post(**{"x-request-id": rid})
    assert r.status_code == 200
    assert r.headers.get_list("x-request-id") == [rid]
    assert r.headers["x-model-version"] in ("v1", "v2")
    assert r.headers["x-route-version"] == str(router.route_version)
    assert r.json()["version"] == r.headers["x-model-version"]
    fresh = router.post()
    assert len(fresh.headers.get_list("x-request-id")) == 1 and fresh.headers["x-request-id"]


def test_split_matches_weights(router):
    router.set_table({"v1": 70, "v2": 30})
    responses = fire(router.url, 400)
    assert all(r.status_code == 200 for r in responses)
    counts = Counter(r.headers["x-model-version"] for r in responses)
    result = chisquare([counts["v1"], counts["v2"]], [400 * 0.7, 400 * 0.3])
    assert result.pvalue > 0.001, counts


def test_sticky_keys_stay_put_and_only_move_to_the_canary(router):
    keys = [f"user-{i}" for i in range(40)]
    seen: list[dict[str, str]] = []
    for canary in (10, 50, 90):
        router.set_table({"v1": 100 - canary, "v2": canary})
        per_key: dict[str, set[str]] = {}
        responses = fire(
            router.url, len(keys) * 3, headers=lambda i: {"x-trackside-key": keys[i % len(keys)]}
        )
        for i, r in enumerate(responses):
            per_key.setdefault(keys[i % len(keys)], set()).add(r.headers["x-model-version"])
        assert all(len(v) == 1 for v in per_key.values()), "a key was split between versions"
        seen.append({k: next(iter(v)) for k, v in per_key.items()})
    for before, after in itertools.pairwise(seen):
        assert not [k for k in keys if before[k] == "v2" and after[k] == "v1"]
    assert Counter(seen[-1].values())["v2"] > Counter(seen[0].values())["v2"]


def test_shadow_fraction_and_pairing(router):
    router.set_table({"v1": 100}, shadow={"version": "v2", "fraction": 0.3})
    marker = uuid.uuid4().hex[:8]
    responses = fire(router.url, 300, headers=lambda i: {"x-request-id": f"{marker}-{i}"})
    assert {r.headers["x-model-version"] for r in responses} == {"v1"}
    assert all(r.status_code == 200 for r in responses)
    rows = router.records(f"request_id LIKE '{marker}-%'")
    primaries = {r[0] for r in rows if r[2] == "primary"}
    shadows = [r for r in rows if r[2] == "shadow"]
    assert len(primaries) == 300
    assert all(s[1] == "v2" and s[5] == s[0] and s[0] in primaries for s in shadows)
    assert binomtest(len(shadows), 300, 0.3).pvalue > 0.001, len(shadows)


def test_fallback_on_an_exception(router):
    router.set_table({"broken": 100}, fallback="v1")
    r = router.post(**{"x-request-id": "fb-exc"})
    assert r.status_code == 200
    assert r.headers["x-model-version"] == "v1"
    assert r.headers["x-trackside-fallback-from"] == "broken"
    (row,) = router.records("request_id = 'fb-exc'")
    assert row[1] == "v1" and row[6] == "broken" and "broken failed" in row[7]


def test_no_fallback_gives_a_clear_5xx_naming_the_version(router):
    router.set_table({"broken": 100})
    r = router.post()
    assert r.status_code == 503
    body = r.json()
    assert body["version"] == "broken" and "broken failed" in body["error"]
    assert "no fallback" in body["hint"]


def _replica_pid(cluster, app: str) -> int:
    doc = serve_status(cluster)
    (dep,) = doc["applications"][app]["deployments"].values()
    running = [r for r in dep["replicas"] if r["state"] == "RUNNING"]
    return running[0]["pid"]


def test_fallback_on_a_killed_replica(router):
    router.set_table({"v2": 100}, fallback="v1")
    pid = _replica_pid(router.cluster, "digits--v2")
    os.kill(pid, signal.SIGKILL)
    responses = fire(router.url, 40, concurrency=4)
    assert all(r.status_code == 200 for r in responses), [
        r.text for r in responses if r.status_code != 200
    ]
    assert any(r.headers.get("x-trackside-fallback-from") == "v2" for r in responses)


def test_fallback_on_a_timeout(router):
    router.set_table({"v2": 100}, fallback="v1")
    deadline = time.monotonic() + 60
    while router.post().headers.get("x-model-version") != "v2":  # v2 replaced after the kill
        assert time.monotonic() < deadline
        time.sleep(0.5)
    pid = _replica_pid(router.cluster, "digits--v2")
    os.kill(pid, signal.SIGSTOP)  # hung, not dead: only the router's timeout can tell
    try:
        started = time.monotonic()
        r = router.post(**{"x-request-id": "fb-timeout"})
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.status_code == 200 and r.headers["x-trackside-fallback-from"] == "v2"
    assert elapsed >= 1.0  # it waited for the configured timeout first
    (row,) = router.records("request_id = 'fb-timeout'")
    assert "did not answer within 1s" in row[7]


def test_bad_input_gets_the_versions_4xx_and_is_logged(router):
    router.set_table({"v1": 100})
    r = httpx.post(
        router.url, content=b'{"instances": [[1, 2]]}', headers={"x-request-id": "bad-1"}
    )
    assert r.status_code == 400 and "expects 64" in r.json()["error"]
    assert r.headers["x-model-version"] == "v1"
    (row,) = router.records("request_id = 'bad-1'")
    assert row[3] == 400 and row[6] is None


def test_replay_needs_the_token(router):
    router.set_table({"v1": 100})
    forced = router.post(
        **{
            "x-trackside-version": "v2",
            "x-trackside-replay-token": REPLAY_TOKEN,
            "x-trackside-replay-of": "orig-1",
            "x-request-id": "replay-1",
        }
    )
    assert forced.headers["x-model-version"] == "v2"
    ignored = router.post(
        **{
            "x-trackside-version": "v2",
            "x-trackside-replay-token": "guess",
            "x-request-id": "replay-2",
        }
    )
    assert ignored.headers["x-model-version"] == "v1"
    rows = {r[0]: r for r in router.records("request_id LIKE 'replay-%'")}
    assert rows["replay-1"][2] == "replay" and rows["replay-1"][5] == "orig-1"
    assert rows["replay-2"][2] == "primary"
    # Only a hash of the token is visible to dashboard readers.
    doc = str(serve_status(router.cluster))
    assert REPLAY_TOKEN not in doc


def test_weight_changes_under_load_fail_nothing_and_switch_within_a_second(router, capsys):
    router.set_table({"v1": 90, "v2": 10})
    changes = [{"v1": 50, "v2": 50}, {"v1": 0, "v2": 100}, {"v1": 100, "v2": 0}]
    marks: list[tuple[int, float, float]] = []

    async def scenario():
        stop = asyncio.Event()
        load = asyncio.create_task(run_load(router.url, 55, 60, stop=stop))
        await asyncio.sleep(6)
        for weights in changes:
            started = time.time()
            await asyncio.to_thread(_put_only, router, weights)
            marks.append((router.route_version, started, time.time()))
            await asyncio.sleep(8)
        stop.set()
        return await load

    report = asyncio.run(scenario())
    summary = report.summary()
    results = sorted(
        (
            r.started,
            r.status,
            r.headers.get("x-route-version"),
            r.headers.get("x-trackside-router"),
            r.headers.get("x-model-version"),
            r.request_id,
        )
        for r in report.results
    )
    duration = results[-1][0] - results[0][0]
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:5]
    assert duration >= 30 and summary["rps"] >= 50, summary
    replicas = {r[3] for r in results}
    assert len(replicas) == 2
    lags = []
    for route_version, put_started, put_done in marks:
        stale = [r[0] for r in results if int(r[2]) < route_version and r[0] >= put_started]
        lag = max(stale, default=put_started) - put_started
        lags.append(lag)
        late = [r for r in results if r[0] > put_done + 1.0 and int(r[2]) < route_version]
        assert not late, f"old table served more than 1 s after the PUT: {late[:3]}"
        after = {r[3] for r in results if r[0] > put_done + 1.0 and int(r[2]) == route_version}
        assert after == replicas, "a router replica never served the new table"
    with capsys.disabled():
        print(
            f"\n[router switch] {summary['requests']} requests at {summary['rps']:.1f} rps over"
            f" {duration:.0f}s, 0 failed, p50 {summary['p50_ms']:.0f} ms; last old-table request"
            f" started {', '.join(f'{x:.2f}' for x in lags)} s after each PUT began"
        )
    # The spool holds exactly the answered requests, with the versions the clients saw.
    answered = {r[5]: r[4] for r in results}
    time.sleep(1)
    rows = duckdb.sql(
        f"SELECT request_id, version, role, count(*) OVER (PARTITION BY request_id, role) AS n"
        f" FROM read_parquet('{router.spool}/*.parquet') WHERE request_id LIKE 'load-%'"
    ).fetchall()
    assert {r[0]: r[1] for r in rows} == answered
    assert {r[2] for r in rows} == {"primary"} and {r[3] for r in rows} == {1}


def _put_only(router, weights):
    router.route_version += 1
    table = RoutingTable.model_validate({"route_version": router.route_version, "weights": weights})
    deploy(
        router.cluster,
        router.store,
        {"digits": ["v1", "v2", "broken"]},
        models=[digits_config(router=ROUTER)],
        table=table,
        spool_dir=router.spool,
        wait=False,
    )


def test_spool_bound_drops_are_counted_and_serving_continues(router):
    router.set_table({"v1": 100}, router={"spool_max_mb": 0.000001})
    responses = fire(router.url, 60)
    assert all(r.status_code == 200 for r in responses)
    time.sleep(1)
    infos = [
        httpx.get(f"{router.cluster.serve_url}/models/digits", timeout=10).json() for _ in range(10)
    ]
    assert max(i["spool"]["dropped"] for i in infos) > 0
    router.set_table({"v1": 100})  # bound lifted in place (user_config)
    fire(router.url, 20)
    rows = router.records()
    assert (
        max(
            r
            for (r,) in duckdb.sql(
                f"SELECT max(dropped_total) FROM read_parquet('{router.spool}/*.parquet')"
            ).fetchall()
        )
        > 0
    )
    assert rows


def _shadow_counters(router) -> dict[str, int]:
    """Sent and shed shadow copies, summed over the router's replicas."""

    async def ask(client: httpx.AsyncClient) -> dict:
        return (await client.get(f"{router.cluster.serve_url}/models/digits")).json()

    async def ask_all() -> list[dict]:
        async with httpx.AsyncClient(timeout=10) as client:
            return await asyncio.gather(*(ask(client) for _ in range(16)))

    infos: dict[str, dict] = {}
    for _ in range(10):  # concurrent asks spread over the replicas
        infos.update({i["replica"]: i["shadow"] for i in asyncio.run(ask_all())})
        if len(infos) == ROUTER["num_replicas"]:
            break
    assert len(infos) == ROUTER["num_replicas"]
    return {k: sum(i[k] for i in infos.values()) for k in ("sent", "shed")}


def test_shadows_are_shed_while_a_replica_is_busy_and_only_then(router):
    router.set_table(
        {"v1": 100}, shadow={"version": "v2", "fraction": 1.0}, router={"shadow_shed_above": 2}
    )
    quiet, busy = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    before = _shadow_counters(router)
    fire(router.url, 20, concurrency=1, headers=lambda i: {"x-request-id": f"{quiet}-{i}"})
    responses = fire(
        router.url, 300, concurrency=32, headers=lambda i: {"x-request-id": f"{busy}-{i}"}
    )
    assert all(r.status_code == 200 for r in responses)  # shedding never touches clients
    after = _shadow_counters(router)

    def shadows(marker: str) -> int:
        return sum(1 for r in router.records(f"request_id LIKE '{marker}-%'") if r[2] == "shadow")

    assert shadows(quiet) == 20  # one request at a time: every copy sent
    shadowed = shadows(busy)
    assert shadowed < 300
    assert after["shed"] - before["shed"] == 300 - shadowed
    assert after["sent"] - before["sent"] == 20 + shadowed


def test_graceful_shutdown_logs_the_shadows_in_flight(router):
    # Runs last: it removes the router application (a graceful shutdown of its replicas).
    router.set_table({"v1": 100}, shadow={"version": "v2", "fraction": 1.0})
    doc = serve_status(router.cluster)["applications"]["digits--v2"]
    (dep,) = doc["deployments"].values()
    pids = [r["pid"] for r in dep["replicas"] if r["state"] == "RUNNING"]
    marker = uuid.uuid4().hex[:8]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # every shadow hangs until its 3 s timeout
    try:
        responses = fire(
            router.url, 10, concurrency=2, headers=lambda i: {"x-request-id": f"{marker}-{i}"}
        )
        assert all(r.status_code == 200 for r in responses)
        deploy(router.cluster, router.store, {"digits": ["v1", "v2", "broken"]})  # no router
        deadline = time.monotonic() + 60
        while "digits--router" in serve_status(router.cluster)["applications"]:
            assert time.monotonic() < deadline, "the router was not removed"
            time.sleep(0.5)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    rows = router.records(f"request_id LIKE '{marker}-%'")
    assert sorted(r[2] for r in rows) == ["primary"] * 10 + ["shadow"] * 10
    assert all("did not answer within 3s" in r[7] for r in rows if r[2] == "shadow")
