"""Per-minute summaries of the request log, folded in while ingesting, per (model, version,
role): calls, errors, fallbacks, a latency histogram, predicted-label counts, and counts of
every input feature on bins fixed from the version's reference sample (agent/analysis/bins.py).

They are sums, so two hosts' or two minutes' summaries merge exactly, and what reads them
(drift, drift over time, latency telemetry, a fleet's answers) costs the same at 10 and at
10,000 calls a second. Raw rows stay for replay, lookups and per-call statistics.

Booking: a call is booked on the version it was routed to. When that version failed and the
fallback answered, the call (and its latency) is an error and a fallback of the version that
failed; the predicted label is the answering version's. Feature counts are of primary calls
with status 200, booked on the version they were routed to.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from serve.model_store import ModelStore, StoreError

if TYPE_CHECKING:
    import duckdb
    import numpy as np

    from agent.analysis.bins import FeatureBins

log = logging.getLogger("trackside.agent.summaries")

FAILED = "(status >= 500 OR fallback_from IS NOT NULL)"
ROUTED = "coalesce(fallback_from, version)"
MINUTE = "time_bucket(INTERVAL 1 minute, ts)"
SCHEMA = """
CREATE TABLE IF NOT EXISTS summary_calls (minute TIMESTAMP, model VARCHAR, version VARCHAR,
    role VARCHAR, calls BIGINT, errors BIGINT, fallbacks BIGINT,
    PRIMARY KEY (minute, model, version, role));
CREATE TABLE IF NOT EXISTS summary_latency (minute TIMESTAMP, model VARCHAR, version VARCHAR,
    role VARCHAR, bin SMALLINT, n BIGINT, PRIMARY KEY (minute, model, version, role, bin));
CREATE TABLE IF NOT EXISTS summary_labels (minute TIMESTAMP, model VARCHAR, version VARCHAR,
    label VARCHAR, n BIGINT, PRIMARY KEY (minute, model, version, label));
CREATE TABLE IF NOT EXISTS summary_features (minute TIMESTAMP, model VARCHAR, version VARCHAR,
    feature SMALLINT, bin INTEGER, n BIGINT, vsum DOUBLE,
    PRIMARY KEY (minute, model, version, feature, bin));
"""
SUMMARY_TABLES = ("summary_calls", "summary_latency", "summary_labels", "summary_features")


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def ceil_minute(t: datetime) -> datetime:
    floor = floor_minute(t)
    return floor if floor == t else floor + timedelta(minutes=1)


def minute_window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The whole minutes a window of summaries covers: every minute that starts at or after
    `since`, up to the one that holds `until`. Nothing from before `since` is counted (a
    rollout step's drift never sees the traffic before the step)."""
    return ceil_minute(since), ceil_minute(until)


@dataclass(frozen=True)
class VersionBins:
    """A version's feature bins, and its reference sample counted on them."""

    model: str
    version: str
    features: list[str]
    bins: list[FeatureBins]
    reference_counts: list[np.ndarray]
    reference_sums: list[np.ndarray]
    reference_labels: dict[str, int] | None


def _json_paths(features: list[str]) -> list[str]:
    return ['$."' + f.replace("\\", "\\\\").replace('"', '\\"') + '"' for f in features]


@dataclass
class Summaries:
    """The summaries in one agent's DuckDB file, and the bins of every version it has seen."""

    model_store: ModelStore | None = None
    _bins: dict[tuple[str, str], VersionBins | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    unbinned: set[tuple[str, str]] = field(default_factory=set)

    # -- bins -------------------------------------------------------------------------------
    def bins(self, model: str, version: str) -> VersionBins | None:
        """Bins from the version's reference sample in the model store (None: it has none),
        computed once."""
        key = (model, version)
        with self._lock:
            if key not in self._bins:
                self._bins[key] = self._load(model, version)
            return self._bins[key]

    def _load(self, model: str, version: str) -> VersionBins | None:
        if self.model_store is None:
            return None
        try:
            manifest = self.model_store.manifest(model, version)
            reference = self.model_store.reference_path(model, version)
        except StoreError:
            return None
        if reference is None or not reference.is_file():
            return None
        return bins_from_reference(model, version, list(manifest.input.features), str(reference))

    # -- folding ----------------------------------------------------------------------------
    def fold(self, cur: duckdb.DuckDBPyConnection, batch: str) -> int:
        """Fold the calls in table `batch` (spool columns) into the summaries, in the caller's
        transaction. Returns the number of calls folded."""
        (calls,) = cur.execute(f"SELECT count(*) FROM {batch}").fetchone() or (0,)
        if not calls:
            return 0
        cur.execute(
            f"""
            INSERT INTO summary_calls
            SELECT {MINUTE}, model, {ROUTED}, role, count(*),
                   count(*) FILTER (WHERE {FAILED}),
                   count(*) FILTER (WHERE fallback_from IS NOT NULL)
            FROM {batch} WHERE {ROUTED} IS NOT NULL GROUP BY ALL
            ON CONFLICT DO UPDATE SET calls = calls + excluded.calls,
                errors = errors + excluded.errors, fallbacks = fallbacks + excluded.fallbacks
            """
        )
        cur.execute(
            f"""
            INSERT INTO summary_latency
            SELECT {MINUTE}, model, {ROUTED}, role, {latency_bin_sql("total_ms")}, count(*)
            FROM {batch} WHERE {ROUTED} IS NOT NULL AND total_ms IS NOT NULL GROUP BY ALL
            ON CONFLICT DO UPDATE SET n = n + excluded.n
            """
        )
        cur.execute(
            f"""
            INSERT INTO summary_labels
            SELECT minute, model, version, p.label, count(*) FROM (
                SELECT {MINUTE} AS minute, model, version, unnest(from_json(output,
                    '{{"predictions": [{{"label": "VARCHAR"}}]}}').predictions) AS p
                FROM {batch} WHERE role = 'primary' AND status = 200 AND version IS NOT NULL
            ) WHERE p.label IS NOT NULL GROUP BY ALL
            ON CONFLICT DO UPDATE SET n = n + excluded.n
            """
        )
        versions = cur.execute(
            f"SELECT DISTINCT model, {ROUTED} FROM {batch}"
            f" WHERE role = 'primary' AND status = 200 AND {ROUTED} IS NOT NULL"
        ).fetchall()
        for model, version in versions:
            bins = self.bins(model, version)
            if bins is None:
                if (model, version) not in self.unbinned:
                    self.unbinned.add((model, version))
                    log.warning(
                        "%s/%s has no reference sample in this agent's model store: its input"
                        " features are not summarised here (drift cannot count them)",
                        model,
                        version,
                    )
                continue
            self._fold_features(cur, batch, bins)
        return int(calls)

    def _fold_features(self, cur: duckdb.DuckDBPyConnection, batch: str, vb: VersionBins) -> None:
        import numpy as np

        width = len(vb.features)
        columns = ", ".join(f"x[{j + 1}] AS f{j}" for j in range(width))
        # Rows come as lists of numbers (read fast, as DOUBLE[][]) or as objects keyed by
        # feature name (the fast read gives NULL for them: read again by name), one column
        # per feature, aligned by instance.
        data = cur.execute(
            f"""
            WITH parsed AS (
                SELECT epoch({MINUTE})::BIGINT AS minute, input,
                       from_json(input, '{{"instances": "DOUBLE[][]"}}').instances AS xs
                FROM {batch}
                WHERE model = $model AND {ROUTED} = $version AND role = 'primary'
                  AND status = 200
            ), keyed AS (
                SELECT minute, list_contains(list_transform(xs, lambda x: x IS NULL), true)
                           AS by_name, input, xs
                FROM parsed
            ), instances AS (
                SELECT minute, unnest(xs) AS x FROM keyed WHERE NOT by_name
                UNION ALL
                SELECT minute, json_extract(unnest(from_json(input,
                           '{{"instances": "JSON[]"}}').instances), $paths)::DOUBLE[] AS x
                FROM keyed WHERE by_name
            )
            SELECT minute, {columns} FROM instances WHERE len(x) = {width}
            """,
            {"model": vb.model, "version": vb.version, "paths": _json_paths(vb.features)},
        ).fetchnumpy()
        minute = np.asarray(data["minute"], dtype=np.int64)
        if len(minute) == 0:
            return
        first = int(minute.min())
        m = (minute - first) // 60
        minutes = int(m.max()) + 1
        parts: list[tuple[np.ndarray, ...]] = []
        # One key per (minute, bin), feature by feature (each column is read once); NaN and
        # infinities are not counted.
        for j, b in enumerate(vb.bins):
            column = np.asarray(data[f"f{j}"], dtype=float)
            ok = np.isfinite(column)
            key = m[ok] * b.count + b.index(column[ok])
            if minutes * b.count <= 1_000_000:  # a few minutes: count on a dense grid
                n = np.bincount(key, minlength=minutes * b.count)
                vsum = np.bincount(key, weights=column[ok], minlength=minutes * b.count)
                used = np.flatnonzero(n)
                n, vsum = n[used], vsum[used]
            else:  # a long stretch of traffic (the agent was down): sort the keys instead
                used, inverse = np.unique(key, return_inverse=True)
                n = np.bincount(inverse)
                vsum = np.bincount(inverse, weights=column[ok])
            m_of, bin_ = np.divmod(used, b.count)
            parts.append((first + m_of * 60, np.full(len(used), j), bin_, n, vsum))
        minute_of, feature, bin_, n, vsum = (np.concatenate(x) for x in zip(*parts, strict=True))
        folded = {
            "minute": minute_of,
            "feature": feature.astype(np.int16),
            "bin": bin_.astype(np.int32),
            "n": n.astype(np.int64),
            "vsum": vsum,
        }
        cur.register("folded_features", folded)
        try:
            cur.execute(
                """
                INSERT INTO summary_features
                SELECT to_timestamp(minute)::TIMESTAMP, $model, $version, feature, bin, n, vsum
                FROM folded_features
                ON CONFLICT DO UPDATE SET n = n + excluded.n, vsum = vsum + excluded.vsum
                """,
                {"model": vb.model, "version": vb.version},
            )
        finally:
            cur.unregister("folded_features")


def latency_bin_sql(column: str) -> str:
    """agent.analysis.bins.latency_bin, in SQL (the same bin for the same value)."""
    from agent.analysis.bins import GAMMA, LATENCY_BINS, LATENCY_FLOOR_MS

    return (
        f"least(greatest(ceil(ln(greatest({column}, {LATENCY_FLOOR_MS}) / {LATENCY_FLOOR_MS})"
        f" / ln({GAMMA}) - 1e-9), 0), {LATENCY_BINS - 1})::SMALLINT"
    )


def bins_from_reference(
    model: str, version: str, features: list[str], reference: str
) -> VersionBins:
    import duckdb
    import numpy as np

    from agent.analysis.bins import bin_counts, feature_bins

    con = duckdb.connect()
    try:
        described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [reference])
        columns = {r[0] for r in described.fetchall()}
        select = ", ".join(f'"{f}"::DOUBLE AS "{f}"' for f in features)
        data = con.execute(f"SELECT {select} FROM read_parquet(?)", [reference]).fetchnumpy()
        labels = None
        if "prediction" in columns:
            labels = dict(
                con.execute(
                    "SELECT prediction::VARCHAR, count(*) FROM read_parquet(?) GROUP BY ALL",
                    [reference],
                ).fetchall()
            )
    finally:
        con.close()
    all_bins, counts, sums = [], [], []
    for f in features:
        values = np.asarray(data[f], dtype=float)
        b = feature_bins(values)
        c, s = bin_counts(b, values)
        all_bins.append(b)
        counts.append(c)
        sums.append(s)
    return VersionBins(model, version, features, all_bins, counts, sums, labels)
