"""CLI verbs over the agent's API: status, deploy, traffic, promote, rollback, retire, audit,
drift, replay and rollout."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from typing import Any

from agent.api_models import ActionResult
from agent.client import DEFAULT_URL, AgentClient, AgentError


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


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


def _table_text(table) -> str:
    if table is None:
        return "-"
    weights = " ".join(f"{v}={w}" for v, w in sorted(table.weights.items()))
    extra = f" shadow={table.shadow.version}:{table.shadow.fraction:g}" if table.shadow else ""
    extra += f" fallback={table.fallback}" if table.fallback else ""
    return f"#{table.route_version} {weights}{extra}"


def _print_action(result: ActionResult) -> None:
    print(f"{result.action} {result.model}: {result.message}")
    if result.changed:
        print(f"  before: {_table_text(result.before)}")
        print(f"  after:  {_table_text(result.after)}")
    print(f"  audit #{result.audit_id}")


def cmd_status(client: AgentClient, args: argparse.Namespace) -> int:
    models = [client.model(args.model)] if args.model else client.models()
    if args.json:
        print(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
        return 0
    for m in models:
        print(
            f"{m.model}  stable={m.stable}  table {_table_text(m.table)}  router {m.router_status}"
        )
        rows = [
            [
                v.version,
                f"{v.weight}%",
                f"{v.shadow_fraction:g}" if v.shadow_fraction else "-",
                v.app_status or "-",
                " ".join(f"{k}:{n}" for k, n in sorted(v.replicas.items())) or "-",
                (v.sha256 or "")[:12],
                v.problem or "",
            ]
            for v in m.versions
        ]
        print(
            _table(rows, ["VERSION", "WEIGHT", "SHADOW", "STATUS", "REPLICAS", "SHA256", "PROBLEM"])
        )
    return 0


def cmd_deploy(client: AgentClient, args: argparse.Namespace) -> int:
    _print_action(client.deploy(args.model, args.version, force=args.force))
    return 0


def cmd_traffic(client: AgentClient, args: argparse.Namespace) -> int:
    result = client.set_traffic(
        args.model, _weights(args.weights), shadow=_shadow(args.shadow), fallback=args.fallback
    )
    _print_action(result)
    return 0


def cmd_promote(client: AgentClient, args: argparse.Namespace) -> int:
    _print_action(client.promote(args.model, args.version))
    return 0


def cmd_rollback(client: AgentClient, args: argparse.Namespace) -> int:
    _print_action(client.rollback(args.model, args.to))
    return 0


def cmd_retire(client: AgentClient, args: argparse.Namespace) -> int:
    _print_action(client.retire(args.model, args.version))
    return 0


def cmd_audit(client: AgentClient, args: argparse.Namespace) -> int:
    entries = client.audit(since=args.since, limit=args.limit)
    rows = [
        [
            e.id,
            e.ts.strftime("%Y-%m-%d %H:%M:%S"),
            e.who or "-",
            e.action,
            e.model or "-",
            e.result,
            _brief(e.before),
            _brief(e.after),
            e.error or "",
        ]
        for e in entries
    ]
    print(
        _table(
            rows,
            ["ID", "WHEN (UTC)", "WHO", "ACTION", "MODEL", "RESULT", "BEFORE", "AFTER", "ERROR"],
        )
    )
    return 0


def cmd_drift(client: AgentClient, args: argparse.Namespace) -> int:
    r = client.drift(args.model, version=args.version, since=args.since, until=args.until)
    print(
        f"{r.model} {r.version}: {r.current_rows} rows against {r.reference_rows} reference rows,"
        f" {len(r.drifted)} drifted: {', '.join(r.drifted) or 'none'}"
    )
    rows = [*r.features, *([r.prediction] if r.prediction else [])]
    rows.sort(key=lambda f: (not f.drifted, -(f.psi or f.js or 0), f.feature))
    shown = rows if args.all else [f for f in rows if f.drifted] or rows[:10]
    print(
        _table(
            [
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
            ],
            ["FEATURE", "TEST", "STAT", "P (BH)", "PSI/JS", "W/SD", "DRIFTED"],
        )
    )
    return 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def cmd_replay(client: AgentClient, args: argparse.Namespace) -> int:
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


def cmd_rollout(client: AgentClient, args: argparse.Namespace) -> int:
    if args.action == "start":
        if not args.canary:
            raise SystemExit("trackside rollout start MODEL CANARY [--steps 5,25,50,100]")
        policy: dict[str, Any] = {}
        if args.steps:
            policy["steps"] = [int(s) for s in args.steps.split(",")]
        if args.wait:
            policy["step_wait_s"] = args.wait
        r = client.rollout_start(args.model, args.canary, **policy)
    elif args.action == "status":
        r = client.rollout(args.model)
    else:
        r = client.rollout_verb(args.model, args.action)
    steps = " -> ".join(
        f"[{w}%]" if i == r.step and r.state in ("running", "paused") else f"{w}%"
        for i, w in enumerate(r.policy.steps)
    )
    print(f"{r.model}: canary {r.canary} against stable {r.stable}, {r.state}  {steps}")
    if r.reason:
        print(f"  {r.reason}")
    for j in r.judgements:
        print(f"  {j.at:%Y-%m-%d %H:%M:%S} step {j.step + 1} at {j.weight}%: {j.verdict}")
        for m in j.metrics:
            print(f"    {m.get('metric')}: {m.get('verdict')}  {m.get('note', '')}")
    return 0


def _brief(table: Any) -> str:
    if not isinstance(table, dict):
        return "-"
    weights = " ".join(f"{v}={w}" for v, w in sorted(table.get("weights", {}).items()))
    return f"#{table.get('route_version')} {weights}"


COMMANDS = {
    "status": cmd_status,
    "deploy": cmd_deploy,
    "traffic": cmd_traffic,
    "promote": cmd_promote,
    "rollback": cmd_rollback,
    "retire": cmd_retire,
    "audit": cmd_audit,
    "drift": cmd_drift,
    "replay": cmd_replay,
    "rollout": cmd_rollout,
}


def build_parser(verb: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"trackside {verb}")
    p.add_argument(
        "--agent",
        default=os.environ.get("TRACKSIDE_AGENT", DEFAULT_URL),
        help="agent URL (default $TRACKSIDE_AGENT or http://127.0.0.1:7070)",
    )
    p.add_argument("--token", help="API token (default $TRACKSIDE_TOKEN or .trackside/agent.token)")
    if verb == "status":
        p.add_argument("model", nargs="?")
        p.add_argument("--json", action="store_true")
    elif verb in ("deploy", "promote", "retire"):
        p.add_argument("model")
        p.add_argument("version")
        if verb == "deploy":
            p.add_argument("--force", action="store_true", help="deploy even if not blessed")
    elif verb == "traffic":
        p.add_argument("model")
        p.add_argument("weights", nargs="+", metavar="VERSION=PERCENT")
        p.add_argument("--shadow", metavar="VERSION:FRACTION")
        p.add_argument("--fallback", metavar="VERSION")
    elif verb == "rollback":
        p.add_argument("model")
        p.add_argument("--to", metavar="VERSION")
    elif verb == "drift":
        p.add_argument("model")
        p.add_argument("--version", help="default: the stable version")
        p.add_argument("--since", help="ISO time (default: an hour ago)")
        p.add_argument("--until", help="ISO time (default: now)")
        p.add_argument("--all", action="store_true", help="every feature, not just the drifted")
    elif verb == "replay":
        p.add_argument("model")
        p.add_argument("version", help="the version to replay against")
        p.add_argument("request_ids", nargs="+", metavar="REQUEST_ID")
        p.add_argument("--tolerance", type=float, default=1e-6)
    elif verb == "rollout":
        p.add_argument("action", choices=["start", "status", "pause", "resume", "abort"])
        p.add_argument("model")
        p.add_argument("canary", nargs="?", help="start: the version to roll out")
        p.add_argument("--steps", help="start: canary weights, e.g. 5,25,50,100")
        p.add_argument("--wait", type=float, help="start: seconds to watch each step")
    elif verb == "audit":
        p.add_argument("--since", help="ISO time, e.g. 2026-11-21T10:00:00")
        p.add_argument("--limit", type=int, default=50)
    return p


def main(verb: str, argv: list[str]) -> int:
    args = build_parser(verb).parse_args(argv)
    try:
        with AgentClient(args.agent, token=args.token, user=getpass.getuser()) as client:
            return COMMANDS[verb](client, args)
    except AgentError as exc:
        print(f"trackside {verb}: {exc.message}", file=sys.stderr)
        return 1
