"""Alerts end to end without Ray: a real Controller (its Serve a stand-in), the request log in
a real DuckDB file fed through the spool, a rule that fires on a version's error rate, its
webhook received by a real HTTP server on 127.0.0.1, a failing webhook retried and audited, a
command hook given the payload on stdin, one killed at its timeout, and the resolution."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.alerts import Alerts
from agent.ingest import ingest_once
from agent.local_log import LocalRequestLog
from serve.spool import SpoolWriter
from tests.records import make_record
from tests.unit.test_controller_rules import FakeServe, controller


class Receiver:
    """A webhook endpoint: /ok answers 200, /broken 500; every body is kept."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.broken_calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path == "/broken":
                    outer.broken_calls += 1
                    self.send_response(500)
                else:
                    outer.bodies.append(body)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def log_calls(ctl, tmp_path, n: int, failing: int, start: int = 0) -> None:
    writer = SpoolWriter(tmp_path / "spool", "test")
    for i in range(start, start + n):
        status = 500 if i - start < failing else 200
        writer.append(
            make_record(i, request_id=f"r{i}", version="v1", status=status, ts=datetime.now(UTC))
        )
    writer.flush()
    ingest_once(ctl.store, tmp_path / "spool")


def test_a_rule_fires_runs_its_hooks_and_resolves(tmp_path, demo_store, receiver, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "the-clusters-secret")
    hook_out = tmp_path / "hook.jsonl"
    rules = [
        {
            "name": "v1-errors",
            "kind": "error_rate",
            "threshold": 0.1,
            "for": 0,
            "window_s": 600,
            "min_calls": 10,
            "versions": ["v1"],
            "actions": [
                {"webhook": f"{receiver.url}/ok"},
                {"webhook": f"{receiver.url}/broken", "retries": 2, "timeout_s": 2},
                {"command": [sys.executable, "-c", _APPEND, str(hook_out)]},
                {
                    "command": [sys.executable, "-c", "import time; time.sleep(30)"],
                    "timeout_s": 0.5,
                },
            ],
        }
    ]
    ctl = controller(tmp_path, demo_store, FakeServe(), alerts=rules)
    alerts = Alerts(ctl.store, ctl, LocalRequestLog(ctl.store), None, None)
    log_calls(ctl, tmp_path, n=40, failing=12)  # 30% of v1's calls fail

    async def tick() -> None:
        await alerts.tick()
        await alerts.drain()

    asyncio.run(tick())
    page = alerts.page()
    (firing,) = page.firing
    assert (firing.rule, firing.model, firing.version) == ("v1-errors", "digits", "v1")
    assert firing.value == pytest.approx(0.3)
    (sent,) = receiver.bodies
    assert sent["status"] == "firing" and sent["model_version"] == "v1"
    assert sent["value"] == pytest.approx(0.3) and "error_rate 0.3 > 0.1" in sent["summary"]
    assert receiver.broken_calls == 3  # the first try and two retries
    hooked = [json.loads(line) for line in hook_out.read_text().splitlines()]
    assert hooked[0]["rule"] == "v1-errors" and hooked[0]["status"] == "firing"
    seen_env = (tmp_path / "hook.jsonl.env").read_text().split()
    assert "PATH" in seen_env and "RAY_AUTH_TOKEN" not in seen_env  # no secrets for hooks
    audit = {
        (row["action"], row["result"]): row
        for row in ctl.store.query("SELECT action, result, request, error FROM audit")
    }
    assert ("alert_firing", "firing") in audit
    assert json.loads(audit[("alert_webhook", "failed")]["request"])["attempts"] == 3
    assert "500" in audit[("alert_webhook", "failed")]["error"]
    assert ("alert_webhook", "ok") in audit and ("alert_command", "ok") in audit
    assert "killed after 0.5 s" in audit[("alert_command", "failed")]["error"]

    log_calls(ctl, tmp_path, n=400, failing=0, start=1000)  # 12 of 440 now: under 10%
    asyncio.run(tick())
    assert alerts.page().firing == []
    assert [e.change for e in alerts.page().history] == ["resolved", "firing"]
    assert receiver.bodies[-1]["status"] == "resolved"


def test_too_few_calls_is_no_verdict(tmp_path, demo_store):
    rules = [{"name": "e", "kind": "error_rate", "threshold": 0.1, "for": 0, "min_calls": 100}]
    ctl = controller(tmp_path, demo_store, FakeServe(), alerts=rules)
    alerts = Alerts(ctl.store, ctl, LocalRequestLog(ctl.store), None, None)
    log_calls(ctl, tmp_path, n=20, failing=20)
    asyncio.run(alerts.tick())
    assert alerts.page().firing == [] and alerts.page().pending == []


_APPEND = (
    "import os, sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n');"
    " open(sys.argv[1] + '.env', 'w').write(' '.join(sorted(os.environ)))"
)


def test_a_rule_pending_fires_on_a_later_tick_once_held_for_its_duration(tmp_path, demo_store):
    rules = [{"name": "e", "kind": "error_rate", "threshold": 0.1, "for": 1, "min_calls": 10}]
    ctl = controller(tmp_path, demo_store, FakeServe(), alerts=rules)
    alerts = Alerts(ctl.store, ctl, LocalRequestLog(ctl.store), None, None)
    log_calls(ctl, tmp_path, n=20, failing=10)
    asyncio.run(alerts.tick())
    assert [a.version for a in alerts.page().pending] == ["v1"]  # v2 has no calls: no verdict
    time.sleep(1.1)
    asyncio.run(alerts.tick())  # the state read back from DuckDB, then held long enough
    assert [a.version for a in alerts.page().firing] == ["v1"]
    assert [e.change for e in alerts.page().history] == ["firing", "pending"]


def test_alert_and_accuracy_series_in_metrics_pass_promtool(tmp_path, demo_store):
    from agent.api.context import AgentContext
    from agent.api.metrics import metrics
    from agent.collectors.gpu import GpuCollector
    from agent.feedback import FeedbackBook
    from agent.tokens import TokenBook
    from tests.fake_nvml import three_gpus
    from tests.promtool import check_metrics

    rules = [{"name": "e", "kind": "error_rate", "threshold": 0.1, "for": 0, "min_calls": 10}]
    ctl = controller(tmp_path, demo_store, FakeServe(), alerts=rules)
    log = LocalRequestLog(ctl.store)
    alerts = Alerts(ctl.store, ctl, log, None, None)
    log_calls(ctl, tmp_path, n=20, failing=10)
    asyncio.run(alerts.tick())
    ctx = AgentContext(
        store=ctl.store,
        tokens=TokenBook(tmp_path / "tokens", "t"),
        gpu=GpuCollector(nvml=three_gpus()),  # FAKE NVML: no GPU on this machine
        requests=log,
        local=log,
        controller=ctl,
        alerts=alerts,
        feedback=FeedbackBook(ctl.store, log, {"digits"}),
    )
    text = metrics(ctx)
    firing = 'trackside_alert_state{host="",model="digits",rule="e",state="firing",version="v1"}'
    assert f"{firing} 1.0" in text
    assert 'trackside_alert_value{host="",model="digits",rule="e",version="v1"} 0.5' in text
    check_metrics(text)


def test_a_rule_taken_out_of_the_config_no_longer_shows_as_firing(tmp_path, demo_store):
    rules = [{"name": "e", "kind": "error_rate", "threshold": 0.1, "for": 0, "min_calls": 10}]
    ctl = controller(tmp_path, demo_store, FakeServe(), alerts=rules)
    alerts = Alerts(ctl.store, ctl, LocalRequestLog(ctl.store), None, None)
    log_calls(ctl, tmp_path, n=20, failing=10)
    asyncio.run(alerts.tick())
    assert [a.rule for a in alerts.page().firing] == ["e"]
    ctl.models["digits"] = ctl.models["digits"].model_copy(update={"alerts": []})
    assert alerts.page().firing == [] and alerts.states() == []
