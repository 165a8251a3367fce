"""Host alert rules (configs/agent.toml `[[controller.alerts]]`) end to end without Ray: a real
Controller (its Serve a stand-in), the fleet-wide request log over HTTP with one peer that
does not answer (agent_down), and on the controller's own host GPU samples from the FAKE NVML
(no GPU here: XID events, uncorrectable ECC errors and a thermal slowdown behind NVML's
interface) and spool files whose router dropped records. Each rule fires, its command hook
gets the host's payload, and they resolve when the host is well again."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta

import pytest

from agent.alerts import Alerts
from agent.collectors.gpu import GpuCollector
from agent.fleet_log import FleetRequestLog, Peer
from agent.host_facts import host_facts
from agent.ingest import ingest_once
from agent.local_log import LocalRequestLog
from agent.store import GPU_COLUMNS
from serve.model_config import HostAlertRule
from serve.spool import SpoolWriter
from tests.fake_nvml import FakeGpu, FakeNvml
from tests.records import make_record
from tests.unit.test_controller_rules import FakeServe, controller

_APPEND = "import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')"


def rules(hook: str) -> list[HostAlertRule]:
    action = {"command": [sys.executable, "-c", _APPEND, hook]}
    kinds = {
        "agent-down": ("agent_down", 0.0),
        "xid": ("gpu_xid", 0.0),
        "ecc": ("gpu_ecc", 0.0),
        "throttled": ("gpu_throttle", 0.5),
        "drops": ("spool_drops", 0.0),
    }
    return [
        HostAlertRule.model_validate(
            {"name": name, "kind": kind, "threshold": t, "for": 0, "actions": [action]}
        )
        for name, (kind, t) in kinds.items()
    ]


def sample(store, gpu: GpuCollector, at: datetime) -> None:
    rows = gpu.sample()
    for row in rows:
        row["ts"] = at
    store.insert_rows("gpu_samples", GPU_COLUMNS, rows)


def test_host_rules_fire_on_each_host_and_resolve(tmp_path, demo_store):
    hook = tmp_path / "hook.jsonl"
    ctl = controller(tmp_path, demo_store, FakeServe())
    now = datetime.now(UTC)
    # FAKE NVML: one GPU whose XID and ECC counters rise and which the hardware slows.
    card = FakeGpu("FAKE H100", "GPU-fake-0", clock_reasons=0x40)  # hw thermal slowdown
    nvml = FakeNvml(gpus=[card])
    gpu = GpuCollector(nvml=nvml)
    gpu.start()
    sample(ctl.store, gpu, now - timedelta(seconds=120))
    nvml.events.append((card, 79))  # XID 79: fallen off the bus
    card.ecc_uncorrected = 2
    sample(ctl.store, gpu, now - timedelta(seconds=60))
    writer = SpoolWriter(tmp_path / "spool", "router-1")
    writer.append(make_record(0, ts=now - timedelta(seconds=100)))
    writer.flush()
    writer.dropped = 7  # the router's spool was full for a while
    writer.append(make_record(1, ts=now - timedelta(seconds=50)))
    writer.flush()
    ingest_once(ctl.store, tmp_path / "spool")

    facts = host_facts(ctl.store, "head", now - timedelta(seconds=300), now)
    assert (facts.gpus, facts.xid_errors, facts.ecc_errors) == (1, 1, 2)
    assert facts.throttled_share == 1.0 and facts.spool_drops == 7

    local = LocalRequestLog(ctl.store, host="head")
    fleet = FleetRequestLog(local, [Peer("gone", "http://127.0.0.1:9")], "t", deadline_s=1.0)
    try:
        alerts = Alerts(ctl.store, ctl, fleet, None, None, host_rules=rules(str(hook)))

        async def tick() -> None:
            await alerts.tick()
            await alerts.drain()

        asyncio.run(tick())
        firing = {(a.rule, a.host) for a in alerts.page().firing}
        assert firing == {
            ("agent-down", "gone"),
            ("xid", "head"),
            ("ecc", "head"),
            ("throttled", "head"),
            ("drops", "head"),
        }
        sent = [json.loads(line) for line in hook.read_text().splitlines()]
        down = next(p for p in sent if p["rule"] == "agent-down")
        assert down["host"] == "gone" and down["model"] is None and down["status"] == "firing"
        assert "gone agent_down 1 > 0" in down["summary"]
        audit = ctl.store.query("SELECT request FROM audit WHERE action = 'alert_firing'")
        assert {json.loads(r["request"])["host"] for r in audit} == {"gone", "head"}

        # Later: the counters stay, the GPU is cool, no drops: all but agent_down resolve.
        card.clock_reasons = 0
        for s in (400, 340):
            sample(ctl.store, gpu, now + timedelta(seconds=s))
        asyncio.run(_tick_at(alerts, now + timedelta(seconds=400)))
        still = {(a.rule, a.host) for a in alerts.page().firing}
        assert still == {("agent-down", "gone")}
        resolved = [e for e in alerts.page().history if e.change == "resolved"]
        assert {e.rule for e in resolved} == {"xid", "ecc", "throttled", "drops"}
    finally:
        fleet.close()


async def _tick_at(alerts: Alerts, when: datetime) -> None:
    await alerts.tick(when)
    await alerts.drain()


def test_a_host_rule_taken_out_of_the_config_no_longer_shows(tmp_path, demo_store):
    ctl = controller(tmp_path, demo_store, FakeServe())
    local = LocalRequestLog(ctl.store, host="head")
    fleet = FleetRequestLog(local, [Peer("gone", "http://127.0.0.1:9")], "t", deadline_s=1.0)
    try:
        down = [r for r in rules(str(tmp_path / "hook")) if r.kind == "agent_down"]
        alerts = Alerts(ctl.store, ctl, fleet, None, None, host_rules=down)
        asyncio.run(_tick_at(alerts, datetime.now(UTC)))
        assert [a.host for a in alerts.page().firing] == ["gone"]
        assert Alerts(ctl.store, ctl, fleet, None, None).page().firing == []
    finally:
        fleet.close()


@pytest.mark.parametrize("kind", ["gpu_xid", "spool_drops"])
def test_a_counter_that_restarts_counts_from_zero_not_negative(tmp_path, kind):
    """Prometheus' increase(): a sample below the one before means the counter began again
    (the agent or the router restarted), and its value counts whole."""
    from agent.store import Store

    store = Store(tmp_path / "agent.duckdb")
    try:
        now = datetime.now(UTC).replace(tzinfo=None)
        if kind == "gpu_xid":
            for i, n in enumerate([5, 6, 0, 2]):
                row = {c: None for c in GPU_COLUMNS}
                row.update(ts=now - timedelta(seconds=40 - 10 * i), uuid="GPU-0", xid_errors=n)
                store.insert_rows("gpu_samples", GPU_COLUMNS, [row])
        else:
            spool = tmp_path / "spool"
            for i, n in enumerate([5, 6, 0, 2]):
                writer = SpoolWriter(spool, f"w{i}")
                writer.dropped = n
                writer.append(make_record(i, ts=now - timedelta(seconds=40 - 10 * i)))
                writer.flush()
            ingest_once(store, spool)
        facts = host_facts(store, "h", now - timedelta(seconds=35), now)
        # 5 -> 6 (+1), 6 -> 0 (a restart: its 0 counts), 0 -> 2 (+2)
        got = facts.xid_errors if kind == "gpu_xid" else facts.spool_drops
        assert got == 3
    finally:
        store.close()
