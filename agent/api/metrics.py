"""GET /metrics in Prometheus' text format (prometheus_client's own exposition): the host and
its GPUs (latest sample), this host's traffic per model version (counted at ingest:
agent/traffic_metrics.py), and on the controller each model's rollout, alerts and batch
jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.api.context import AgentContext, Context, authorized
from agent.schemas.batch import BATCH_STATES
from agent.schemas.rollouts import FINISHED
from agent.store import utcnow

router = APIRouter(tags=["metrics"], dependencies=[Depends(authorized)])
HOST_GAUGES = [
    ("cpu_pct", "CPU use, percent of all cores"),
    ("load1", "1-minute load average"),
    ("mem_pct", "memory in use, percent"),
    ("swap_pct", "swap in use, percent"),
    ("disk_pct", "disk in use, percent"),
]
GPU_GAUGES = [
    ("util_gpu", "GPU utilization, percent"),
    ("mem_used", "GPU memory used, bytes"),
    ("temp_c", "GPU temperature, Celsius"),
    ("power_w", "GPU power draw, watts"),
    ("ecc_uncorrected", "uncorrected ECC errors since the driver loaded (volatile)"),
    ("remapped_rows", "memory rows remapped (correctable and uncorrectable)"),
]
# Counted by this agent since it started (a restart resets them, as counters may).
GPU_COUNTERS = [("xid_errors", "trackside_gpu_xid_errors", "critical XID events")]
ROLLOUT_STATES = ("running", "paused", *FINISHED)


class HostCollector(Collector):
    """The latest host and GPU samples, read from DuckDB at each scrape."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        host = self.ctx.store.latest("host_samples")
        h: dict[str, Any] = host[0] if host else {}
        for key, help_text in HOST_GAUGES:
            gauge = GaugeMetricFamily(f"trackside_host_{key}", help_text)
            if h.get(key) is not None:
                gauge.add_metric([], float(h[key]))
            yield gauge
        gpus = self.ctx.store.latest("gpu_samples", order="gpu_index")
        for key, help_text in GPU_GAUGES:
            gauge = GaugeMetricFamily(f"trackside_gpu_{key}", help_text, labels=["gpu", "uuid"])
            for g in gpus:
                if g.get(key) is not None:
                    gauge.add_metric([str(g["gpu_index"]), g["uuid"]], float(g[key]))
            yield gauge
        for key, name, help_text in GPU_COUNTERS:
            counter = CounterMetricFamily(name, help_text, labels=["gpu", "uuid"])
            for g in gpus:
                if g.get(key) is not None:
                    counter.add_metric([str(g["gpu_index"]), g["uuid"]], float(g[key]))
            yield counter


class RolloutCollector(Collector):
    """Each model's latest rollout: its state (one series per state, 1 for the current) and
    the canary's weight."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        if self.ctx.rollouts is None:
            return
        state = GaugeMetricFamily(
            "trackside_rollout_state",
            "1 for the state the model's latest rollout is in",
            labels=["model", "canary", "state"],
        )
        weight = GaugeMetricFamily(
            "trackside_rollout_canary_weight_percent",
            "the running rollout's canary weight (0 in the shadow stage)",
            labels=["model", "canary"],
        )
        for r in self.ctx.rollouts.all():
            for s in ROLLOUT_STATES:
                state.add_metric([r.model, r.canary, s], 1.0 if r.state == s else 0.0)
            if r.state not in FINISHED:
                weight.add_metric([r.model, r.canary], float(r.weight))
        yield state
        yield weight


class AlertCollector(Collector):
    """1 for each rule and model version (or host, for a host rule: model and version empty)
    whose alert is in that state (pending or firing)."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        if self.ctx.alerts is None:
            return
        gauge = GaugeMetricFamily(
            "trackside_alert_state",
            "1 while the rule's alert on the model version or host is in this state",
            labels=["rule", "model", "version", "host", "state"],
        )
        value = GaugeMetricFamily(
            "trackside_alert_value",
            "the rule's latest measure of the model version or host (its kind's unit)",
            labels=["rule", "model", "version", "host"],
        )
        drifted = GaugeMetricFamily(
            "trackside_version_drifted_share_ratio",
            "input features drifted from the version's reference (a drifted_share rule's)",
            labels=["model", "version"],
        )
        kinds = {
            (m, rule.name): rule.kind
            for m, config in (self.ctx.controller.models if self.ctx.controller else {}).items()
            for rule in config.alerts
        }
        for a in self.ctx.alerts.states():
            on = [a.rule, a.model, a.version, a.host or ""]
            for s in ("pending", "firing"):
                gauge.add_metric([*on, s], 1.0 if a.state == s else 0.0)
            if a.value is not None:
                value.add_metric(on, a.value)
                if a.host is None and kinds.get((a.model, a.rule)) == "drifted_share":
                    drifted.add_metric([a.model, a.version], a.value)
        yield gauge
        yield value
        yield drifted


class AccuracyCollector(Collector):
    """Accuracy per version over the last hour, from the ground truth (controller)."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        if self.ctx.feedback is None:
            return
        accuracy = GaugeMetricFamily(
            "trackside_version_accuracy_ratio",
            "share of labelled answers right, predictions of the last hour",
            labels=["model", "version"],
        )
        coverage = GaugeMetricFamily(
            "trackside_version_label_coverage_ratio",
            "share of the last hour's calls whose ground truth came",
            labels=["model", "version"],
        )
        until = utcnow()
        for model in sorted(self.ctx.feedback.models):
            hour = until - timedelta(hours=1)
            report = self.ctx.feedback.accuracy(model, hour, until, 1, with_estimate=False)
            for v in report.versions:
                if v.accuracy is not None:
                    accuracy.add_metric([model, v.version], v.accuracy)
                if v.coverage is not None:
                    coverage.add_metric([model, v.version], v.coverage)
        yield accuracy
        yield coverage


class BatchCollector(Collector):
    """Batch jobs per model and state, and the rows they scored and set aside (controller)."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        if self.ctx.batch is None:
            return
        jobs = GaugeMetricFamily(
            "trackside_batch_jobs", "batch jobs in each state", labels=["model", "state"]
        )
        scored = CounterMetricFamily(
            "trackside_batch_rows_scored", "rows finished batch jobs scored", labels=["model"]
        )
        rejected = CounterMetricFamily(
            "trackside_batch_rows_rejected",
            "rows batch jobs set aside (they failed the input schema)",
            labels=["model"],
        )
        totals = self.ctx.batch.totals()
        for model in sorted({t.model for t in totals}):
            mine = [t for t in totals if t.model == model]
            for state in BATCH_STATES:
                jobs.add_metric(
                    [model, state], float(sum(t.jobs for t in mine if t.state == state))
                )
            # Finished jobs only: a running job's progress is not final (a retried task's rows
            # count twice until the end), and a counter must never go down.
            done = [t for t in mine if t.state != "running"]
            scored.add_metric([model], float(sum(t.scored for t in done)))
            rejected.add_metric([model], float(sum(t.rejected for t in done)))
        yield jobs
        yield scored
        yield rejected


# Errors are JSON like everywhere else; only the answer is Prometheus' text.
JSON_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for code, text in {401: "missing or wrong bearer token", 403: "not allowed"}.items()
}


@router.get("/metrics", response_class=PlainTextResponse, responses=JSON_ERRORS)
def metrics(ctx: Context) -> str:
    registry = CollectorRegistry(auto_describe=False)
    collectors = (
        HostCollector(ctx),
        ctx.traffic,
        RolloutCollector(ctx),
        AlertCollector(ctx),
        AccuracyCollector(ctx),
        BatchCollector(ctx),
    )
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry).decode()
