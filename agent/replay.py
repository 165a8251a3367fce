"""Replay logged requests against a version, and say how well the predictions reproduce.

Each logged primary request's input goes back through the model's router with the replay
token and a forced version (the router serves exactly that version and logs the call with
role `replay`, paired to the original's request id). The answer is compared with what the
original call returned:

- identical: same labels, probabilities equal to the last bit;
- within_tolerance: same labels, probabilities within `tolerance` (a prediction's low bits
  depend on what @serve.batch happened to batch it with: up to ~3e-7 measured on CPU);
- output_changed: same labels, probabilities further apart than that;
- label_changed: a different label for at least one instance;
- failed: the replay (or the original) has no predictions to compare.

Jobs run in the controller's event loop, a few calls at a time so live traffic keeps its
share of the replicas, and their reports are kept in the agent's DuckDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from agent.errors import NotFound
from agent.request_log import Original, RequestLog
from agent.schemas.replay import OUTCOMES, Outcome, ReplayItem, ReplayReport, ReplayRequest
from agent.store import Store, utcnow
from serve.names import REPLAY_OF_HEADER, REPLAY_TOKEN_HEADER, REPLAY_VERSION_HEADER

log = logging.getLogger("trackside.replay")

CONCURRENCY = 4


@dataclass(frozen=True)
class Comparison:
    outcome: Outcome
    max_abs_diff: float | None
    original_labels: list[Any] | None
    replay_labels: list[Any] | None
    error: str | None = None


def _predictions(text: str | None) -> list[dict[str, Any]] | None:
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        return None
    preds = doc.get("predictions") if isinstance(doc, dict) else None
    return preds if isinstance(preds, list) else None


def compare_outputs(original: str | None, replayed: str | None, tolerance: float) -> Comparison:
    """How a replayed answer compares with the logged one (both the version's JSON body)."""
    before, after = _predictions(original), _predictions(replayed)
    if before is None:
        return Comparison("failed", None, None, None, "the logged call has no predictions")
    labels_before = [p.get("label") for p in before]
    if after is None:
        return Comparison("failed", None, labels_before, None, "the replay has no predictions")
    labels_after = [p.get("label") for p in after]
    diffs = [
        abs(float(a) - float(b))
        for p, q in zip(before, after, strict=False)
        for a, b in zip(p.get("probabilities") or [], q.get("probabilities") or [], strict=False)
    ]
    worst = max(diffs, default=None)
    if labels_before != labels_after:
        return Comparison("label_changed", worst, labels_before, labels_after)
    if worst is None or worst == 0.0:
        return Comparison("identical", worst, labels_before, labels_after)
    outcome: Outcome = "within_tolerance" if worst <= tolerance else "output_changed"
    return Comparison(outcome, worst, labels_before, labels_after)


class Replayer:
    """Starts replay jobs and keeps their reports (in memory while running, then DuckDB)."""

    def __init__(self, store: Store, requests: RequestLog, serve_url: str, token: str) -> None:
        self.store = store
        self.requests = requests
        self.serve_url = serve_url.rstrip("/")
        self.token = token
        self.running: dict[str, ReplayReport] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        for doc in self._stored():  # a job cut short by a restart says so
            if doc.state == "running":
                doc.state, doc.error = "interrupted", "the agent stopped during the replay"
                self._save(doc)

    def _stored(self) -> list[ReplayReport]:
        rows = self.store.query("SELECT value FROM kv WHERE key LIKE 'replay:%'")
        return [ReplayReport.model_validate_json(r["value"]) for r in rows]

    def _save(self, report: ReplayReport) -> None:
        self.store.put_state(f"replay:{report.id}", report.model_dump(mode="json"))

    def reports(self) -> list[ReplayReport]:
        done = {r.id: r for r in self._stored()}
        done.update(self.running)
        return sorted(done.values(), key=lambda r: r.started_at, reverse=True)

    def report(self, job_id: str) -> ReplayReport:
        if job_id in self.running:
            return self.running[job_id]
        doc = self.store.get_state(f"replay:{job_id}")
        if doc is None:
            raise NotFound(f"no replay {job_id!r}")
        return ReplayReport.model_validate(doc)

    def start(self, body: ReplayRequest, user: str) -> ReplayReport:
        originals = self._originals(body)
        report = ReplayReport(
            id=uuid.uuid4().hex[:12],
            model=body.model,
            version=body.version,
            who=user,
            state="running",
            started_at=utcnow(),
            total=len(originals),
            tolerance=body.tolerance,
            counts=dict.fromkeys(OUTCOMES, 0),
        )
        self.running[report.id] = report
        self._save(report)
        task = asyncio.get_running_loop().create_task(self._run(report, originals))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return report

    def _originals(self, body: ReplayRequest) -> list[Original]:
        rows = self.requests.originals(body.model, body.request_ids)
        found = {r.request_id for r in rows}
        missing = [i for i in body.request_ids if i not in found]
        if missing:
            raise NotFound(
                f"{len(missing)} request(s) of {body.model} are not in the request log"
                f" (e.g. {', '.join(missing[:3])}); only primary calls can be replayed"
            )
        order = {rid: i for i, rid in enumerate(body.request_ids)}
        return sorted(rows, key=lambda r: order[r.request_id])

    async def _run(self, report: ReplayReport, originals: list[Original]) -> None:
        sem = asyncio.Semaphore(CONCURRENCY)
        url = f"{self.serve_url}/models/{report.model}/predict"
        try:
            async with httpx.AsyncClient(timeout=30) as http:

                async def one(original: Original) -> None:
                    async with sem:
                        item = await self._replay_one(http, url, report, original)
                    report.items.append(item)
                    report.counts[item.outcome] += 1
                    report.done += 1
                    if item.max_abs_diff is not None:
                        report.max_abs_diff = max(report.max_abs_diff or 0.0, item.max_abs_diff)
                    report.same_artifact += item.replay_sha256 == item.original_sha256

                await asyncio.gather(*(one(o) for o in originals))
            report.state = "done"
        except Exception as exc:  # reported in the job, never lost in a task
            log.exception("replay %s failed", report.id)
            report.state, report.error = "failed", repr(exc)
        finally:
            report.finished_at = utcnow()
            report.items.sort(key=lambda i: (i.outcome == "identical", i.request_id))
            self._save(report)
            self.running.pop(report.id, None)

    async def _replay_one(
        self, http: httpx.AsyncClient, url: str, report: ReplayReport, original: Original
    ) -> ReplayItem:
        headers = {
            "content-type": "application/json",
            REPLAY_TOKEN_HEADER: self.token,
            REPLAY_VERSION_HEADER: report.version,
            REPLAY_OF_HEADER: original.request_id,
            "x-request-id": f"replay-{report.id}-{original.request_id}"[:128],
        }
        base = {
            "request_id": original.request_id,
            "original_version": original.version,
            "original_sha256": original.sha256,
        }
        try:
            response = await http.post(url, content=original.input or "", headers=headers)
        except httpx.HTTPError as exc:
            return ReplayItem(**base, outcome="failed", error=f"router unreachable: {exc!r}")
        replayed = response.text
        sha = None
        with contextlib.suppress(ValueError, AttributeError):  # not the version's JSON
            sha = json.loads(replayed).get("sha256")
        if response.status_code != 200:
            return ReplayItem(
                **base,
                replay_sha256=sha,
                outcome="failed",
                error=f"{response.status_code}: {replayed[:300]}",
            )
        served_by = response.headers.get("x-model-version")
        if served_by != report.version:  # the token was refused: the router chose itself
            return ReplayItem(
                **base,
                replay_sha256=sha,
                outcome="failed",
                error=f"served by {served_by}, not {report.version}: is the replay token right?",
            )
        c = compare_outputs(original.output, replayed, report.tolerance)
        return ReplayItem(
            **base,
            replay_sha256=sha,
            outcome=c.outcome,
            max_abs_diff=c.max_abs_diff,
            original_labels=c.original_labels,
            replay_labels=c.replay_labels,
            error=c.error,
        )

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
