"""Progressive rollouts on the controller: the state machine (agent/rollout_machine.py) kept
in DuckDB, a tick that judges every step that is due, and the traffic changes applied
through the controller (so they are audited and refused like an operator's would be).

A step sends `canary_weight`% to the canary and also shadows `pair_fraction` of the canary's
calls to stable, whose answers the judge compares. The judge sees the canary's calls since
the step began and stable's since the rollout began (at the last step stable has no traffic
of its own). A rollout survives an agent restart: its state, window and next judgement time
are stored, and the tick picks it up again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.api_models import TrafficRequest
from agent.controller import ActionError, Controller
from agent.rollout_machine import (
    FINISHED,
    Action,
    Promote,
    RollBack,
    Rollout,
    RolloutError,
    SetWeight,
    abort,
    due,
    judged,
    pause,
    resume,
    start,
)
from agent.store import Store, naive_utc
from serve.model_config import RolloutPolicy
from serve.model_store import StoreError

if TYPE_CHECKING:
    from agent.analysis.judge import Judgement, MetricVerdict

log = logging.getLogger("trackside.rollouts")

# The labels of a version's JSON answer, as a list (one per instance).
LABELS = """list_transform(
    from_json({col}, '{{"predictions": [{{"label": "VARCHAR"}}]}}').predictions,
    lambda p: p.label)"""


def now_utc() -> datetime:
    return datetime.now(UTC)


class Rollouts:
    def __init__(self, store: Store, controller: Controller) -> None:
        self.store = store
        self.ctl = controller

    # -- state ------------------------------------------------------------------------------
    def _key(self, model: str) -> str:
        return f"rollout:{model}"

    def _save(self, r: Rollout) -> None:
        self.store.put_state(self._key(r.model), r.model_dump(mode="json"))

    def get(self, model: str) -> Rollout:
        doc = self.store.get_state(self._key(model))
        if doc is None:
            raise RolloutError(f"{model} has no rollout", 404)
        return Rollout.model_validate(doc)

    def all(self) -> list[Rollout]:
        rows = self.store.query("SELECT value FROM kv WHERE key LIKE 'rollout:%' ORDER BY key")
        return [Rollout.model_validate_json(r["value"]) for r in rows]

    # -- operator verbs ---------------------------------------------------------------------
    async def start(self, model: str, canary: str, overrides: dict[str, Any], who: str) -> Rollout:
        state = self.ctl.state(model)
        if canary == state.stable:
            raise RolloutError(f"{canary} is already the stable version of {model}", 422)
        if canary not in state.versions:
            raise RolloutError(
                f"{canary} of {model} is not deployed; deploy it first ({state.versions})", 422
            )
        try:
            current = self.get(model)
        except RolloutError:
            current = None
        if current is not None and current.state not in FINISHED:
            raise RolloutError(
                f"{model} already has a {current.state} rollout of {current.canary}; abort it first"
            )
        base = self.ctl.models[model].rollout.model_dump()
        policy = RolloutPolicy.model_validate(_merge(base, overrides))
        r, action = start(model, canary, state.stable, policy, now_utc(), who)
        await self._apply(r, action)
        self._save(r)
        self._audit(r, "rollout_start", "ok")
        return r

    async def pause(self, model: str, who: str) -> Rollout:
        r, _ = pause(self.get(model), now_utc(), who)
        self._save(r)
        self._audit(r, "rollout_pause", "ok", who)
        return r

    async def resume(self, model: str, who: str) -> Rollout:
        r, action = resume(self.get(model), now_utc())
        await self._apply(r, action)
        self._save(r)
        self._audit(r, "rollout_resume", "ok", who)
        return r

    async def abort(self, model: str, who: str) -> Rollout:
        r, action = abort(self.get(model), now_utc(), who)
        await self._apply(r, action)
        self._save(r)
        self._audit(r, "rollout_abort", "ok", who)
        return r

    # -- the tick ---------------------------------------------------------------------------
    async def tick(self) -> None:
        for r in self.all():
            if r.state != "running":
                continue
            moved = self._moved_by_hand(r)
            if moved:
                r = r.model_copy(
                    update={"state": "paused", "reason": moved, "updated_at": now_utc()}
                )
                self._save(r)
                self._audit(r, "rollout_pause", "ok", "rollout")
                continue
            now = now_utc()
            if not due(r, now):
                continue
            judgement = await asyncio.to_thread(self.judge, r, now)
            metrics = [asdict(m) for m in judgement.metrics]
            nxt, action = judged(r, judgement.verdict, metrics, now)
            try:
                await self._apply(nxt, action)
            except ActionError as exc:  # e.g. an operator's action in flight: next tick
                log.warning("rollout of %s: %s; retrying", r.model, exc.message)
                continue
            self._save(nxt)
            self._audit(nxt, "rollout_judge", judgement.verdict, "rollout")

    def _moved_by_hand(self, r: Rollout) -> str | None:
        table = self.ctl.state(r.model).table
        expected = _weights(r.stable, r.canary, r.weight)
        if table.weights != expected:
            return (
                f"traffic was changed outside the rollout ({table.weights}, expected"
                f" {expected}); resume to put the step's weights back"
            )
        return None

    def judge(self, r: Rollout, now: datetime) -> Judgement:
        # numpy and scipy load with the first judgement, not with every controller.
        import numpy as np

        from agent.analysis.judge import GateSettings, VersionSample, judge

        gates = GateSettings(**r.policy.gates.model_dump())
        rows = self.store.query_arrays(
            """
            SELECT ts, total_ms,
                   (version = $canary OR fallback_from = $canary) AS canary,
                   (status >= 500 OR fallback_from IS NOT NULL) AS failed
            FROM requests
            WHERE model = $model AND role = 'primary' AND ts >= $since AND ts < $until
              AND (version IN ($canary, $stable) OR fallback_from IN ($canary, $stable))
            """,
            {
                "canary": r.canary,
                "stable": r.stable,
                "model": r.model,
                "since": naive_utc(r.started_at),
                "until": naive_utc(now),
            },
        )
        step_start = np.datetime64(naive_utc(r.step_started_at))
        in_step = rows["ts"] >= step_start
        is_canary = rows["canary"].astype(bool)
        failed = rows["failed"].astype(bool)
        latency = np.nan_to_num(rows["total_ms"].astype(float))

        def sample(mask: Any) -> VersionSample:
            return VersionSample(latencies_ms=latency[mask], errors=int(failed[mask].sum()))

        pairs = self.store.query(
            f"""
            SELECT count(*) AS pairs,
                   count(*) FILTER (WHERE {LABELS.format(col="p.output")}
                                    IS DISTINCT FROM {LABELS.format(col="s.output")})
                       AS disagreements
            FROM requests p JOIN requests s
              ON s.request_id = p.request_id AND s.role = 'shadow' AND s.version = $stable
            WHERE p.model = $model AND p.role = 'primary' AND p.version = $canary
              AND p.status = 200 AND s.status = 200 AND p.ts >= $since AND p.ts < $until
            """,
            {
                "canary": r.canary,
                "stable": r.stable,
                "model": r.model,
                "since": naive_utc(r.step_started_at),
                "until": naive_utc(now),
            },
        )[0]
        return judge(
            sample(is_canary & in_step),
            sample(~is_canary),
            int(pairs["disagreements"]),
            int(pairs["pairs"]),
            gates,
            extra=self._drift(r, now, gates.max_drifted_share),
        )

    def _drift(self, r: Rollout, now: datetime, max_share: float) -> list[MetricVerdict]:
        """The canary's traffic in this step against its reference sample: at worst
        marginal (the inputs drift for stable too), but a person should see it."""
        from agent.analysis.drift import DriftSource, drift_reports
        from agent.analysis.drift_stats import DriftThresholds
        from agent.analysis.judge import MetricVerdict

        if self.ctl is None:
            return []
        try:
            manifest = self.ctl.model_store.manifest(r.model, r.canary)
            reference = self.ctl.model_store.reference_path(r.model, r.canary)
        except StoreError:
            return []
        if reference is None or not reference.is_file():
            return []
        source = DriftSource(r.model, r.canary, reference, list(manifest.input.features))
        (report,) = drift_reports(
            self.store, source, naive_utc(r.step_started_at), naive_utc(now), DriftThresholds()
        )
        drifted = [f.feature for f in report.features if f.decision.drifted]
        moved = report.prediction is not None and report.prediction.decision.drifted
        share = len(drifted) / max(len(report.features), 1)
        return [
            MetricVerdict(
                "drift",
                "marginal" if moved or share > max_share else "pass",
                canary=float(len(drifted)),
                note=f"{len(drifted)} of {len(report.features)} input features drifted from"
                f" {r.canary}'s reference; predictions {'drifted' if moved else 'steady'}"
                f" ({report.rows} rows)",
            )
        ]

    # -- applying -----------------------------------------------------------------------------
    async def _apply(self, r: Rollout, action: Action) -> None:
        who = f"rollout ({r.who})"
        if isinstance(action, SetWeight):
            pair = r.policy.pair_fraction
            body = TrafficRequest(
                weights=_weights(r.stable, r.canary, action.canary_weight),
                shadow={"version": r.stable, "fraction": pair} if pair > 0 else None,
                fallback=r.stable,
            )
            await self.ctl.set_traffic(r.model, body, who)
        elif isinstance(action, Promote):
            await self.ctl.promote(r.model, action.version, who)
        elif isinstance(action, RollBack):
            body = TrafficRequest(weights={action.to: 100}, shadow=None, fallback=None)
            await self.ctl.set_traffic(r.model, body, who)

    def _audit(self, r: Rollout, action: str, result: str, who: str | None = None) -> None:
        summary = {
            "canary": r.canary,
            "stable": r.stable,
            "state": r.state,
            "step": r.step,
            "weight": r.weight,
            "reason": r.reason,
        }
        self.store.audit(who or r.who, action, r.model, summary, None, None, result, r.reason)


def _weights(stable: str, canary: str, canary_weight: int) -> dict[str, int]:
    weights = {stable: 100 - canary_weight, canary: canary_weight}
    return {v: w for v, w in weights.items() if w}


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
