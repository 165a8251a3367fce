"""What each model action may do, as pure functions: the model's state and the request in, a
typed plan (the new state, what must be RUNNING first, what to wait for) or a refusal out.
No I/O here; agent/controller.py checks Serve, applies the plan and audits it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ValidationError

from agent.errors import Conflict, Invalid
from serve.model_config import BlessingRule
from serve.names import app_name
from serve.routing_table import RoutingTable, TrafficSplit

MAX_PREVIOUS_STABLE = 20


class AnswerCheck(BaseModel):
    """Whether a deployed version answers as it did at registration (serve/manifest.py
    ExpectedAnswers): ok True, False (a mismatch: no traffic), or None (not checked)."""

    ok: bool | None
    message: str
    at: datetime


class ModelState(BaseModel):
    """What the controller keeps per model (in DuckDB): the versions deployed, the routing
    table in force, the stable version and the stables before it (for rollback), and each
    version's answer check."""

    model: str
    versions: list[str]
    table: RoutingTable
    stable: str
    previous_stable: list[str] = []
    checks: dict[str, AnswerCheck] = {}


def refuse_mismatched(state: ModelState, versions: set[str]) -> None:
    """Production must match development: no traffic, live or shadow, to a version that
    answered differently here than at registration."""
    for version in sorted(versions):
        check = state.checks.get(version)
        if check is not None and check.ok is False:
            raise Conflict(
                f"{version} of {state.model} does not answer as it did at registration"
                f" ({check.message}); no traffic until it does: fix the runtime or the"
                " artifact, then deploy it again to check again"
            )


@dataclass(frozen=True)
class Plan:
    """The new state (None: nothing changes), the message for the operator, the versions
    that must be RUNNING before the change applies, and the apps to wait for after it."""

    state: ModelState | None
    message: str
    require_running: frozenset[str] = frozenset()
    wait_for: tuple[str, ...] = ()


@dataclass(frozen=True)
class Blessing:
    """The offline gate: a candidate's metrics against stable's, metric by metric."""

    rules: Mapping[str, BlessingRule]
    candidate: Mapping[str, float]
    stable: Mapping[str, float]
    stable_version: str


def next_table(
    state: ModelState, split: TrafficSplit, sticky_header: str | None, route_version: int
) -> RoutingTable:
    """The table that replaces the one in force, numbered `route_version`."""
    try:
        return RoutingTable(
            route_version=route_version,
            weights=dict(split.weights),
            shadow=split.shadow,
            fallback=split.fallback,
            sticky_header=sticky_header or state.table.sticky_header,
        )
    except ValidationError as exc:
        raise Invalid(first_error(exc)) from exc


def check_blessing(model: str, version: str, blessing: Blessing) -> None:
    """Refuse a candidate whose offline metrics are worse than stable's beyond tolerance, or
    that lacks a metric the model's blessing names (so does a stable without it: nothing to
    compare with). Skipping a missing metric let a version registered without metrics pass
    every gate."""
    failures = []
    for metric, rule in sorted(blessing.rules.items()):
        if metric not in blessing.candidate:
            failures.append(f"{version} has no {metric} in its manifest")
            continue
        if metric not in blessing.stable:
            failures.append(f"stable {blessing.stable_version} has no {metric} to compare with")
            continue
        base, mine = blessing.stable[metric], blessing.candidate[metric]
        worse = base - mine if rule.higher_is_better else mine - base
        if worse > rule.tolerance:
            failures.append(
                f"{metric} {mine:.4g} vs stable {blessing.stable_version} {base:.4g}"
                f" (worse by {worse:.4g}, tolerance {rule.tolerance:g})"
            )
    if failures:
        raise Conflict(
            f"{model}/{version} is not blessed: " + "; ".join(failures) + ". Pass force to"
            " deploy anyway."
        )


def deploy(state: ModelState, version: str, blessing: Blessing | None) -> Plan:
    """`blessing` None: forced, the offline gate is skipped."""
    if version in state.versions:
        return Plan(None, f"{state.model}/{version} is already deployed")
    if blessing is not None:
        check_blessing(state.model, version, blessing)
    new = state.model_copy(update={"versions": [*state.versions, version]})
    return Plan(
        new,
        f"deployed {state.model}/{version} (no traffic yet)"
        + ("; forced past the offline gate" if blessing is None else ""),
        wait_for=(app_name(state.model, version),),
    )


def unchanged_since(state: ModelState, route_version: int | None) -> None:
    """Refuse a change made on the strength of a table that is no longer in force (a
    rollout's step while an operator moved traffic: the operator wins)."""
    if route_version is not None and state.table.route_version != route_version:
        raise Conflict(
            f"{state.model}'s traffic changed (route #{route_version} is now"
            f" #{state.table.route_version}); not applied"
        )


def set_traffic(
    state: ModelState, split: TrafficSplit, sticky_header: str | None, route_version: int
) -> Plan:
    table = next_table(state, split, sticky_header, route_version)
    unknown = sorted(table.versions() - set(state.versions))
    if unknown:
        raise Conflict(f"versions {unknown} of {state.model} are not deployed")
    served = {v for v, w in table.weights.items() if w > 0}
    refuse_mismatched(state, served | ({table.shadow.version} if table.shadow else set()))
    return Plan(
        state.model_copy(update={"table": table}),
        "traffic updated",
        require_running=frozenset(table.versions()),
    )


def promote(state: ModelState, version: str, route_version: int) -> Plan:
    if version not in state.versions:
        raise Conflict(f"version {version} of {state.model} is not deployed")
    refuse_mismatched(state, {version})
    fallback = state.stable if state.stable != version else None
    table = next_table(
        state, TrafficSplit(weights={version: 100}, fallback=fallback), None, route_version
    )
    history = state.previous_stable
    if state.stable != version:
        history = [*history, state.stable][-MAX_PREVIOUS_STABLE:]
    new = state.model_copy(update={"table": table, "stable": version, "previous_stable": history})
    return Plan(
        new,
        f"{version} is stable with 100% of traffic (was {state.stable})",
        require_running=frozenset({version}),
    )


def rollback(state: ModelState, to: str | None, route_version: int) -> Plan:
    """Back to `to`, or to the last previous stable version."""
    history = list(state.previous_stable)
    target = to
    if target is None:
        if not history:
            raise Conflict(f"{state.model} has no previous stable version to roll back to")
        target = history.pop()
    elif target in history:
        history = history[: history.index(target)]
    if target not in state.versions:
        raise Conflict(f"version {target} of {state.model} is not deployed")
    table = next_table(state, TrafficSplit(weights={target: 100}), None, route_version)
    new = state.model_copy(update={"table": table, "stable": target, "previous_stable": history})
    return Plan(
        new,
        f"rolled back {state.model} to {target} (100% of traffic)",
        require_running=frozenset({target}),
    )


def retire(state: ModelState, version: str) -> Plan:
    if version not in state.versions:
        raise Conflict(f"version {version} of {state.model} is not deployed")
    if version in state.table.versions() or version == state.stable:
        raise Conflict(
            f"{version} still has traffic (weight, shadow, fallback or stable); move it first"
        )
    new = state.model_copy(
        update={
            "versions": [v for v in state.versions if v != version],
            "checks": {v: c for v, c in state.checks.items() if v != version},
        }
    )
    return Plan(new, f"retired {state.model}/{version}")


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err['msg']}" if where else err["msg"]
