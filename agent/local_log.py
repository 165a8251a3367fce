"""The request log in this agent's DuckDB file: the raw rows and the per-minute summaries.

Two layers: the parts (`*_part` methods: counts per fixed bin, per-call columns, labels), which
are also what this agent answers the controller over /v1/fleet, and the RequestLog methods,
which merge parts (here, just this host's) with agent/request_log.py's functions.
Windows of summaries are whole minutes (agent.summaries.minute_window).
"""

from __future__ import annotations

import contextlib
import json
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.errors import Conflict
from agent.host_facts import host_facts
from agent.replicas import local_replicas
from agent.request_log import (
    CALL_WINDOW_COLUMNS,
    FAILED,
    LABELS,
    MAX_DETAIL_ROWS,
    CallWindow,
    DriftSource,
    FeatureCounts,
    Original,
    PairCounts,
    RequestFilter,
    call_window_of,
    counts_on_bins,
    dense_features,
    label_counts_of,
    latency_points,
)
from agent.schemas.alerts import HostFacts
from agent.schemas.coverage import Coverage
from agent.schemas.fleet import HostCounts
from agent.schemas.host import LatencyPoint
from agent.schemas.models import ReplicaReport
from agent.schemas.requests import RequestRow
from agent.store import Store, naive_utc, utcnow
from agent.summaries import VersionBins, minute_window

# Columns of the log that no reader needs.
_INTERNAL = "sticky_key_hash, dropped_total, shadows_shed_total, ingested_at, call_id, pair_id"


def _bodies(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("input", "output"):
        with contextlib.suppress(ValueError, TypeError):  # else keep the text as it came
            row[key] = json.loads(row[key]) if row.get(key) else None
    return row


def _bucket_sql(buckets: int) -> str:
    return f"least(floor((epoch(minute) - epoch($since)) / $width), {buckets - 1})::INTEGER"


class LocalRequestLog:
    """The request log in this agent's DuckDB file."""

    def __init__(self, store: Store, host: str | None = None, spool: Path | None = None) -> None:
        self.store = store
        self.host = host or socket.gethostname()
        self.spool = spool  # where this host's replicas describe themselves

    def _answered(self, coverage: Coverage | None) -> None:
        if coverage is not None and self.host not in coverage.answered:
            coverage.answered.append(self.host)

    # -- raw rows ---------------------------------------------------------------------------
    def requests(self, where: RequestFilter, coverage: Coverage | None = None) -> list[RequestRow]:
        self._answered(coverage)
        since = naive_utc(where.since) if where.since else None
        until = naive_utc(where.until) if where.until else None
        rows = self.store.query(
            f"""
            SELECT * EXCLUDE (input, output, {_INTERNAL})
            FROM requests
            WHERE (?::VARCHAR IS NULL OR model = ?) AND (?::VARCHAR IS NULL OR version = ?)
              AND (?::VARCHAR IS NULL OR role = ?) AND (?::INTEGER IS NULL OR status = ?)
              AND (?::TIMESTAMP IS NULL OR ts >= ?) AND (?::TIMESTAMP IS NULL OR ts < ?)
            ORDER BY ts DESC LIMIT ?
            """,
            [
                *(where.model, where.model, where.version, where.version),
                *(where.role, where.role, where.status, where.status),
                *(since, since, until, until),
                where.limit,
            ],
        )
        return [RequestRow(**r) for r in rows]

    def request(self, request_id: str, coverage: Coverage | None = None) -> list[RequestRow]:
        """At most MAX_DETAIL_ROWS records (newest first): clients choose request ids, and
        one reused a thousand times must not make a thousand-row answer."""
        self._answered(coverage)
        rows = self.store.query(
            f"SELECT * EXCLUDE ({_INTERNAL}) FROM requests WHERE request_id = ?"
            " ORDER BY ts DESC, role LIMIT ?",
            [request_id, MAX_DETAIL_ROWS],
        )
        return [RequestRow(**_bodies(r)) for r in rows]

    def originals(
        self, model: str, request_ids: list[str], coverage: Coverage | None = None
    ) -> list[Original]:
        self._answered(coverage)
        rows = self.store.query(
            "SELECT request_id, version, sha256, input, output, ts FROM requests"
            " WHERE role = 'primary' AND model = ? AND list_contains(?, request_id)"
            " QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY ts) = 1",
            [model, request_ids],
        )
        return [Original(**r) for r in rows]

    def call_part(
        self, model: str, canary: str, stable: str, since: datetime, until: datetime
    ) -> dict[str, Any]:
        """One entry per call of the canary or stable: ts (µs), model_ms (the replica's
        latency_ms), canary, failed. The canary's include the copies of stable's calls it
        answered (role shadow): evidence that no user saw."""
        return self.store.query_arrays(
            f"""
            SELECT epoch_us(ts) AS ts_us, coalesce(latency_ms, 'NaN'::DOUBLE) AS model_ms,
                   (version = $canary OR fallback_from = $canary) AS canary,
                   {FAILED} AS failed
            FROM requests
            WHERE model = $model AND ts >= $since AND ts < $until
              AND ((role = 'primary' AND (version IN ($canary, $stable)
                                          OR fallback_from IN ($canary, $stable)))
                   OR (role = 'shadow' AND version = $canary))
            """,
            {
                "canary": canary,
                "stable": stable,
                "model": model,
                "since": naive_utc(since),
                "until": naive_utc(until),
            },
        )

    def calls(
        self,
        model: str,
        canary: str,
        stable: str,
        since: datetime,
        until: datetime,
        coverage: Coverage | None = None,
    ) -> CallWindow:
        self._answered(coverage)
        part = self.call_part(model, canary, stable, since, until)
        return call_window_of({k: part[k] for k in CALL_WINDOW_COLUMNS})

    def shadow_pairs(
        self,
        model: str,
        canary: str,
        stable: str,
        since: datetime,
        until: datetime,
        coverage: Coverage | None = None,
    ) -> PairCounts:
        """Calls of one version and their shadow copy to the other (either way), paired by the
        router's own call id (never by the request id a client chose)."""
        self._answered(coverage)
        row = self.store.query(
            f"""
            SELECT count(*) AS pairs,
                   count(*) FILTER (WHERE {LABELS.format(col="p.output")}
                                    IS DISTINCT FROM {LABELS.format(col="s.output")})
                       AS disagreements
            FROM requests p JOIN requests s ON s.pair_id = p.call_id AND s.role = 'shadow'
            WHERE p.model = $model AND p.role = 'primary'
              AND ((p.version = $canary AND s.version = $stable)
                   OR (p.version = $stable AND s.version = $canary))
              AND p.status = 200 AND s.status = 200 AND p.ts >= $since AND p.ts < $until
            """,
            {
                "canary": canary,
                "stable": stable,
                "model": model,
                "since": naive_utc(since),
                "until": naive_utc(until),
            },
        )[0]
        return PairCounts(pairs=int(row["pairs"]), disagreements=int(row["disagreements"]))

    # -- summaries --------------------------------------------------------------------------
    def bins(self, model: str, version: str) -> VersionBins:
        bins = self.store.summaries.bins(model, version)
        if bins is None:
            raise Conflict(
                f"{model}/{version} has no reference sample in the model store of"
                f" {self.host}, so its traffic's features are not summarised"
            )
        return bins

    def feature_part(
        self,
        model: str,
        version: str,
        since: datetime,
        until: datetime,
        buckets: int,
        only: list[int],
    ) -> dict[str, Any]:
        """Counts per (bucket, feature, bin) of the whole minutes covering the window, dense
        (agent.request_log.dense_features): what this host answers the controller."""
        vb = self.bins(model, version)
        since, until = minute_window(naive_utc(since), naive_utc(until))
        rows = self.store.query_arrays(
            f"""
            SELECT {_bucket_sql(buckets)} AS bucket, feature, bin, sum(n)::BIGINT AS n,
                   sum(vsum) AS vsum
            FROM summary_features
            WHERE model = $model AND version = $version AND minute >= $since
              AND minute < $until AND list_contains($only, feature)
            GROUP BY ALL
            """,
            {
                "since": since,
                "until": until,
                "width": _width(since, until, buckets),
                "model": model,
                "version": version,
                "only": only,
            },
        )
        return dense_features(vb, only, buckets, rows)

    def feature_counts(
        self,
        source: DriftSource,
        since: datetime,
        until: datetime,
        buckets: int = 1,
        only: list[int] | None = None,
        coverage: Coverage | None = None,
    ) -> FeatureCounts:
        """(bucket, feature index) → (values, counts) on the version's fixed bins; bucket
        REFERENCE is the reference sample on the same bins."""
        self._answered(coverage)
        vb = self.bins(source.model, source.version)
        indexes = only if only is not None else list(range(len(source.features)))
        part = self.feature_part(source.model, source.version, since, until, buckets, indexes)
        return counts_on_bins(vb, indexes, buckets, part)

    def label_part(
        self, model: str, version: str, since: datetime, until: datetime, buckets: int
    ) -> list[tuple[int, str, int]]:
        since, until = minute_window(naive_utc(since), naive_utc(until))
        rows = self.store.query(
            f"""
            SELECT {_bucket_sql(buckets)} AS bucket, label, sum(n)::BIGINT AS n
            FROM summary_labels
            WHERE model = $model AND version = $version AND minute >= $since AND minute < $until
            GROUP BY ALL
            """,
            {
                "since": since,
                "until": until,
                "width": _width(since, until, buckets),
                "model": model,
                "version": version,
            },
        )
        return [(r["bucket"], r["label"], r["n"]) for r in rows]

    def confidence_counts(
        self,
        model: str,
        version: str,
        since: datetime,
        until: datetime,
        buckets: int,
        edges: list[float],
        coverage: Coverage | None = None,
    ) -> list[tuple[int, int, int]]:
        """(time bucket, confidence bin, calls) of a version's answered primary calls: the
        top class's probability, binned on `edges` (bin i holds edges[i-1] <= c < edges[i])."""
        self._answered(coverage)
        since, until = naive_utc(since), naive_utc(until)
        rows = self.store.query(
            f"""
            SELECT least(floor((epoch(ts) - epoch($since::TIMESTAMP)) / $width),
                         {buckets - 1})::INTEGER AS bucket,
                   len(list_filter($edges::DOUBLE[], lambda e: e <= c))::INTEGER AS bin,
                   count(*) AS n
            FROM (
                SELECT ts, list_max(from_json(output,
                    '{{"predictions": [{{"probabilities": ["DOUBLE"]}}]}}'
                    ).predictions[1].probabilities) AS c
                FROM requests
                WHERE model = $model AND version = $version AND role = 'primary'
                  AND status = 200 AND ts >= $since AND ts < $until
            )
            WHERE c IS NOT NULL
            GROUP BY ALL
            """,
            {
                "model": model,
                "version": version,
                "since": since,
                "until": until,
                "width": _width(since, until, buckets),
                "edges": edges,
            },
        )
        return [(r["bucket"], r["bin"], r["n"]) for r in rows]

    def label_counts(
        self,
        source: DriftSource,
        since: datetime,
        until: datetime,
        buckets: int = 1,
        coverage: Coverage | None = None,
    ) -> dict[int, dict[str, int]] | None:
        """Predicted labels per bucket, or None when the reference sample has no predictions."""
        self._answered(coverage)
        vb = self.bins(source.model, source.version)
        if vb.reference_labels is None:
            return None
        part = self.label_part(source.model, source.version, since, until, buckets)
        return label_counts_of(vb.reference_labels, part)

    def latency_part(
        self,
        model: str | None,
        version: str | None,
        since: datetime,
        until: datetime,
        step_s: int,
    ) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        """Series ("model/version"), then (t, series, calls, errors, fallbacks) and (t, series,
        bin, n) of primary calls, t in epoch seconds of buckets of `step_s`."""
        import numpy as np

        since, until = minute_window(naive_utc(since), naive_utc(until))
        params: dict[str, Any] = {"since": since, "until": until, "step": step_s}
        params.update(model=model, version=version)
        where = (
            "role = 'primary' AND minute >= $since AND minute < $until"
            " AND ($model::VARCHAR IS NULL OR model = $model)"
            " AND ($version::VARCHAR IS NULL OR version = $version)"
        )
        bucket = "epoch(time_bucket(to_seconds($step), minute, $since))::BIGINT"
        calls = self.store.query_arrays(
            f"""SELECT {bucket} AS t, model || '/' || version AS series,
                       sum(calls)::BIGINT AS calls, sum(errors)::BIGINT AS errors,
                       sum(fallbacks)::BIGINT AS fallbacks
                FROM summary_calls WHERE {where} GROUP BY ALL""",
            params,
        )
        latency = self.store.query_arrays(
            f"""SELECT {bucket} AS t, model || '/' || version AS series, bin::BIGINT AS bin,
                       sum(n)::BIGINT AS n
                FROM summary_latency WHERE {where} GROUP BY ALL""",
            params,
        )
        names = sorted(set(calls["series"].tolist()) | set(latency["series"].tolist()))
        index = {name: i for i, name in enumerate(names)}
        for part in (calls, latency):
            part["series"] = np.array([index[s] for s in part["series"].tolist()], dtype=np.int64)
        return names, calls, latency

    def latency(
        self,
        model: str | None,
        version: str | None,
        since: datetime,
        until: datetime,
        step_s: int,
        coverage: Coverage | None = None,
    ) -> list[LatencyPoint]:
        """Primary calls per version in buckets of `step_s` (at least a minute: summaries
        are per minute): requests, rps, error rate and quantiles within 1%."""
        self._answered(coverage)
        since, until = minute_window(naive_utc(since), naive_utc(until))
        step_s = whole_minutes(step_s)
        series, calls, latency = self.latency_part(model, version, since, until, step_s)
        return latency_points(series, calls, latency, since, until, step_s, utcnow())

    def traffic_part(self, model: str, since: datetime, until: datetime) -> dict[str, int]:
        """Primary calls per version (routed to it) in the whole minutes of the window."""
        since, until = minute_window(naive_utc(since), naive_utc(until))
        rows = self.store.query(
            "SELECT version, sum(calls)::BIGINT AS calls FROM summary_calls"
            " WHERE model = ? AND role = 'primary' AND minute >= ? AND minute < ?"
            " GROUP BY ALL",
            [model, since, until],
        )
        return {r["version"]: r["calls"] for r in rows}

    def traffic(
        self, model: str, since: datetime, until: datetime, coverage: Coverage | None = None
    ) -> list[HostCounts]:
        self._answered(coverage)
        return [HostCounts(host=self.host, calls=self.traffic_part(model, since, until))]

    def replicas(self, coverage: Coverage | None = None) -> list[ReplicaReport]:
        self._answered(coverage)
        return local_replicas(self.spool, self.store) if self.spool is not None else []

    def host_facts(
        self, since: datetime, until: datetime, coverage: Coverage | None = None
    ) -> list[HostFacts]:
        self._answered(coverage)
        return [host_facts(self.store, self.host, since, until)]


def _width(since: datetime, until: datetime, buckets: int) -> float:
    return max((until - since).total_seconds() / buckets, 1e-6)


def whole_minutes(step_s: int) -> int:
    return max(60, step_s - step_s % 60)
