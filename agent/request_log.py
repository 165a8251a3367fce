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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.schemas.host import LatencyPoint
from agent.schemas.requests import RequestRow
from agent.store import Store, naive_utc

if TYPE_CHECKING:
    import numpy as np

# A call failed when the version answered 5xx, or failed and the fallback answered for it.
FAILED = "(status >= 500 OR fallback_from IS NOT NULL)"
# The labels of a version's JSON answer, as a list (one per instance).
LABELS = """list_transform(
    from_json({col}, '{{"predictions": [{{"label": "VARCHAR"}}]}}').predictions,
    lambda p: p.label)"""
# Drift counts a feature with more distinct values than this on GRID equal-width bins.
GRID = 2048
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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _bodies(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("input", "output"):
        with contextlib.suppress(ValueError, TypeError):  # else keep the text as it came
            row[key] = json.loads(row[key]) if row.get(key) else None
    return row


def _current_sql(buckets: int) -> str:
    """Parsed bodies of a version's successful primary calls, with their time bucket."""
    return f"""
        SELECT least(floor((epoch(ts) - epoch(?::TIMESTAMP)) / ?), {buckets - 1})::INTEGER
                   AS bucket,
               from_json(input, '{{"instances": "DOUBLE[][]"}}').instances AS xs,
               from_json(output, '{{"predictions": [{{"label": "VARCHAR"}}]}}').predictions
                   AS ps
        FROM requests
        WHERE model = ? AND version = ? AND role = 'primary' AND status = 200
          AND ts >= ? AND ts < ?
    """


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
        rows = self.store.query(
            f"""
            SELECT t, model, version, requests, error_rate, p50_ms, p95_ms, p99_ms,
                   -- the first and last buckets are cut by the window: divide by what is in it
                   requests / greatest(epoch(least(t + to_seconds(?), ?::TIMESTAMP))
                                       - epoch(greatest(t, ?::TIMESTAMP)), 1.0) AS rps
            FROM (
                SELECT time_bucket(to_seconds(?), ts) AS t, model, version, count(*) AS requests,
                       avg(CASE WHEN {FAILED} THEN 1 ELSE 0 END) AS error_rate,
                       quantile_cont(total_ms, 0.5) AS p50_ms,
                       quantile_cont(total_ms, 0.95) AS p95_ms,
                       quantile_cont(total_ms, 0.99) AS p99_ms
                FROM requests
                WHERE role = 'primary' AND ts >= ? AND ts < ?
                  AND (?::VARCHAR IS NULL OR model = ?) AND (?::VARCHAR IS NULL OR version = ?)
                GROUP BY ALL
            ) ORDER BY t, model, version
            """,
            [step_s, until, since, step_s, since, until, model, model, version, version],
        )
        return [LatencyPoint(**r) for r in rows]

    def feature_counts(
        self,
        source: DriftSource,
        since: datetime,
        until: datetime,
        buckets: int = 1,
        only: list[int] | None = None,
    ) -> FeatureCounts:
        """(bucket, feature index) → (values, counts); bucket REFERENCE is the reference
        sample. A feature with more than GRID distinct values is counted on GRID equal-width
        bins between its minimum and maximum: KS is then exact up to the mass of one bin."""
        import numpy as np

        indexes = only if only is not None else list(range(len(source.features)))
        columns = ", ".join(f"{_quote(source.features[i])}::DOUBLE" for i in indexes)
        width = max((until - since).total_seconds() / buckets, 1e-6)
        rows = self.store.query(
            f"""
            WITH ref AS (SELECT [{columns}] AS x FROM read_parquet(?)),
            instances AS (SELECT bucket, unnest(xs) AS x FROM ({_current_sql(buckets)})),
            cur AS (SELECT bucket, list_select(x, ?::INTEGER[]) AS x FROM instances),
            long AS (
                SELECT {REFERENCE} AS bucket, f, x[f + 1] AS v FROM ref, range(?) t(f)
                UNION ALL
                SELECT bucket, f, x[f + 1] AS v FROM cur, range(?) t(f)
            ),
            clean AS (SELECT * FROM long WHERE v IS NOT NULL AND isfinite(v)),
            bounds AS (
                SELECT f, count(DISTINCT v) AS nd, min(v) AS lo, max(v) AS hi
                FROM clean GROUP BY f
            )
            SELECT bucket, f,
                   CASE WHEN nd <= {GRID} OR hi = lo THEN v
                        ELSE lo + (least(floor((v - lo) / (hi - lo) * {GRID}), {GRID - 1}) + 0.5)
                                  * (hi - lo) / {GRID}
                   END AS v,
                   count(*) AS n
            FROM clean JOIN bounds USING (f)
            GROUP BY ALL
            ORDER BY bucket, f, v
            """,
            [
                str(source.reference),
                since,
                width,
                source.model,
                source.version,
                since,
                until,
                [i + 1 for i in indexes],
                len(indexes),
                len(indexes),
            ],
        )
        grouped: dict[tuple[int, int], tuple[list[float], list[int]]] = {}
        for r in rows:
            values, counts = grouped.setdefault((r["bucket"], indexes[r["f"]]), ([], []))
            values.append(r["v"])
            counts.append(r["n"])
        return {k: (np.array(v, dtype=float), np.array(c)) for k, (v, c) in grouped.items()}

    def label_counts(
        self, source: DriftSource, since: datetime, until: datetime, buckets: int = 1
    ) -> dict[int, dict[str, int]] | None:
        """Predicted labels per bucket, or None when the reference sample has no predictions."""
        described = self.store.query(
            "DESCRIBE SELECT * FROM read_parquet(?)", [str(source.reference)]
        )
        if "prediction" not in {r["column_name"] for r in described}:
            return None
        width = max((until - since).total_seconds() / buckets, 1e-6)
        rows = self.store.query(
            f"""
            SELECT {REFERENCE} AS bucket, prediction::VARCHAR AS label, count(*) AS n
            FROM read_parquet(?) GROUP BY ALL
            UNION ALL
            SELECT bucket, p.label, count(*) AS n
            FROM (SELECT bucket, unnest(ps) AS p FROM ({_current_sql(buckets)}))
            WHERE p.label IS NOT NULL
            GROUP BY ALL
            """,
            [str(source.reference), since, width, source.model, source.version, since, until],
        )
        out: dict[int, dict[str, int]] = {}
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
              ON s.request_id = p.request_id AND s.role = 'shadow' AND s.version = $stable
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
