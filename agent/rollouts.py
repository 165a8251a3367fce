"""Progressive rollouts on the controller: the state machine (agent/rollout_machine.py) kept
in DuckDB, a tick that judges every step that is due, and the traffic changes applied
through the controller (so they are audited and refused like an operator's would be).

A step sends `canary_weight`% to the canary and copies `shadow_fraction` of stable's calls
to the canary (until the last step; then of the canary's to stable): those copies are
evidence no user sees, and pairs of answers to compare. The judge sees every canary call
(served or copied) and every stable call since the rollout began (agent/rollout_judge.py).

Races: the tick judges outside any lock, then takes the rollout's lock (the one pause, resume
and abort take), reads the rollout again and drops its judgement if anything changed; a
step's traffic change is applied only if the table it was judged on is still in force, so
an operator's abort, pause or traffic change made during a judgement always wins. Starting
saves the rollout before traffic moves. A rollout survives an agent restart: its state,
looks and next judgement time are stored, and the tick picks it up again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from agent.controller import Controller
from agent.errors import ApiError, NotFound
from agent.feedback import FeedbackBook
from agent.request_log import DriftSource, RequestLog
from agent.rollout_judge import judge_rollout
from agent.rollout_machine import (
    Action,
    Promote,
    RollBack,
    RolloutError,
    SetWeight,
    abort,
    due,
    judged,
    pause,
    resume,
    start,
)
from agent.schemas.rollouts import FINISHED, Judgement, Rollout
from agent.store import Store
from serve.model_config import RolloutPolicy
from serve.routing_table import ShadowTarget, TrafficSplit

log = logging.getLogger("trackside.rollouts")


def now_utc() -> datetime:
    return datetime.now(UTC)


class Rollouts:
    def __init__(
        self,
        store: Store,
        controller: Controller,
        requests: RequestLog,
        feedback: FeedbackBook | None = None,
    ) -> None:
        self.store = store
        self.ctl = controller
        self.requests = requests
        self.feedback = feedback
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())

    # -- state ------------------------------------------------------------------------------
    def _key(self, model: str) -> str:
        return f"rollout:{model}"

    def _save(self, r: Rollout) -> None:
        self.store.put_state(self._key(r.model), r.model_dump(mode="json"))

    def get(self, model: str) -> Rollout:
        doc = self.store.get_state(self._key(model))
        if doc is None:
            raise NotFound(f"{model} has no rollout")
        return Rollout.model_validate(doc)

    def all(self) -> list[Rollout]:
        rows = self.store.query("SELECT value FROM kv WHERE key LIKE 'rollout:%' ORDER BY key")
        return [Rollout.model_validate_json(r["value"]) for r in rows]

    # -- operator verbs ---------------------------------------------------------------------
    async def start(self, model: str, canary: str, overrides: dict[str, Any], who: str) -> Rollout:
        async with self._lock(model):
            state = self.ctl.state(model)
            if canary == state.stable:
                raise RolloutError(f"{canary} is already the stable version of {model}")
            if canary not in state.versions:
                raise RolloutError(
                    f"{canary} of {model} is not deployed; deploy it first ({state.versions})"
                )
            try:
                current = self.get(model)
            except NotFound:
                current = None
            if current is not None and current.state not in FINISHED:
                raise RolloutError(
                    f"{model} already has a {current.state} rollout of {current.canary};"
                    " abort it first"
                )
            base = self.ctl.models[model].rollout.model_dump()
            policy = RolloutPolicy.model_validate(_merge(base, overrides))
            r, action = start(model, canary, state.stable, policy, now_utc(), who)
            # Saved before traffic moves: after a crash the rollout exists and is judged
            # (or paused, its table not in force), never a canary with no rollout.
            self._save(r)
            try:
                await self._apply(r, action, state.table.route_version)
            except ApiError as exc:
                r = r.model_copy(
                    update={"state": "aborted", "reason": f"could not start: {exc.message}"}
                )
                self._save(r)
                self._audit(r, "rollout_start", "refused")
                raise
            self._audit(r, "rollout_start", "ok")
            return r

    async def pause(self, model: str, who: str) -> Rollout:
        async with self._lock(model):
            r, _ = pause(self.get(model), now_utc(), who)
            self._save(r)
            self._audit(r, "rollout_pause", "ok", who)
            return r

    async def resume(self, model: str, who: str) -> Rollout:
        async with self._lock(model):
            r, action = resume(self.get(model), now_utc())
            await self._apply(r, action)
            self._save(r)
            self._audit(r, "rollout_resume", "ok", who)
            return r

    async def abort(self, model: str, who: str) -> Rollout:
        async with self._lock(model):
            r, action = abort(self.get(model), now_utc(), who)
            await self._apply(r, action)
            self._save(r)
            self._audit(r, "rollout_abort", "ok", who)
            return r

    # -- the tick ---------------------------------------------------------------------------
    async def tick(self) -> None:
        for r in self.all():
            now = now_utc()
            if not due(r, now):
                continue
            judgement = await asyncio.to_thread(
                judge_rollout, self.requests, r, now, self._reference(r), self.feedback
            )
            await self._conclude(r, judgement, now)

    async def _conclude(self, judged_on: Rollout, judgement: Judgement, now: datetime) -> None:
        """Under the rollout's lock: act on a judgement only if nothing changed meanwhile."""
        async with self._lock(judged_on.model):
            r = self.get(judged_on.model)
            if r != judged_on:  # paused, aborted or resumed while it was judged: they win
                log.info("rollout of %s changed during a judgement; dropped it", r.model)
                return
            table = self.ctl.state(r.model).table
            moved = self._moved_by_hand(r, table.weights)
            if moved:
                r = r.model_copy(update={"state": "paused", "reason": moved, "updated_at": now})
                self._save(r)
                self._audit(r, "rollout_pause", "ok", "rollout")
                return
            nxt, action = judged(r, judgement.verdict, judgement.metrics, now)
            if isinstance(action, SetWeight):
                self._save(nxt)  # the next step first: a crash leaves it paused, not lost
            try:
                await self._apply(nxt, action, table.route_version)
            except ApiError as exc:  # e.g. an operator's action in flight: next tick
                log.warning("rollout of %s: %s; retrying", r.model, exc.message)
                self._save(r.model_copy(update={"judge_at": nxt.judge_at}))
                return
            self._save(nxt)
            self._audit(nxt, "rollout_judge", judgement.verdict, "rollout", judgement)

    def _moved_by_hand(self, r: Rollout, weights: dict[str, int]) -> str | None:
        expected = _weights(r.stable, r.canary, r.weight)
        if weights != expected:
            return (
                f"traffic was changed outside the rollout ({weights}, expected"
                f" {expected}); resume to put the step's weights back"
            )
        return None

    def _reference(self, r: Rollout) -> DriftSource | None:
        """The canary's reference sample, for the judge's drift metric (None: it has none)."""
        return self.ctl.drift_source(r.model, r.canary)

    # -- applying -----------------------------------------------------------------------------
    async def _apply(self, r: Rollout, action: Action, if_route_version: int | None = None) -> None:
        """A step's change applies only to the table it was decided on; a rollback always."""
        who = f"rollout ({r.who})"
        if isinstance(action, SetWeight):
            share = r.policy.shadow_fraction
            # Stable's calls copied to the canary; at 100% the canary's copied to stable.
            target = r.canary if action.canary_weight < 100 else r.stable
            split = TrafficSplit(
                weights=_weights(r.stable, r.canary, action.canary_weight),
                shadow=ShadowTarget(version=target, fraction=share) if share > 0 else None,
                fallback=r.stable,
            )
            await self.ctl.set_traffic(r.model, split, who, if_route_version=if_route_version)
        elif isinstance(action, Promote):
            await self.ctl.promote(r.model, action.version, who, if_route_version)
        elif isinstance(action, RollBack):
            await self.ctl.set_traffic(r.model, TrafficSplit(weights={action.to: 100}), who)

    def _audit(
        self,
        r: Rollout,
        action: str,
        result: str,
        who: str | None = None,
        judgement: Judgement | None = None,
    ) -> None:
        summary: dict[str, Any] = {
            "canary": r.canary,
            "stable": r.stable,
            "state": r.state,
            "step": r.step,
            "weight": r.weight,
            "looks": r.looks,
            "reason": r.reason,
        }
        if judgement is not None:  # the numbers behind it, metric by metric
            summary["judgement"] = judgement.model_dump(mode="json")
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
