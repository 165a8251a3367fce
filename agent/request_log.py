"""The request log as the controller's readers see it: one interface for everything drift,
the canary judge, replay, latency telemetry and the request views need, so none of them
writes its own SQL.

`LocalRequestLog` reads this agent's DuckDB file. What counts as a failed call and where a
version's answer keeps its labels are written here once.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.errors import Conflict
from agent.schemas.host import LatencyPoint
from agent.schemas.requests import RequestRow
from agent.store import Store, naive_utc, utcnow
from agent.summaries import VersionBins, minute_window

if TYPE_CHECKING:
    import numpy as np

# A call failed when the version answered 5xx, or failed and the fallback answered for it.
FAILED = "(status >= 500 OR fallback_from IS NOT NULL)"
# The labels of a version's JSON answer, as a list (one per instance).
LABELS = """list_transform(
    from_json({col}, '{{"predictions": [{{"label": "VARCHAR"}}]}}').predictions,
    lambda p: p.label)"""
REFERENCE = -1  # the bucket number of the reference sample
# Columns of the log that a listing leaves out (bodies) and that no reader needs.
_INTERNAL = "sticky_key_hash, dropped_total, ingested_at"


@dataclass(frozen=True)
class RequestFilter:
    model: str | None = None
    version: str | None = None
    role: str | None = None
    status: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


@dataclass(frozen=True)
class DriftSource:
    """What one version's drift needs: its reference sample and input feature names."""

    model: str
    version: str
    reference: Path
    features: list[str]


@dataclass(frozen=True)
class CallWindow:
    """Primary calls of a canary and its stable over a window, one entry per call."""

    ts: np.ndarray  # datetime64
    total_ms: np.ndarray
    canary: np.ndarray  # bool: the call went to the canary (answered by it or its fallback)
    failed: np.ndarray  # bool


@dataclass(frozen=True)
class PairCounts:
    """Canary calls shadowed to stable, and how many of those answers' labels differ."""

    pairs: int
    disagreements: int


@dataclass(frozen=True)
class Original:
    """A logged primary call, as replay needs it."""

    request_id: str
    version: str | None
    sha256: str | None
    input: str | None
    output: str | None


FeatureCounts = dict[tuple[int, int], tuple["np.ndarray", "np.ndarray"]]


class RequestLog(Protocol):
    def requests(self, where: RequestFilter) -> list[RequestRow]: ...

    def request(self, request_id: str) -> list[RequestRow]: ...

    def latency(
        self,
        model: str | None,
        version: str | None,
        since: datetime,
        until: datetime,
        step_s: int,
    ) -> list[LatencyPoint]: ...

    def feature_counts(
        self,
        source: DriftSource,
        since: datetime,
        until: datetime,
        buckets: int = 1,
        only: list[int] | None = None,
    ) -> FeatureCounts: ...

    def label_counts(
        self, source: DriftSource, since: datetime, until: datetime, buckets: int = 1
    ) -> dict[int, dict[str, int]] | None: ...

    def calls(
        self, model: str, canary: str, stable: str, since: datetime, until: datetime
    ) -> CallWindow: ...

    def shadow_pairs(
        self, model: str, canary: str, stable: str, since: datetime, until: datetime
    ) -> PairCounts: ...

    def originals(self, model: str, request_ids: list[str]) -> list[Original]: ...


def _bodies(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("input", "output"):
        with contextlib.suppress(ValueError, TypeError):  # else keep the text as it came
            row[key] = json.loads(row[key]) if row.get(key) else None
    return row


def counts_on_bins(
    vb: VersionBins, indexes: list[int], buckets: int, rows: dict[str, Any]
) -> FeatureCounts:
    """Summed (bucket, feature, bin, n, vsum) rows as (values, counts) per (bucket, feature),
    with the reference's counts under bucket REFERENCE. Every bucket of a feature shares one
    grid of values: the bins' upper edges, and the two outer bins at the mean of what fell in
    them (the reference has none there)."""
    import numpy as np

    out: FeatureCounts = {}
    bucket, feature = rows["bucket"], rows["feature"]
    for i in indexes:
        b = vb.bins[i]
        mine = feature == i
        n = np.zeros((buckets, b.count), dtype=np.int64)
        vsum = np.zeros(b.count)
        np.add.at(n, (bucket[mine], rows["bin"][mine]), rows["n"][mine])
        np.add.at(vsum, rows["bin"][mine], rows["vsum"][mine])
        low, high = n[:, 0].sum(), n[:, -1].sum()
        values = b.values(
            below=vsum[0] / low if low else None, above=vsum[-1] / high if high else None
        )
        out[(REFERENCE, i)] = (values, vb.reference_counts[i])
        for k in range(buckets):
            out[(k, i)] = (values, n[k])
    return out


class LocalRequestLog:
    """The request log in this agent's DuckDB file."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def requests(self, where: RequestFilter) -> list[RequestRow]:
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

    def request(self, request_id: str) -> list[RequestRow]:
        rows = self.store.query(
            f"SELECT * EXCLUDE ({_INTERNAL}) FROM requests WHERE request_id = ? ORDER BY role",
            [request_id],
        )
        return [RequestRow(**_bodies(r)) for r in rows]

    def latency(
        self,
        model: str | None,
        version: str | None,
        since: datetime,
        until: datetime,
        step_s: int,
    ) -> list[LatencyPoint]:
        """Primary calls per version in buckets of `step_s` (at least a minute: summaries
        are per minute), from the summaries: requests, rps, error rate and quantiles."""
        import numpy as np

        from agent.analysis.bins import latency_quantiles

        since, until = minute_window(naive_utc(since), naive_utc(until))
        step_s = max(60, step_s - step_s % 60)
        where = (
            "role = 'primary' AND minute >= $since AND minute < $until"
            " AND ($model::VARCHAR IS NULL OR model = $model)"
            " AND ($version::VARCHAR IS NULL OR version = $version)"
        )
        params: dict[str, Any] = {"since": since, "until": until, "step": step_s}
        params.update(model=model, version=version)
        calls = self.store.query(
            f"""SELECT time_bucket(to_seconds($step), minute, $since) AS t, model, version,
                       sum(calls)::BIGINT AS calls, sum(errors)::BIGINT AS errors,
                       max(minute) AS last
                FROM summary_calls WHERE {where} GROUP BY ALL ORDER BY t, model, version""",
            params,
        )
        hist: dict[tuple[Any, str, str], tuple[list[int], list[int]]] = {}
        for r in self.store.query(
            f"""SELECT time_bucket(to_seconds($step), minute, $since) AS t, model, version, bin,
                       sum(n)::BIGINT AS n
                FROM summary_latency WHERE {where} GROUP BY ALL""",
            params,
        ):
            bins, counts = hist.setdefault((r["t"], r["model"], r["version"]), ([], []))
            bins.append(r["bin"])
            counts.append(r["n"])
        now = utcnow()
        points = []
        for r in calls:
            bins, counts = hist.get((r["t"], r["model"], r["version"]), ([], []))
            p50, p95, p99 = latency_quantiles(np.array(bins), np.array(counts), (0.5, 0.95, 0.99))
            # The last bucket may still be filling: divide by the time it has covered.
            end = min(r["t"] + timedelta(seconds=step_s), until, now)
            seconds = max((end - max(r["t"], since)).total_seconds(), 1.0)
            points.append(
                LatencyPoint(
                    t=r["t"],
                    model=r["model"],
                    version=r["version"],
                    requests=r["calls"],
                    rps=r["calls"] / seconds,
                    error_rate=r["errors"] / r["calls"] if r["calls"] else 0.0,
                    p50_ms=p50,
                    p95_ms=p95,
                    p99_ms=p99,
                )
            )
        return points

    def _bins(self, source: DriftSource) -> VersionBins:
        bins = self.store.summaries.bins(source.model, source.version)
        if bins is None:
            raise Conflict(
                f"{source.model}/{source.version} has no reference sample in this agent's"
                " model store, so its traffic's features were not summarised"
            )
        return bins

    def feature_counts(
        self,
        source: DriftSource,
        since: datetime,
        until: datetime,
        buckets: int = 1,
        only: list[int] | None = None,
    ) -> FeatureCounts:
        """(bucket, feature index) → (values, counts) on the version's fixed bins, from the
        summaries of the whole minutes covering [since, until); bucket REFERENCE is the
        reference sample on the same bins."""
        vb = self._bins(source)
        since, until = minute_window(naive_utc(since), naive_utc(until))
        indexes = only if only is not None else list(range(len(source.features)))
        width = max((until - since).total_seconds() / buckets, 1e-6)
        rows = self.store.query_arrays(
            f"""
            SELECT least(floor((epoch(minute) - epoch($since)) / $width), {buckets - 1})::INTEGER
                       AS bucket, feature, bin, sum(n)::BIGINT AS n, sum(vsum) AS vsum
            FROM summary_features
            WHERE model = $model AND version = $version AND minute >= $since
              AND minute < $until AND list_contains($only, feature)
            GROUP BY ALL
            """,
            {
                "since": since,
                "until": until,
                "width": width,
                "model": source.model,
                "version": source.version,
                "only": indexes,
            },
        )
        return counts_on_bins(vb, indexes, buckets, rows)

    def label_counts(
        self, source: DriftSource, since: datetime, until: datetime, buckets: int = 1
    ) -> dict[int, dict[str, int]] | None:
        """Predicted labels per bucket, or None when the reference sample has no predictions."""
        vb = self._bins(source)
        if vb.reference_labels is None:
            return None
        since, until = minute_window(naive_utc(since), naive_utc(until))
        width = max((until - since).total_seconds() / buckets, 1e-6)
        rows = self.store.query(
            f"""
            SELECT least(floor((epoch(minute) - epoch($since)) / $width), {buckets - 1})::INTEGER
                       AS bucket, label, sum(n)::BIGINT AS n
            FROM summary_labels
            WHERE model = $model AND version = $version AND minute >= $since AND minute < $until
            GROUP BY ALL
            """,
            {
                "since": since,
                "until": until,
                "width": width,
                "model": source.model,
                "version": source.version,
            },
        )
        out: dict[int, dict[str, int]] = {REFERENCE: dict(vb.reference_labels)}
        for r in rows:
            out.setdefault(r["bucket"], {})[r["label"]] = r["n"]
        return out

    def calls(
        self, model: str, canary: str, stable: str, since: datetime, until: datetime
    ) -> CallWindow:
        import numpy as np

        rows = self.store.query_arrays(
            f"""
            SELECT ts, total_ms,
                   (version = $canary OR fallback_from = $canary) AS canary,
                   {FAILED} AS failed
            FROM requests
            WHERE model = $model AND role = 'primary' AND ts >= $since AND ts < $until
              AND (version IN ($canary, $stable) OR fallback_from IN ($canary, $stable))
            """,
            {
                "canary": canary,
                "stable": stable,
                "model": model,
                "since": naive_utc(since),
                "until": naive_utc(until),
            },
        )
        return CallWindow(
            ts=rows["ts"],
            total_ms=np.nan_to_num(rows["total_ms"].astype(float)),
            canary=rows["canary"].astype(bool),
            failed=rows["failed"].astype(bool),
        )

    def shadow_pairs(
        self, model: str, canary: str, stable: str, since: datetime, until: datetime
    ) -> PairCounts:
        row = self.store.query(
            f"""
            SELECT count(*) AS pairs,
                   count(*) FILTER (WHERE {LABELS.format(col="p.output")}
                                    IS DISTINCT FROM {LABELS.format(col="s.output")})
                       AS disagreements
            FROM requests p JOIN requests s
              ON s.pair_id = p.call_id AND s.role = 'shadow' AND s.version = $stable
            WHERE p.model = $model AND p.role = 'primary' AND p.version = $canary
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

    def originals(self, model: str, request_ids: list[str]) -> list[Original]:
        rows = self.store.query(
            "SELECT request_id, version, sha256, input, output FROM requests"
            " WHERE role = 'primary' AND model = ? AND list_contains(?, request_id)"
            " QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY ts) = 1",
            [model, request_ids],
        )
        return [Original(**r) for r in rows]
