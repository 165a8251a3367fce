"""The `trackside` verbs that talk to an agent's API. A verb is one function, registered with
`@verb(...)` together with its own arguments; the first line of its docstring is its help.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agent.client import AgentClient, AgentError
from agent.defaults import DEFAULT_URL
from agent.schemas.batch import BatchJob, BatchStart
from agent.schemas.models import ActionResult
from serve.routing_table import RoutingTable

Handler = Callable[[AgentClient, argparse.Namespace], int]


@dataclass(frozen=True)
class Arg:
    names: tuple[str, ...]
    options: dict[str, Any]


def arg(*names: str, **options: Any) -> Arg:
    return Arg(names, options)


@dataclass(frozen=True)
class Verb:
    name: str
    summary: str
    args: tuple[Arg, ...]
    run: Handler


VERBS: dict[str, Verb] = {}


def verb(*args: Arg) -> Callable[[Handler], Handler]:
    """Register the function as the verb of its name, with its arguments."""

    def register(fn: Handler) -> Handler:
        summary = (fn.__doc__ or "").strip().splitlines()[0]
        VERBS[fn.__name__] = Verb(fn.__name__, summary, args, fn)
        return fn

    return register


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def _summary(table: RoutingTable | None) -> str:
    return table.summary() if table is not None else "-"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _weights(items: list[str]) -> dict[str, int]:
    weights = {}
    for item in items:
        version, sep, value = item.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise SystemExit(f"trackside traffic: {item!r} is not VERSION=PERCENT (e.g. v1=90)")
        weights[version] = int(value)
    return weights


def _shadow(text: str | None) -> tuple[str, float] | None:
    if not text:
        return None
    version, sep, fraction = text.partition(":")
    try:
        return version, float(fraction) if sep else 0.1
    except ValueError:
        raise SystemExit(f"--shadow {text!r}: write VERSION:FRACTION, e.g. v2:0.1") from None


def _print_action(result: ActionResult) -> int:
    print(f"{result.action} {result.model}: {result.message}")
    if result.changed:
        print(f"  before: {_summary(result.before)}")
        print(f"  after:  {_summary(result.after)}")
    print(f"  audit #{result.audit_id}")
    return 0


MODEL = arg("model")
VERSION = arg("version")


@verb(arg("--json", action="store_true"))
def replicas(client: AgentClient, args: argparse.Namespace) -> int:
    """every model-version replica: host, process, GPUs, what it runs on, GPU memory"""
    page = client.replicas()
    if args.json:
        print(page.model_dump_json(indent=2))
        return 0
    rows = [
        [
            r.host,
            f"{r.model}/{r.version}",
            r.replica,
            str(r.pid),
            ",".join(r.gpu_ids) or "-",
            r.provider.removesuffix("ExecutionProvider"),
            f"{sum(r.gpu_memory.values()) / (1 << 30):.1f}G" if r.gpu_memory else "-",
            r.problem or "",
        ]
        for r in page.rows
    ]
    header = ["HOST", "VERSION", "REPLICA", "PID", "GPUS", "RUNS ON", "GPU MEM", "PROBLEM"]
    print(_table(rows, header) if rows else "no replicas have reported yet")
    for missing in page.coverage.missing:
        print(f"not asked: {missing.host} did not answer ({missing.reason})")
    return 0


@verb(arg("model", nargs="?"), arg("--json", action="store_true"))
def status(client: AgentClient, args: argparse.Namespace) -> int:
    """models, versions, traffic and Serve state, from the agent"""
    models = [client.model(args.model)] if args.model else client.models()
    if args.json:
        print(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
        return 0
    for m in models:
        print(f"{m.model}  stable={m.stable}  table {m.table.summary()}  router {m.router_status}")
        rows = [
            [
                v.version,
                f"{v.weight}%",
                f"{v.shadow_fraction:g}" if v.shadow_fraction else "-",
                v.app_status or "-",
                " ".join(f"{k}:{n}" for k, n in sorted(v.replicas.items())) or "-",
                v.runs_on_summary(),
                (v.sha256 or "")[:12],
                v.problem or "",
            ]
            for v in m.versions
        ]
        header = [
            "VERSION",
            "WEIGHT",
            "SHADOW",
            "STATUS",
            "REPLICAS",
            "RUNS ON",
            "SHA256",
            "PROBLEM",
        ]
        print(_table(rows, header))
    return 0


@verb(MODEL, VERSION, arg("--force", action="store_true", help="deploy even if not blessed"))
def deploy(client: AgentClient, args: argparse.Namespace) -> int:
    """deploy a registered version (no traffic yet)"""
    return _print_action(client.deploy(args.model, args.version, force=args.force))


@verb(
    MODEL,
    arg("weights", nargs="+", metavar="VERSION=PERCENT"),
    arg("--shadow", metavar="VERSION:FRACTION"),
    arg("--fallback", metavar="VERSION"),
)
def traffic(client: AgentClient, args: argparse.Namespace) -> int:
    """set weights, shadow and fallback: trackside traffic digits v1=90 v2=10"""
    result = client.set_traffic(
        args.model, _weights(args.weights), shadow=_shadow(args.shadow), fallback=args.fallback
    )
    return _print_action(result)


@verb(MODEL, VERSION)
def promote(client: AgentClient, args: argparse.Namespace) -> int:
    """give a version 100% and make it stable"""
    return _print_action(client.promote(args.model, args.version))


@verb(MODEL, arg("--to", metavar="VERSION"))
def rollback(client: AgentClient, args: argparse.Namespace) -> int:
    """back to the previous stable (or --to VERSION)"""
    return _print_action(client.rollback(args.model, args.to))


@verb(MODEL, VERSION)
def retire(client: AgentClient, args: argparse.Namespace) -> int:
    """remove a version that has no traffic"""
    return _print_action(client.retire(args.model, args.version))


@verb()
def alerts(client: AgentClient, args: argparse.Namespace) -> int:
    """alerts firing and pending, per rule and model version (or host), and the latest changes"""
    page = client.alerts()
    rows = [
        [
            a.state,
            a.rule,
            a.subject,
            _num(a.value),
            f"{a.threshold:g}",
            a.since.strftime("%Y-%m-%d %H:%M:%S"),
        ]
        for a in [*page.firing, *page.pending]
    ]
    print(_table(rows, ["STATE", "RULE", "ON", "VALUE", "THRESHOLD", "SINCE (UTC)"]))
    for e in page.history[:10]:
        print(f"  {e.ts:%Y-%m-%d %H:%M:%S} {e.change}: {e.message}")
    return 1 if page.firing else 0


FEEDBACK_BATCH = 10_000  # records per request: the API's bound


def feedback_records(path: Path) -> list[dict[str, Any]]:
    """request_id and label (or value), optionally ts, from a CSV or Parquet file."""
    import duckdb

    reader = "read_parquet" if path.suffix.lower() in (".parquet", ".pq") else "read_csv_auto"
    con = duckdb.connect()
    try:
        rel = con.sql(f"SELECT * FROM {reader}(?)", params=[str(path)])
        columns = rel.columns
        missing = {"request_id"} - set(columns)
        if missing or not {"label", "value"} & set(columns):
            raise SystemExit(
                f"{path}: needs columns request_id and label (or value); has {columns}"
            )
        keep: list[str] = [c for c in ("request_id", "label", "value", "ts") if c in columns]
        rows = rel.select(*keep).fetchall()
    except duckdb.Error as exc:
        raise SystemExit(f"cannot read {path}: {exc}") from exc
    finally:
        con.close()
    out: list[dict[str, Any]] = []
    for row in rows:
        record: dict[str, Any] = {k: v for k, v in zip(keep, row, strict=True) if v is not None}
        record["request_id"] = str(record["request_id"])
        if "ts" in record and not isinstance(record["ts"], str):
            record["ts"] = record["ts"].isoformat()
        out.append(record)
    return out


@verb(MODEL, arg("file", type=Path, help="CSV or Parquet: request_id, label or value, ts?"))
def feedback(client: AgentClient, args: argparse.Namespace) -> int:
    """send ground truth for logged predictions (the controller joins it fleet-wide)"""
    records = feedback_records(args.file)
    totals = {"received": 0, "joined": 0, "replaced": 0, "unknown": 0}
    unknown: list[str] = []
    rejected: list[str] = []
    for start in range(0, len(records), FEEDBACK_BATCH):
        result = client.feedback(args.model, records[start : start + FEEDBACK_BATCH])
        for key in totals:
            totals[key] += getattr(result, key)
        unknown += result.unknown_ids
        rejected += result.rejected
    print(
        f"{args.model}: {totals['received']} records, {totals['joined']} joined to their"
        f" predictions ({totals['replaced']} replaced earlier truth), {totals['unknown']}"
        " not in the request log" + (f" (e.g. {', '.join(unknown[:5])})" if unknown else "")
    )
    for reason in rejected[:10]:
        print(f"  refused: {reason}")
    return 0


@verb(
    MODEL,
    arg("--version"),
    arg("--since", help="RFC 3339 (default: 24 h ago)"),
    arg("--until"),
)
def accuracy(client: AgentClient, args: argparse.Namespace) -> int:
    """accuracy per version: measured where the truth came, estimated from confidence"""
    report = client.accuracy(args.model, args.version, args.since, args.until)
    rows = [
        [
            v.version,
            v.labelled,
            "-" if v.calls is None else v.calls,
            "-" if v.coverage is None else f"{v.coverage:.1%}",
            "-" if v.accuracy is None else f"{v.accuracy:.2%}",
            "-" if v.low is None or v.high is None else f"{v.low:.2%}..{v.high:.2%}",
            "-" if v.estimated is None else f"{v.estimated:.2%}",
            _num(v.mae),
            "-" if v.median_delay_s is None else f"{v.median_delay_s:.0f} s",
        ]
        for v in report.versions
    ]
    header = [
        "VERSION",
        "LABELLED",
        "CALLS",
        "COVERAGE",
        "ACCURACY",
        "95%",
        "ESTIMATED",
        "MAE",
        "DELAY",
    ]
    window = f"{report.since:%Y-%m-%d %H:%M} to {report.until:%H:%M} UTC"
    print(f"{report.model}, predictions from {window}")
    print(_table(rows, header))
    return 0


@verb(
    MODEL,
    arg("--at", help="the instant, RFC 3339 (e.g. 2026-11-21T03:12:00Z; default: now)"),
    arg("--limit", type=int, default=10, help="changes to list before it"),
)
def routing(client: AgentClient, args: argparse.Namespace) -> int:
    """the routing table that served MODEL at an instant, who set it, and the changes before"""
    history = client.routing_history(args.model, at=args.at, limit=args.limit)
    at = f"{history.at:%Y-%m-%d %H:%M:%S} UTC"
    now = history.in_force
    if now is None:
        print(f"{history.model} had no routing table yet at {at}")
        return 1
    print(
        f"{history.model} at {at}: {_summary(now.table)} (route_version {now.route_version},"
        f" since {now.since:%Y-%m-%d %H:%M:%S}, by {now.who or '-'}: {now.action or '-'}"
        + (f", audit #{now.audit_id})" if now.audit_id is not None else ")")
    )
    rows = [
        [
            c.since.strftime("%Y-%m-%d %H:%M:%S"),
            c.route_version,
            c.who or "-",
            c.action or "-",
            "-" if c.audit_id is None else c.audit_id,
            _summary(c.table),
        ]
        for c in history.changes
    ]
    print(_table(rows, ["SINCE (UTC)", "ROUTE", "WHO", "ACTION", "AUDIT", "TABLE"]))
    return 0


@verb(
    arg("--since", help="ISO time, e.g. 2026-11-21T10:00:00"),
    arg("--limit", type=int, default=50),
)
def audit(client: AgentClient, args: argparse.Namespace) -> int:
    """every action: who, when, before -> after"""
    entries = client.audit(since=args.since, limit=args.limit)
    rows = [
        [
            e.id,
            e.ts.strftime("%Y-%m-%d %H:%M:%S"),
            e.who or "-",
            e.action,
            e.model or "-",
            e.result,
            _summary(e.before),
            _summary(e.after),
            e.error or "",
        ]
        for e in entries
    ]
    header = ["ID", "WHEN (UTC)", "WHO", "ACTION", "MODEL", "RESULT", "BEFORE", "AFTER", "ERROR"]
    print(_table(rows, header))
    return 0


@verb(
    MODEL,
    arg("--version", help="default: the stable version"),
    arg("--since", help="ISO time (default: an hour ago)"),
    arg("--until", help="ISO time (default: now)"),
    arg("--all", action="store_true", help="every feature, not just the drifted"),
)
def drift(client: AgentClient, args: argparse.Namespace) -> int:
    """per-feature drift of a version's traffic: trackside drift digits"""
    r = client.drift(args.model, version=args.version, since=args.since, until=args.until)
    print(
        f"{r.model} {r.version}: {r.current_rows} rows against {r.reference_rows} reference rows,"
        f" {len(r.drifted)} drifted: {', '.join(r.drifted) or 'none'}"
    )
    rows = [*r.features, *([r.prediction] if r.prediction else [])]
    rows.sort(key=lambda f: (not f.drifted, -(f.psi or f.js or 0), f.feature))
    shown = rows if args.all else [f for f in rows if f.drifted] or rows[:10]
    cells = [
        [
            f.feature,
            f.test,
            _num(f.statistic),
            _num(f.p_adjusted),
            _num(f.psi if f.kind == "numeric" else f.js),
            _num(f.wasserstein),
            "yes" if f.drifted else "no",
        ]
        for f in shown
    ]
    print(_table(cells, ["FEATURE", "TEST", "STAT", "P (BH)", "PSI/JS", "W/SD", "DRIFTED"]))
    return 0


@verb(
    MODEL,
    arg("version", help="the version to replay against"),
    arg("request_ids", nargs="+", metavar="REQUEST_ID"),
    arg("--tolerance", type=float, default=1e-6),
)
def replay(client: AgentClient, args: argparse.Namespace) -> int:
    """replay logged calls against a version: trackside replay digits v2 ID..."""
    report = client.replay(args.model, args.version, args.request_ids, tolerance=args.tolerance)
    while report.state == "running":
        time.sleep(0.5)
        report = client.replay_report(report.id)
    c = report.counts
    print(
        f"replay {report.id} {report.model} -> {report.version}: {report.done}/{report.total}"
        f" {report.state}; identical {c.get('identical', 0)}, within {report.tolerance:g}"
        f" {c.get('within_tolerance', 0)}, output changed {c.get('output_changed', 0)},"
        f" label changed {c.get('label_changed', 0)}, failed {c.get('failed', 0)};"
        f" same artifact {report.same_artifact}/{report.done}"
    )
    for item in report.items:
        if item.outcome != "identical":
            print(
                f"  {item.request_id}: {item.outcome} labels {item.original_labels} ->"
                f" {item.replay_labels} max|dp| {_num(item.max_abs_diff)} {item.error or ''}"
            )
    return 0 if c.get("failed", 0) == 0 and report.state == "done" else 1


@verb(
    arg("action", choices=["start", "status", "pause", "resume", "abort"]),
    MODEL,
    arg("canary", nargs="?", help="start: the version to roll out"),
    arg("--steps", help="start: canary weights, e.g. 1,5,25,50,100"),
    arg("--dwell", type=float, help="start: seconds each step lasts at least"),
    arg("--wait", type=float, help="start: seconds a step may stay undecided"),
    arg("--no-shadow-stage", action="store_true", help="start: users see the canary at once"),
)
def rollout(client: AgentClient, args: argparse.Namespace) -> int:
    """start|status|pause|resume|abort a progressive rollout"""
    if args.action == "start":
        if not args.canary:
            raise SystemExit("trackside rollout start MODEL CANARY [--steps 1,5,25,50,100]")
        policy: dict[str, Any] = {}
        if args.steps:
            policy["steps"] = [int(s) for s in args.steps.split(",")]
        if args.dwell is not None:
            policy["min_dwell_s"] = args.dwell
        if args.wait:
            policy["step_wait_s"] = args.wait
        if args.no_shadow_stage:
            policy["shadow_stage"] = False
        r = client.rollout_start(args.model, args.canary, **policy)
    elif args.action == "status":
        r = client.rollout(args.model)
    else:
        r = client.rollout_verb(args.model, args.action)
    steps = " -> ".join(
        f"[{label}]" if i == r.step and r.state in ("running", "paused") else label
        for i, label in enumerate(f"{w}%" if w else "shadow" for w in r.policy.weights())
    )
    print(f"{r.model}: canary {r.canary} against stable {r.stable}, {r.state}  {steps}")
    if r.reason:
        print(f"  {r.reason}")
    if r.judgements:  # every look is in the audit; the latest says where the evidence stands
        j = r.judgements[-1]
        where = f"{j.weight}%" if j.weight else "the shadow stage"
        print(f"  look {j.look} at {j.at:%Y-%m-%d %H:%M:%S}, {where}: {j.verdict}")
        for m in j.metrics:
            print(f"    {m.metric}: {m.verdict}  {m.note}")
    if r.state == "running":
        print(f"  next look at {r.judge_at:%H:%M:%S}")
    return 0


def _head_path(text: str, agent: str) -> str:
    """A path on the head node, as the agent reads it: a relative one is this folder's only
    when the agent runs here."""
    path = Path(text).expanduser()
    if path.is_absolute():
        return str(path)
    host = httpx.URL(agent).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(
            f"trackside batch: {text!r} is relative; give the head node's absolute path"
        )
    return str(path.absolute())


def _bar(job: BatchJob, width: int = 30) -> str:
    share = min(job.read / job.total, 1.0) if job.total else 0.0
    filled = int(share * width)
    rate = f"{job.rows_per_s:,.0f} rows/s" if job.rows_per_s else "starting"
    eta = f"ETA {job.eta_s:.0f}s" if job.eta_s is not None else "ETA -"
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {job.read:,}/{job.total:,} rows"
        f"  {rate}  {eta}  set aside {job.rejected:,}"
    )


def _print_job(job: BatchJob) -> None:
    took = f" in {job.duration_s:.1f}s" if job.duration_s is not None else ""
    print(f"{job.id}: {job.model}/{job.version} ({job.selector}) {job.state}{took}")
    print(
        f"  input {job.input}: {job.files} file(s), {job.total:,} rows,"
        f" sha256 {job.input_sha256[:12]}"
    )
    print(f"  output {job.output}")
    print(
        f"  rows: {job.read:,} read, {job.scored:,} scored, {job.rejected:,} set aside (rejects/)"
    )
    if job.provider:
        where = f" on {len(job.nodes)} node(s) ({', '.join(job.nodes)})" if job.nodes else ""
        print(
            f"  ran on {job.provider.removesuffix('ExecutionProvider')}{where},"
            f" artifact {job.sha256[:12]}"
        )
    if job.phases is not None:
        p = job.phases
        print(
            f"  time in tasks: validate {p.validate_s:.1f}s, score {p.score_s:.1f}s,"
            f" write {p.write_s:.1f}s"
        )
    if job.startup():
        print(f"  {job.startup()}")
    if job.drift is not None:
        d = job.drift
        shown = ", ".join(d.drifted[:5]) + ("…" if len(d.drifted) > 5 else "")
        print(f"  drift: {len(d.drifted)} of {len(d.features)} features drifted {shown}".rstrip())
        if d.prediction is not None and d.prediction.js is not None:
            moved = "drifted" if d.prediction.drifted else "steady"
            print(f"  predicted labels: JS {d.prediction.js:.3f} against the reference ({moved})")
    if job.error:
        print(f"  error: {job.error}")


def _follow(client: AgentClient, job: BatchJob, every_s: float = 1.0) -> BatchJob:
    """A progress bar until the job ends (Ctrl-C leaves it running)."""
    tty = sys.stdout.isatty()
    last_line = 0.0
    noted: str | None = None
    try:
        while job.state == "running":
            if tty:
                print("\r" + _bar(job), end="", flush=True)
            elif time.monotonic() - last_line >= 10:
                print(_bar(job), flush=True)
                last_line = time.monotonic()
            if job.note and job.note != noted:
                print(f"\n  {job.note}" if tty else f"  {job.note}", flush=True)
                noted = job.note
            time.sleep(every_s)
            job = client.batch_job(job.id)
    except KeyboardInterrupt:
        print(f"\nthe job runs on; follow it with `trackside batch status {job.id}`")
        raise SystemExit(130) from None
    if tty:
        print("\r" + _bar(job))
    return job


@verb(
    arg("what", metavar="MODEL|list|status|cancel|diff"),
    arg("ids", nargs="*", metavar="JOB", help="status/cancel: a job; diff: two jobs"),
    arg("--version", default="stable", help="stable (default), best:METRIC, or a version"),
    arg("--input", help="a Parquet or CSV file, a folder of them, or a glob (on the head)"),
    arg("--output", help="a new folder for the predictions (on the head, or shared storage)"),
    arg("--format", choices=["parquet", "csv"], help="default: from the files' extension"),
    arg("--detach", action="store_true", help="start the job and return"),
    arg("--json", action="store_true"),
)
def batch(client: AgentClient, args: argparse.Namespace) -> int:
    """score a dataset with a model version on the cluster; list, status, cancel, diff jobs"""
    if args.what == "list":
        jobs = client.batch_jobs()
        if args.json:
            print(json.dumps([j.model_dump(mode="json") for j in jobs], indent=2))
            return 0
        rows = [
            [
                j.id,
                f"{j.model}/{j.version}",
                j.state,
                f"{j.read:,}/{j.total:,}",
                f"{j.rejected:,}",
                f"{j.started_at:%Y-%m-%d %H:%M}",
                _num(j.duration_s),
                j.schedule or "",
            ]
            for j in jobs
        ]
        header = ["JOB", "VERSION", "STATE", "ROWS", "SET ASIDE", "STARTED", "SECONDS", "SCHEDULE"]
        print(_table(rows, header) if rows else "no batch jobs yet")
        return 0
    if args.what in ("status", "cancel"):
        if len(args.ids) != 1:
            raise SystemExit(f"trackside batch {args.what} JOB")
        job = (
            client.batch_job(args.ids[0])
            if args.what == "status"
            else client.batch_cancel(args.ids[0])
        )
        print(job.model_dump_json(indent=2)) if args.json else _print_job(job)
        return 0
    if args.what == "diff":
        if len(args.ids) != 2:
            raise SystemExit("trackside batch diff JOB_A JOB_B")
        d = client.batch_diff(*args.ids)
        if args.json:
            print(d.model_dump_json(indent=2))
            return 0
        print(f"{d.a} against {d.b}: {'identical' if d.identical else 'they differ'}")
        print(
            f"  rows: {d.rows_a:,} and {d.rows_b:,}, {d.common:,} in both,"
            f" {d.only_a:,} only in the first, {d.only_b:,} only in the second"
        )
        print(f"  labels changed: {d.labels_changed:,} of {d.common:,}")
        change = f" (at most {d.max_probability_change:.3g})" if d.max_probability_change else ""
        print(f"  probabilities changed: {d.probabilities_changed:,}{change}")
        if d.examples:
            print(f"  e.g. {', '.join(d.examples)}")
        return 0 if d.identical else 1
    if not args.input or not args.output:
        raise SystemExit("trackside batch MODEL --input PATH --output PATH [--version V]")
    body = BatchStart(
        model=args.what,
        version=args.version,
        input=_head_path(args.input, args.agent),
        output=_head_path(args.output, args.agent),
        format=args.format,
    )
    job = client.batch_start(body)
    print(f"started {job.id}: {job.model}/{job.version}, {job.total:,} rows in {job.files} file(s)")
    if args.detach:
        return 0
    job = _follow(client, job)
    if args.json:
        print(job.model_dump_json(indent=2))
    else:
        _print_job(job)
    return 0 if job.state == "succeeded" else 1


def build_parser(name: str) -> argparse.ArgumentParser:
    spec = VERBS[name]
    p = argparse.ArgumentParser(prog=f"trackside {name}", description=spec.summary)
    p.add_argument(
        "--agent",
        default=os.environ.get("TRACKSIDE_AGENT", DEFAULT_URL),
        help=f"agent URL (default $TRACKSIDE_AGENT or {DEFAULT_URL})",
    )
    p.add_argument("--token", help="API token (default $TRACKSIDE_TOKEN or .trackside/agent.token)")
    for a in spec.args:
        p.add_argument(*a.names, **a.options)
    return p


def main(name: str, argv: list[str]) -> int:
    args = build_parser(name).parse_args(argv)
    try:
        with AgentClient(args.agent, token=args.token, user=getpass.getuser()) as client:
            return VERBS[name].run(client, args)
    except AgentError as exc:
        print(f"trackside {name}: {exc.message}", file=sys.stderr)
        return 1
