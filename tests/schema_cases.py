"""Schemathesis over the agent's API, shared by the tests that run it (an agent, and a
controller): the token on every case, what JSON Schema cannot say laid over the generated
cases, and the statuses each operation got, so a test can show the cases got past the token."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from agent.api.context import MAX_POINTS
from agent.schemas.common import EARLIEST, LATEST, as_utc

MAX_STEP = 86400  # the step's maximum in the schema
# Random locally (to find what is new); the same cases in CI (a red CI is a bug, not a dice).
SETTINGS = settings(
    max_examples=int(os.environ.get("SCHEMA_EXAMPLES", "25")),
    derandomize=bool(os.environ.get("CI")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def load(app: Any, token: str) -> Any:
    auth = {"Authorization": f"Bearer {token}"}
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth)
    # Every case's headers (not only the schema's request); a case that tests a missing
    # token still drops it.
    loaded.config.update(headers=auth)
    return loaded


def call_and_validate(case: Any, statuses: dict[str, set[int]], **kwargs: Any) -> None:
    case.query = map_query(case.query)
    case.body = map_body(case.operation.path, case.body)
    response = case.call_and_validate(**kwargs)
    statuses.setdefault(case.operation.label, set()).add(response.status_code)


def past_the_token(statuses: dict[str, set[int]]) -> list[str]:
    """The operations whose every case was refused at the token (should be none)."""
    return sorted(op for op, codes in statuses.items() if not codes - {401, 403})


# What JSON Schema cannot say, each in its parameter's or field's description, is laid over
# every generated case (hooks do not reach schemathesis' coverage phase): weights add up to
# 100, rollout steps rise to 100, times (`since`, `until`, `at`, a feedback's `ts`) lie in
# 1970..2200 with `since` before `until`, and a window is at most MAX_POINTS steps. Only
# well-typed values are touched, so a negative case stays negative.
def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        return None


def map_query(query: Any) -> Any:
    if not isinstance(query, dict):
        return query
    now = datetime.now(UTC)
    at = _time(query.get("at"))
    if at is not None and not EARLIEST <= at < LATEST:
        query["at"] = now.isoformat()
    times = {k: _time(query.get(k)) for k in ("since", "until")}
    for key, t in times.items():
        if t is not None and not EARLIEST <= t < LATEST:
            times[key] = now - timedelta(hours=1) if key == "since" else now
            query[key] = times[key].isoformat()
    since, until = times["since"], times["until"]
    end = until or now
    if since is not None and since >= end:
        since = end - timedelta(hours=1)
        query["since"] = since.isoformat()
    step = query.get("step")
    if isinstance(step, str) and step.isdigit():  # the coverage phase writes them out
        step = int(step)
    if isinstance(step, int) and not isinstance(step, bool) and 1 <= step <= MAX_STEP:
        if since is not None and (end - since).total_seconds() > MAX_POINTS * MAX_STEP:
            since = end - timedelta(days=1)
            query["since"] = since.isoformat()
        span = (end - (since or end - timedelta(seconds=600))).total_seconds()
        query["step"] = max(step, math.ceil(span / MAX_POINTS))
    return query


def _ts_in_range(record: Any) -> None:
    t = _time(record.get("ts")) if isinstance(record, dict) else None
    if t is not None and not EARLIEST <= t < LATEST:
        record["ts"] = datetime.now(UTC).isoformat()


def map_body(path: str, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    if path == "/v1/feedback":
        _ts_in_range(body)
        for record in body.get("records") or [] if isinstance(body.get("records"), list) else []:
            _ts_in_range(record)
    weights = body.get("weights")
    if (
        path.endswith("/traffic")
        and isinstance(weights, dict)
        and weights
        and all(
            isinstance(w, int | float) and not isinstance(w, bool) and w == int(w) and 0 <= w <= 100
            for w in weights.values()
        )
    ):
        first = next(iter(weights))
        rest = sum(w for k, w in weights.items() if k != first)
        if rest > 100:
            weights.update(dict.fromkeys(weights, 0))
            rest = 0
        weights[first] = 100 - int(rest)
    steps = body.get("steps")
    if (
        path == "/v1/rollouts"
        and isinstance(steps, list)
        and steps
        and all(
            isinstance(w, int | float) and not isinstance(w, bool) and w == int(w) and 1 <= w <= 100
            for w in steps
        )
    ):
        body["steps"] = sorted({int(w) for w in steps} | {100})
    return body


PYDANTIC_ARGUMENTS = {"ge", "gt", "le", "lt", "min_length", "max_length", "multiple_of"}


def misplaced_bounds(openapi: dict[str, Any]) -> list[str]:
    """A constraint pydantic could not place (one beside a validator) lands in the schema
    under its Python name (`ge`), which no client reads."""
    misplaced: list[str] = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            misplaced.extend(f"{where}.{k}" for k in node if k in PYDANTIC_ARGUMENTS)
            for key, child in node.items():
                walk(child, f"{where}.{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{where}[{i}]")

    walk(openapi, "")
    return misplaced
