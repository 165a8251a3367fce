"""Production must match development: send a deployed version the reference rows it
answered at registration (serve/manifest.py ExpectedAnswers) straight to its own route, not
through the router (no user traffic, nothing in the request log), and compare the answers
as replay does: labels identical, probabilities within the manifest's tolerance."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from agent.controller_rules import AnswerCheck
from agent.replay import compare_outputs
from serve.manifest import ExpectedAnswers

TIMEOUT_S = 30.0


async def check_answers(
    url: str, expected: ExpectedAnswers | None, transport: httpx.AsyncBaseTransport | None = None
) -> AnswerCheck:
    now = datetime.now(UTC)
    if expected is None:
        return AnswerCheck(
            ok=None, message="registered without expected answers: not checked", at=now
        )
    rows = len(expected.instances)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S, transport=transport) as http:
            response = await http.post(url, json={"instances": expected.instances})
    except httpx.HTTPError as exc:
        return AnswerCheck(ok=None, message=f"not checked: {url} unreachable ({exc!r})", at=now)
    if response.status_code != 200:
        reason = f"it answered {response.status_code} to {rows} reference rows"
        return AnswerCheck(ok=False, message=f"{reason}: {response.text[:200]}", at=now)
    c = compare_outputs(
        json.dumps({"predictions": expected.predictions}), response.text, expected.tolerance
    )
    if c.outcome in ("identical", "within_tolerance"):
        worst = f", probabilities within {c.max_abs_diff:.1e}" if c.max_abs_diff else ""
        return AnswerCheck(
            ok=True, message=f"{rows} reference rows answered as at registration{worst}", at=now
        )
    if c.outcome == "label_changed":
        before, after = c.original_labels or [], c.replay_labels or []
        differ = sum(a != b for a, b in zip(before, after, strict=False))
        message = f"{differ} of {rows} labels differ from registration's ({expected.runtime})"
    elif c.outcome == "output_changed":
        message = (
            f"probabilities differ by up to {c.max_abs_diff:.2g} from registration's"
            f" (tolerance {expected.tolerance:g}; registered on {expected.runtime})"
        )
    else:
        message = f"its answer has no predictions to compare: {c.error}"
    return AnswerCheck(ok=False, message=message, at=now)
