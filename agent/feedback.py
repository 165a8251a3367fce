"""Ground truth, on the controller: each record is joined to the logged primary call it
answers (asked of the whole fleet's request log, by request id), and stored with the
version that answered, its prediction, the truth and whether they agree. Accuracy (or a
regressor's mean absolute error) per version and over time, with the share of calls that have
their truth and how late it came, read the stored joins: fleet-wide by construction. Before
the labels come, an estimate: confidence-based performance estimation (CBPE, as NannyML's),
each answered call's top-class probability read through the version's calibration (how
often it was right at that confidence on held-out rows, stored at registration).

A request id the log does not have (yet: the prediction may still be in a spool, or its
host down) is counted and named in the answer, never an error for the batch; sending it
again later joins it. A second truth for a request replaces the first."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from agent.errors import NotFound
from agent.request_log import Original, RequestLog
from agent.schemas.coverage import Coverage
from agent.schemas.feedback import (
    AccuracyPoint,
    AccuracyReport,
    FeedbackBody,
    FeedbackRecord,
    FeedbackResult,
    LabelTruth,
    VersionAccuracy,
    records_of,
)
from agent.store import Store, naive_utc, utcnow
from serve.manifest import Calibration
from serve.model_store import ModelStore, StoreError

LOOKUP_CHUNK = 1000  # request ids per question to the fleet (its bound)
SHOWN_UNKNOWN = 20
Z95 = 1.959964


def first_prediction(output: str | None) -> Any:
    """The first instance's label as the version answered it (None: no prediction)."""
    try:
        doc = json.loads(output) if output else None
    except ValueError:
        return None
    preds = doc.get("predictions") if isinstance(doc, dict) else None
    if not isinstance(preds, list) or not preds or not isinstance(preds[0], dict):
        return None
    return preds[0].get("label")


def _joined(
    model: str, rec: FeedbackRecord, call: Original, now: datetime
) -> tuple[list[Any] | None, str | None]:
    """The row to store, or why the record is refused."""
    predicted = first_prediction(call.output)
    if predicted is None:
        return None, f"{rec.request_id}: the logged call has no prediction to compare"
    correct, error, truth, value = None, None, None, None
    if isinstance(rec, LabelTruth):
        correct, truth = str(predicted) == str(rec.label), str(rec.label)
    else:
        if isinstance(predicted, bool) or not isinstance(predicted, int | float):
            return None, f"{rec.request_id}: a value for a prediction that is not a number"
        value = rec.value
        error = abs(float(predicted) - value)
    return [
        model,
        rec.request_id,
        call.version,
        call.ts,
        json.dumps(predicted),
        truth,
        value,
        correct,
        error,
        rec.ts or now,
        now,
    ], None


def _point(
    since: datetime,
    until: datetime,
    buckets: int,
    bucket: int,
    labelled: dict[str, Any] | None,
    estimated: float | None,
) -> AccuracyPoint:
    classified = labelled["classified"] if labelled else 0
    return AccuracyPoint(
        start=since + (until - since) * bucket / buckets,
        labelled=labelled["labelled"] if labelled else 0,
        accuracy=labelled["right"] / classified if labelled and classified else None,
        mae=labelled["mae"] if labelled else None,
        estimated=estimated,
    )


def wilson(successes: int, trials: int) -> tuple[float, float]:
    p = successes / trials
    denom = 1 + Z95**2 / trials
    centre = (p + Z95**2 / (2 * trials)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / trials + Z95**2 / (4 * trials**2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class FeedbackBook:
    def __init__(
        self,
        store: Store,
        requests: RequestLog,
        models: set[str],
        model_store: ModelStore | None = None,
    ) -> None:
        self.store = store
        self.requests = requests
        self.models = models
        self.model_store = model_store  # the versions' calibrations, for the estimate

    def _known(self, model: str) -> None:
        if model not in self.models:
            raise NotFound(f"no model {model!r} on this controller ({sorted(self.models)})")

    def add(self, body: FeedbackBody) -> FeedbackResult:
        self._known(body.model)
        latest: dict[str, FeedbackRecord] = {}
        records = records_of(body)
        for rec in records:  # the same request twice in a batch: the later one
            latest[rec.request_id] = rec
        ids = list(latest)
        calls: dict[str, Original] = {}
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[start : start + LOOKUP_CHUNK]
            for call in self.requests.originals(body.model, chunk, Coverage()):
                calls.setdefault(call.request_id, call)
        now = utcnow()
        rows: list[list[Any]] = []
        unknown: list[str] = []
        rejected: list[str] = []
        for rid, rec in latest.items():
            found = calls.get(rid)
            if found is None:
                unknown.append(rid)
                continue
            row, reason = _joined(body.model, rec, found, now)
            if row is None:
                rejected.append(reason or rid)
            else:
                rows.append(row)
        replaced = 0
        if rows:
            with self.store.transaction() as cur:
                had = cur.execute(
                    "SELECT count(*) FROM feedback"
                    " WHERE model = ? AND list_contains(?, request_id)",
                    [body.model, [r[1] for r in rows]],
                ).fetchall()
                replaced = int(had[0][0])
                cur.executemany(
                    "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
        return FeedbackResult(
            received=len(records),
            joined=len(rows),
            replaced=replaced,
            unknown=len(unknown),
            unknown_ids=unknown[:SHOWN_UNKNOWN],
            rejected=rejected[:SHOWN_UNKNOWN],
        )

    def correctness(
        self, model: str, version: str, since: datetime, until: datetime
    ) -> tuple[int, int]:
        """Labelled answers of a version's predictions made in the window, and the wrong ones."""
        rows = self.store.query(
            "SELECT count(correct) AS labelled, count(*) FILTER (WHERE NOT correct) AS wrong"
            " FROM feedback WHERE model = ? AND version = ? AND ts >= ? AND ts < ?",
            [model, version, naive_utc(since), naive_utc(until)],
        )
        return int(rows[0]["labelled"]), int(rows[0]["wrong"])

    def _calibration(self, model: str, version: str) -> Calibration | None:
        if self.model_store is None:
            return None
        try:
            return self.model_store.manifest(model, version).calibration
        except StoreError:
            return None

    def estimate(
        self, model: str, version: str, since: datetime, until: datetime, buckets: int
    ) -> tuple[float | None, int, dict[int, float]]:
        """CBPE: each answered call's confidence read through the version's calibration
        (how often it was right at that confidence on held-out data), averaged: overall, its
        number of calls, and per time bucket."""
        cal = self._calibration(model, version)
        if cal is None:
            return None, 0, {}
        parts = self.requests.confidence_counts(
            model, version, since, until, buckets, cal.edges, Coverage()
        )
        sums: dict[int, list[float]] = {}
        for bucket, b, n in parts:
            total = sums.setdefault(bucket, [0.0, 0.0])
            total[0] += n * cal.accuracy[min(b, len(cal.accuracy) - 1)]
            total[1] += n
        calls = int(sum(t[1] for t in sums.values()))
        if not calls:
            return None, 0, {}
        overall = sum(t[0] for t in sums.values()) / calls
        return overall, calls, {b: t[0] / t[1] for b, t in sums.items() if t[1]}

    def accuracy(
        self,
        model: str,
        since: datetime,
        until: datetime,
        buckets: int,
        version: str | None = None,
        with_estimate: bool = True,
    ) -> AccuracyReport:
        """Of the predictions made in [since, until): per version and in `buckets` slices."""
        self._known(model)
        since, until = naive_utc(since), naive_utc(until)
        width = max((until - since).total_seconds() / buckets, 1e-6)
        rows = self.store.query(
            """
            SELECT version, least(floor((epoch(ts) - epoch($since::TIMESTAMP)) / $width),
                                  $buckets - 1)::INTEGER AS bucket,
                   count(*) AS labelled, count(*) FILTER (WHERE correct) AS right,
                   count(correct) AS classified, avg(abs_error) AS mae,
                   list(epoch(truth_at) - epoch(ts)) AS delays
            FROM feedback
            WHERE model = $model AND ts >= $since AND ts < $until
              AND ($version::VARCHAR IS NULL OR version = $version)
            GROUP BY ALL ORDER BY version, bucket
            """,
            {
                "model": model,
                "since": since,
                "until": until,
                "width": width,
                "buckets": buckets,
                "version": version,
            },
        )
        calls: dict[str, int] = {}
        coverage = Coverage()
        # The calls of the whole minutes around the window (summaries are per minute): the
        # labelled share is then never over 1.
        first_minute = since.replace(second=0, microsecond=0)
        for host in self.requests.traffic(model, first_minute, until, coverage):
            for v, n in host.calls.items():
                calls[v] = calls.get(v, 0) + n
        known_calls = not coverage.missing
        by_version: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_version.setdefault(r["version"], []).append(r)
        served = {v for v, n in calls.items() if n and (version is None or v == version)}
        versions = []
        for v in sorted(set(by_version) | served):
            parts = by_version.get(v, [])
            # The estimate parses every call's answer: asked for, not on every scrape.
            estimated, estimated_calls, estimated_at = (
                self.estimate(model, v, since, until, buckets) if with_estimate else (None, 0, {})
            )
            labelled = sum(p["labelled"] for p in parts)
            right = sum(p["right"] for p in parts)
            classified = sum(p["classified"] for p in parts)
            errors = [(p["mae"], p["labelled"]) for p in parts if p["mae"] is not None]
            delays = sorted(d for p in parts for d in p["delays"] if d is not None)
            n_calls = calls.get(v) if known_calls else None
            low, high = wilson(right, classified) if classified else (None, None)
            measured = right / classified if classified else None
            by_bucket = {p["bucket"]: p for p in parts}
            versions.append(
                VersionAccuracy(
                    version=v,
                    labelled=labelled,
                    calls=n_calls,
                    coverage=labelled / n_calls if n_calls else None,
                    accuracy=measured,
                    low=low,
                    high=high,
                    mae=sum(m * n for m, n in errors) / sum(n for _, n in errors)
                    if errors
                    else None,
                    median_delay_s=delays[len(delays) // 2] if delays else None,
                    estimated=estimated,
                    estimated_calls=estimated_calls,
                    estimate_error=None
                    if estimated is None or measured is None
                    else estimated - measured,
                    points=[
                        _point(since, until, buckets, b, by_bucket.get(b), estimated_at.get(b))
                        for b in sorted(set(by_bucket) | set(estimated_at))
                    ],
                )
            )
        return AccuracyReport(model=model, since=since, until=until, versions=versions)
