"""Alerts, evaluated by the controller every few seconds: each model's `[[alerts]]` rules
(serve/model_config.py AlertRule) measured on every deployed version over the rule's window,
through the fleet's request log and feedback, and the host rules of configs/agent.toml
(`[[controller.alerts]]`, HostAlertRule) measured on every host of the fleet (an agent that
does not answer is `agent_down`); the states (agent/alert_machine.py) kept in DuckDB with
their history; and the actions of a rule run when it fires (and, for webhooks and commands,
when it resolves), in the background, each result in the audit table.

The payload, POSTed to a webhook as JSON and given to a command on stdin:

    {"schema": 1, "status": "firing" | "resolved", "rule": "errors", "kind": "error_rate",
     "model": "digits", "model_version": "v2", "host": null, "value": 0.12,
     "threshold": 0.05, "for_s": 60, "window_s": 300, "since": "2026-12-01T03:12:00Z",
     "at": "...", "controller": "gpu-head",
     "summary": "digits/v2 error_rate 0.12 > 0.05 for 60 s"}

A host rule's has "host": "gpu-node-2" and null model and model_version.

A webhook is retried (`retries` times, 1 s, 2 s, 4 s ... apart) on an error or a non-2xx
answer; a command runs without a shell and is killed at its timeout. Neither ever blocks
the evaluation or the agent: each runs as its own task. A command gets the agent's
environment without any variable named like a token."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from agent.alert_machine import Rule, initial, step
from agent.controller import Controller
from agent.errors import ApiError
from agent.feedback import FeedbackBook
from agent.request_log import RequestLog
from agent.rollouts import Rollouts
from agent.schemas.alerts import AlertEvent, AlertsPage, AlertState, Change, HostFacts
from agent.schemas.coverage import Coverage
from agent.store import Store, naive_utc, utcnow
from serve.model_config import (
    AlertRule,
    CommandAction,
    HostAlertKind,
    HostAlertRule,
    RolloutAction,
    WebhookAction,
)
from serve.model_store import StoreError

log = logging.getLogger("trackside.alerts")
HISTORY_KEPT = 100
Seen = tuple[list[HostFacts], Coverage]  # a tick's facts of every host, per window length
WHO = "alerts"


def payload(rule: Rule, state: AlertState, change: Change) -> dict[str, Any]:
    status = "firing" if change == "firing" else "resolved"
    value = "-" if state.value is None else f"{state.value:.4g}"
    sign = "<" if rule.kind == "accuracy" else ">"
    return {
        "schema": 1,
        "status": status,
        "rule": rule.name,
        "kind": rule.kind,
        "model": state.model or None,
        "model_version": state.version or None,
        "host": state.host,
        "value": state.value,
        "threshold": rule.threshold,
        "for_s": rule.for_s,
        "window_s": rule.window_s,
        "since": state.since.isoformat() + "Z",
        "at": utcnow().isoformat() + "Z",
        "controller": socket.gethostname(),
        "summary": f"{state.subject} {rule.kind} {value} {sign} {rule.threshold:g}"
        f" for {rule.for_s:g} s"
        if status == "firing"
        else f"{state.subject} {rule.kind} {value}: back within {rule.threshold:g}",
    }


def host_value(kind: HostAlertKind, facts: HostFacts) -> float | None:
    """A host rule's measure of one host that answered (None: nothing to measure)."""
    if kind == "agent_down":
        return 0.0
    if kind == "gpu_xid":
        return float(facts.xid_errors)
    if kind == "gpu_ecc":
        return float(facts.ecc_errors)
    if kind == "gpu_throttle":
        return facts.throttled_share
    return float(facts.spool_drops)


class Alerts:
    def __init__(
        self,
        store: Store,
        controller: Controller,
        requests: RequestLog,
        feedback: FeedbackBook | None,
        rollouts: Rollouts | None,
        transport: httpx.AsyncBaseTransport | None = None,
        host_rules: Sequence[HostAlertRule] = (),
    ) -> None:
        self.store = store
        self.ctl = controller
        self.requests = requests
        self.feedback = feedback
        self.rollouts = rollouts
        self.transport = transport
        self.host_rules = list(host_rules)
        self.tasks: set[asyncio.Task[None]] = set()

    # -- state ---------------------------------------------------------------------------------
    def _key(self, rule: str, model: str, version: str, host: str | None) -> str:
        return (
            f"alert:@host:{rule}:{host}" if host is not None else f"alert:{model}:{rule}:{version}"
        )

    def states(self) -> list[AlertState]:
        """Of the rules configured now (a rule taken out of the TOML no longer fires)."""
        rules = {(m, r.name) for m, c in self.ctl.models.items() for r in c.alerts}
        host_rules = {r.name for r in self.host_rules}
        rows = self.store.query("SELECT value FROM kv WHERE key LIKE 'alert:%' ORDER BY key")
        found = [AlertState.model_validate_json(r["value"]) for r in rows]
        return [
            a
            for a in found
            if (a.rule in host_rules if a.host is not None else (a.model, a.rule) in rules)
        ]

    def page(self) -> AlertsPage:
        states = self.states()
        rows = self.store.query("SELECT value FROM kv WHERE key = 'alert_history'")
        history = (
            [AlertEvent.model_validate(e) for e in json.loads(rows[0]["value"])] if rows else []
        )
        return AlertsPage(
            firing=[s for s in states if s.state == "firing"],
            pending=[s for s in states if s.state == "pending"],
            history=history,
        )

    def _record(self, state: AlertState, change: Change, message: str) -> None:
        event = AlertEvent(
            ts=utcnow(),
            rule=state.rule,
            model=state.model,
            version=state.version,
            host=state.host,
            change=change,
            value=state.value,
            threshold=state.threshold,
            message=message,
        )
        history = self.page().history
        kept = [event, *history][:HISTORY_KEPT]
        self.store.put_state("alert_history", [e.model_dump(mode="json") for e in kept])

    # -- measuring -----------------------------------------------------------------------------
    def measure(self, rule: AlertRule, model: str, version: str, now: datetime) -> float | None:
        """The rule's measure of one version over its window (None: too little to tell)."""
        since = now - timedelta(seconds=rule.window_s)
        if rule.kind in ("error_rate", "fallback_share", "p99_ms"):
            points = self.requests.latency(
                model, version, since, now, int(rule.window_s), Coverage()
            )
            calls = sum(p.requests for p in points)
            if calls < max(rule.min_calls, 1):
                return None
            if rule.kind == "error_rate":
                return sum(p.error_rate * p.requests for p in points) / calls
            if rule.kind == "fallback_share":
                return sum(p.fallback_rate * p.requests for p in points) / calls
            return max((p.p99_ms for p in points if p.p99_ms is not None), default=None)
        if rule.kind in ("accuracy", "accuracy_drop"):
            if self.feedback is None:
                return None
            report = self.feedback.accuracy(model, since, now, 1, version)
            found = [v for v in report.versions if v.version == version]
            if not found or found[0].accuracy is None or found[0].labelled < rule.min_calls:
                return None
            if rule.kind == "accuracy":
                return found[0].accuracy
            try:
                offline = self.ctl.model_store.manifest(model, version).metrics.get("accuracy")
            except StoreError:
                return None
            return None if offline is None else offline - found[0].accuracy
        # drifted_share: of the version's input features, against its own reference sample
        from agent.analysis.drift import drift_reports
        from agent.schemas.drift import DriftThresholds

        source = self.ctl.drift_source(model, version)
        if source is None:
            return None
        (drift,) = drift_reports(
            self.requests, source, naive_utc(since), naive_utc(now), DriftThresholds()
        )
        if drift.rows < rule.min_calls or not drift.features:
            return None
        return sum(f.decision.drifted for f in drift.features) / len(drift.features)

    def measure_hosts(
        self,
        rule: HostAlertRule,
        now: datetime,
        seen: dict[float, Seen],
    ) -> dict[str, float | None]:
        """The rule's measure of every host over its window: the hosts that answered, and those
        that did not (1 for `agent_down`, else no measure). `seen` keeps one fleet-wide ask
        per window length within a tick."""
        if rule.window_s not in seen:
            coverage = Coverage()
            since = now - timedelta(seconds=rule.window_s)
            seen[rule.window_s] = (self.requests.host_facts(since, now, coverage), coverage)
        facts, coverage = seen[rule.window_s]
        values = {f.host: host_value(rule.kind, f) for f in facts}
        for missing in coverage.missing:
            values[missing.host] = 1.0 if rule.kind == "agent_down" else None
        return {h: v for h, v in values.items() if not rule.hosts or h in rule.hosts}

    # -- the tick ------------------------------------------------------------------------------
    async def tick(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)  # aware, as the stored states read back
        seen: dict[float, Seen] = {}
        for host_rule in self.host_rules:
            try:
                values = await asyncio.to_thread(self.measure_hosts, host_rule, now, seen)
            except Exception:  # one rule's measure must not stop the others
                log.exception("host alert %s: no measure", host_rule.name)
                continue
            for host, value in sorted(values.items()):
                self._advance(host_rule, "", "", value, now, host)
        for model, config in self.ctl.models.items():
            if not config.alerts:
                continue
            try:
                deployed = self.ctl.state(model).versions
            except ApiError:  # not bootstrapped yet
                continue
            for rule in config.alerts:
                for version in [v for v in deployed if not rule.versions or v in rule.versions]:
                    try:
                        value = await asyncio.to_thread(self.measure, rule, model, version, now)
                    except Exception:  # one rule's measure must not stop the others
                        log.exception("alert %s on %s/%s: no measure", rule.name, model, version)
                        continue
                    self._advance(rule, model, version, value, now)

    def _advance(
        self,
        rule: Rule,
        model: str,
        version: str,
        value: float | None,
        now: datetime,
        host: str | None = None,
    ) -> None:
        key = self._key(rule.name, model, version, host)
        doc = self.store.get_state(key)
        state = AlertState.model_validate(doc) if doc else initial(rule, model, version, now, host)
        state = state.model_copy(update={"threshold": rule.threshold})
        nxt, change = step(state, rule, value, now)
        self.store.put_state(key, nxt.model_dump(mode="json"))
        if change is None:
            return
        body = payload(rule, nxt, change)
        self._record(nxt, change, body["summary"])
        if change in ("firing", "resolved"):
            self.store.audit(
                WHO,
                f"alert_{change}",
                model or None,
                {"rule": rule.name, "version": version}
                if host is None
                else {"rule": rule.name, "host": host},
                None,
                None,
                change,
                body["summary"],
            )
            log.warning("alert %s: %s", change, body["summary"])
            for action in rule.actions:
                if isinstance(action, RolloutAction) and change != "firing":
                    continue
                self._spawn(self._run(action, rule, body))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        """Wait for the actions in flight (tests, and a clean shutdown)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    # -- actions -------------------------------------------------------------------------------
    async def _run(self, action: Any, rule: Rule, body: dict[str, Any]) -> None:
        model = body["model"]
        try:
            if isinstance(action, WebhookAction):
                await self._webhook(action, rule, body)
            elif isinstance(action, CommandAction):
                await self._command(action, rule, body)
            elif isinstance(action, RolloutAction) and isinstance(rule, AlertRule):
                await self._rollout(action, rule, body)
        except Exception as exc:  # an action's failure is audited, never the agent's
            log.exception("alert %s action failed", rule.name)
            self.store.audit(
                WHO, "alert_action", model, {"rule": rule.name}, None, None, "failed", repr(exc)
            )

    async def _webhook(self, action: WebhookAction, rule: Rule, body: dict[str, Any]) -> None:
        error = None
        attempts = 0
        async with httpx.AsyncClient(timeout=action.timeout_s, transport=self.transport) as http:
            for attempt in range(action.retries + 1):
                attempts = attempt + 1
                try:
                    r = await http.post(action.webhook, json=body)
                    if 200 <= r.status_code < 300:
                        error = None
                        break
                    error = f"{r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    error = repr(exc)
                if attempt < action.retries:
                    await asyncio.sleep(2**attempt)
        request = {
            "rule": rule.name,
            "url": action.webhook,
            "attempts": attempts,
            "status": body["status"],
        }
        result = "failed" if error else "ok"
        self.store.audit(WHO, "alert_webhook", body["model"], request, None, None, result, error)

    async def _command(self, action: CommandAction, rule: Rule, body: dict[str, Any]) -> None:
        # The agent's environment without its secrets (Ray's token, tokens of any kind): a
        # hook gets the payload, not the keys to the cluster.
        env = {k: v for k, v in os.environ.items() if "TOKEN" not in k.upper()}
        proc = await asyncio.create_subprocess_exec(
            *action.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        error = None
        try:
            _, err = await asyncio.wait_for(
                proc.communicate(json.dumps(body).encode()), action.timeout_s
            )
            if proc.returncode != 0:
                error = f"exit {proc.returncode}: {err.decode(errors='replace')[-300:]}"
        except TimeoutError:
            proc.kill()
            await proc.wait()
            error = f"killed after {action.timeout_s:g} s"
        request = {"rule": rule.name, "command": action.command, "status": body["status"]}
        result = "failed" if error else "ok"
        self.store.audit(WHO, "alert_command", body["model"], request, None, None, result, error)

    async def _rollout(self, action: RolloutAction, rule: AlertRule, body: dict[str, Any]) -> None:
        model, who = body["model"], f"alert {rule.name}"
        try:
            if action.rollout == "pause":
                if self.rollouts is None:
                    return
                r = self.rollouts.get(model)
                if r.state == "running":
                    await self.rollouts.pause(model, who)
            else:
                await self.ctl.rollback(model, None, who)
        except ApiError as exc:  # nothing running, no previous stable: said in the audit
            self.store.audit(
                WHO,
                f"alert_{action.rollout}",
                model,
                {"rule": rule.name},
                None,
                None,
                "refused",
                exc.message,
            )
