"""The request log as the controller's readers see it: one interface for everything drift,
the canary judge, replay, latency telemetry and the request views need, so none of them
writes its own SQL or knows how many hosts there are.

Two implementations: `agent.local_log.LocalRequestLog` (this agent's DuckDB file) and
`agent.fleet_log.FleetRequestLog` (every agent of the fleet, asked over HTTP with a deadline).
Both answer from the same mergeable parts (counts per fixed bin, per-call columns), merged
here, so a fleet's answer is exactly what one host holding every call would give. A method's
`coverage`, when given, is filled with the hosts that answered and those that did not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.schemas.alerts import HostFacts
from agent.schemas.coverage import Coverage
from agent.schemas.fleet import HostCounts
from agent.schemas.host import LatencyPoint
from agent.schemas.models import ReplicaReport
from agent.schemas.requests import RequestRow

if TYPE_CHECKING:
    import numpy as np

    from agent.summaries import VersionBins

# A call failed when the version answered 5xx, or failed and the fallback answered for it.
FAILED = "(status >= 500 OR fallback_from IS NOT NULL)"
# The labels of a version's JSON answer, as a list (one per instance).
LABELS = """list_transform(
    from_json({col}, '{{"predictions": [{{"label": "VARCHAR"}}]}}').predictions,
    lambda p: p.label)"""
REFERENCE = -1  # the bucket number of the reference sample
MAX_DETAIL_ROWS = 20  # records of one request id in an answer (a client may reuse ids)


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

    ts: np.ndarray  # datetime64[us]
    # The answering replica's own time for the call (latency_ms: the same instrument for a
    # call and its shadow copy, which the router's total_ms is not); NaN when none answered.
    model_ms: np.ndarray
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
    ts: datetime | None = None  # when it was answered (naive UTC)


FeatureCounts = dict[tuple[int, int], tuple["np.ndarray", "np.ndarray"]]
LabelCounts = dict[int, dict[str, int]]  # bucket (REFERENCE: the reference) → label → count


class RequestLog(Protocol):
    def requests(
        self, where: RequestFilter, coverage: Coverage | None = None
    ) -> list[RequestRow]: ...

    def request(self, request_id: str, coverage: Coverage | None = None) -> list[RequestRow]: ...

    def latency(
        self,
        model: str | None,
        version: str | None,
        since: datetime,
        until: datetime,
        step_s: int,
        coverage: Coverage | None = None,
    ) -> list[LatencyPoint]: ...

    def feature_counts(
        self,
        source: DriftSource,
        since: datetime,
        until: datetime,
        buckets: int = 1,
        only: list[int] | None = None,
        coverage: Coverage | None = None,
    ) -> FeatureCounts: ...

    def label_counts(
        self,
        source: DriftSource,
        since: datetime,
        until: datetime,
        buckets: int = 1,
        coverage: Coverage | None = None,
    ) -> dict[int, dict[str, int]] | None: ...

    def confidence_counts(
        self,
        model: str,
        version: str,
        since: datetime,
        until: datetime,
        buckets: int,
        edges: list[float],
        coverage: Coverage | None = None,
    ) -> list[tuple[int, int, int]]: ...

    def calls(
        self,
        model: str,
        canary: str,
        stable: str,
        since: datetime,
        until: datetime,
        coverage: Coverage | None = None,
    ) -> CallWindow: ...

    def shadow_pairs(
        self,
        model: str,
        canary: str,
        stable: str,
        since: datetime,
        until: datetime,
        coverage: Coverage | None = None,
    ) -> PairCounts: ...

    def originals(
        self, model: str, request_ids: list[str], coverage: Coverage | None = None
    ) -> list[Original]: ...

    def traffic(
        self, model: str, since: datetime, until: datetime, coverage: Coverage | None = None
    ) -> list[HostCounts]: ...

    def replicas(self, coverage: Coverage | None = None) -> list[ReplicaReport]:
        """The model-version replicas of the hosts, as each described itself."""
        ...

    def host_facts(
        self, since: datetime, until: datetime, coverage: Coverage | None = None
    ) -> list[HostFacts]:
        """What the host alert rules measure, of every host that answered."""
        ...


# -- merging the parts: the same for one host and for a fleet ------------------------------
def concat(parts: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, Any]:
    import numpy as np

    return {n: np.concatenate([p[n] for p in parts]) if parts else np.array([]) for n in names}


def dense_features(
    vb: VersionBins, indexes: list[int], buckets: int, rows: dict[str, Any]
) -> dict[str, Any]:
    """Summed sparse (bucket, feature, bin, n, vsum) rows as the dense part a host answers:
    `n`, counts per (bucket, bin) of each feature of `indexes` in turn (buckets x the sum of
    their bin counts), and `outer`, the value sums of each feature's two outer bins (buckets
    x features x 2; the only places a bin's values are needed). Dense and small integers:
    a day of 20 features on ~1k bins compresses to a few tens of kB."""
    import numpy as np

    sizes = [vb.bins[i].count for i in indexes]
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    where = {f: k for k, f in enumerate(indexes)}
    n = np.zeros((buckets, int(offsets[-1])), dtype=np.int64)
    outer = np.zeros((buckets, len(indexes), 2))
    feature = np.asarray(rows["feature"], dtype=np.int64)
    if len(feature):
        k = np.array([where[int(f)] for f in feature], dtype=np.int64)
        bucket = np.asarray(rows["bucket"], dtype=np.int64)
        bin_ = np.asarray(rows["bin"], dtype=np.int64)
        np.add.at(n, (bucket, offsets[k] + bin_), np.asarray(rows["n"], dtype=np.int64))
        sizes_of = np.asarray(sizes)[k]
        side = np.where(bin_ == 0, 0, np.where(bin_ == sizes_of - 1, 1, -1))
        edge = side >= 0
        vsum = np.asarray(rows["vsum"], dtype=float)
        np.add.at(outer, (bucket[edge], k[edge], side[edge]), vsum[edge])
    return {"n": n.reshape(-1), "outer": outer.reshape(-1)}


def counts_on_bins(
    vb: VersionBins, indexes: list[int], buckets: int, dense: dict[str, Any]
) -> FeatureCounts:
    """A dense part (one host's, or the sum of many) as (values, counts) per (bucket,
    feature), with the reference's counts under bucket REFERENCE. Every bucket of a feature
    shares one grid of values: the bins' upper edges, and the two outer bins at the mean of
    what fell in them (the reference has none there)."""
    import numpy as np

    sizes = [vb.bins[i].count for i in indexes]
    n = np.asarray(dense["n"], dtype=np.int64).reshape(buckets, sum(sizes))
    outer = np.asarray(dense["outer"], dtype=float).reshape(buckets, len(indexes), 2)
    out: FeatureCounts = {}
    start = 0
    for k, i in enumerate(indexes):
        b = vb.bins[i]
        mine = n[:, start : start + b.count]
        start += b.count
        low, high = mine[:, 0].sum(), mine[:, -1].sum()
        sums = outer[:, k, :].sum(axis=0)
        values = b.values(
            below=sums[0] / low if low else None, above=sums[1] / high if high else None
        )
        out[(REFERENCE, i)] = (values, vb.reference_counts[i])
        for bucket in range(buckets):
            out[(bucket, i)] = (values, mine[bucket])
    return out


def sum_dense(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Dense parts of several hosts, added (their shapes are the version's bins)."""
    total = {key: parts[0][key].copy() for key in parts[0]}
    for part in parts[1:]:
        for key in total:
            total[key] = total[key] + part[key]
    return total


def label_counts_of(
    reference: dict[str, int], rows: list[tuple[int, str, int]]
) -> dict[int, dict[str, int]]:
    """(bucket, label, n) rows of any number of hosts, summed per bucket."""
    out: dict[int, dict[str, int]] = {REFERENCE: dict(reference)}
    for bucket, label, n in rows:
        per = out.setdefault(bucket, {})
        per[label] = per.get(label, 0) + n
    return out


CALL_COLUMNS = ("t", "series", "calls", "errors", "fallbacks")
LATENCY_COLUMNS = ("t", "series", "bin", "n")


def latency_points(
    series: list[str],
    calls: dict[str, Any],
    latency: dict[str, Any],
    since: datetime,
    until: datetime,
    step_s: int,
    now: datetime,
) -> list[LatencyPoint]:
    """Latency points from summed parts: `calls` (t, series, calls, errors, fallbacks) and
    `latency` (t, series, bin, n); t in epoch seconds, series an index into `series`
    ("model/version")."""
    import numpy as np

    from agent.analysis.bins import latency_quantiles

    per: dict[tuple[int, int], list[int]] = {}
    columns = (np.asarray(calls[k]).tolist() for k in CALL_COLUMNS)
    for t, s, c, e, f in zip(*columns, strict=True):
        total = per.setdefault((t, s), [0, 0, 0])
        total[0] += c
        total[1] += e
        total[2] += f
    hist: dict[tuple[int, int], dict[int, int]] = {}
    for t, s, b, n in zip(*(np.asarray(latency[k]).tolist() for k in LATENCY_COLUMNS), strict=True):
        counts = hist.setdefault((t, s), {})
        counts[b] = counts.get(b, 0) + n
    points = []
    for (t, s), (c, e, f) in sorted(per.items(), key=lambda kv: (kv[0][0], series[kv[0][1]])):
        counts = hist.get((t, s), {})
        p50, p95, p99 = latency_quantiles(
            np.array(list(counts), dtype=np.int64),
            np.array(list(counts.values()), dtype=np.int64),
            (0.5, 0.95, 0.99),
        )
        start = datetime.fromtimestamp(t, UTC).replace(tzinfo=None)
        # The last bucket may still be filling: divide by the time it has covered.
        end = min(start + timedelta(seconds=step_s), until, now)
        seconds = max((end - max(start, since)).total_seconds(), 1.0)
        model, _, version = series[s].partition("/")
        points.append(
            LatencyPoint(
                t=start,
                model=model,
                version=version,
                requests=c,
                rps=c / seconds,
                error_rate=e / c if c else 0.0,
                fallback_rate=f / c if c else 0.0,
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
            )
        )
    return points


CALL_WINDOW_COLUMNS = ("ts_us", "model_ms", "canary", "failed")


def call_window_of(columns: dict[str, Any]) -> CallWindow:
    import numpy as np

    return CallWindow(
        ts=np.asarray(columns["ts_us"], dtype=np.int64).astype("datetime64[us]"),
        model_ms=np.asarray(columns["model_ms"], dtype=float),
        canary=np.asarray(columns["canary"]).astype(bool),
        failed=np.asarray(columns["failed"]).astype(bool),
    )
