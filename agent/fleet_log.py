"""The request log of a whole fleet, for the controller: its own agent's parts read locally,
every other agent's asked over HTTP (the /v1/fleet family, with the fleet token) at once,
within a deadline, and merged exactly (agent/request_log.py). A host that does not answer in
time is named in the answer's coverage with its last known share of the model's traffic.

The fan-out runs on one event loop in a thread of its own, with one HTTP client per agent
(connections are kept), so the synchronous readers (drift, the judge in a worker thread, API
handlers) can call it like the local log.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from agent.local_log import LocalRequestLog, whole_minutes
from agent.request_log import (
    CALL_COLUMNS,
    CALL_WINDOW_COLUMNS,
    LATENCY_COLUMNS,
    CallWindow,
    DriftSource,
    FeatureCounts,
    Original,
    PairCounts,
    RequestFilter,
    call_window_of,
    concat,
    counts_on_bins,
    label_counts_of,
    latency_points,
    sum_dense,
)
from agent.schemas.alerts import HostFacts
from agent.schemas.coverage import Coverage, MissingHost
from agent.schemas.fleet import (
    Columns,
    ConfidenceCount,
    HostCounts,
    LabelCount,
    LatencyColumns,
    OriginalRow,
    PairTotals,
)
from agent.schemas.host import LatencyPoint
from agent.schemas.models import ReplicaReport
from agent.schemas.requests import RequestRow
from agent.store import Store, naive_utc, utcnow
from agent.summaries import minute_window

log = logging.getLogger("trackside.agent.fleet")
T = TypeVar("T")
SHARES_KEY = "fleet:shares"


@dataclass(frozen=True)
class Peer:
    """Another agent of the fleet: its name (as its records name their host) and address."""

    name: str
    url: str
    transport: httpx.AsyncBaseTransport | None = None  # tests and the simulation: in-process


@dataclass
class Answers:
    by_host: dict[str, Any]
    missing: dict[str, str]  # host -> why it did not answer


def _replicas(found: Any) -> list[ReplicaReport]:
    return [ReplicaReport.model_validate(r) for r in found]


def _when(value: datetime) -> str:
    return naive_utc(value).isoformat()


class FleetRequestLog:
    def __init__(
        self,
        local: LocalRequestLog,
        peers: list[Peer],
        token: str,
        deadline_s: float = 2.0,
        store: Store | None = None,
        max_concurrency: int = 64,
    ) -> None:
        self.local = local
        self.peers = [p for p in peers if p.name != local.host]
        self.token = token
        self.deadline_s = deadline_s
        self.store = store
        self.bytes_received = 0
        # (host, model) -> (share of the model's primary calls, when measured)
        self.shares: dict[tuple[str, str], tuple[float, datetime]] = self._load_shares()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet", daemon=True)
        self._thread.start()
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._limit = asyncio.Semaphore(max_concurrency)

    def close(self) -> None:
        async def shut() -> None:
            for client in self._clients.values():
                await client.aclose()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # -- asking ---------------------------------------------------------------------------
    def _client(self, peer: Peer) -> httpx.AsyncClient:
        client = self._clients.get(peer.name)
        if client is None:
            client = httpx.AsyncClient(
                base_url=peer.url,
                headers={"Authorization": f"Bearer {self.token}", "accept-encoding": "gzip"},
                transport=peer.transport,
                timeout=self.deadline_s,
            )
            self._clients[peer.name] = client
        return client

    async def _ask(
        self, peer: Peer, method: str, path: str, params: dict[str, Any], body: Any
    ) -> Any:
        async with self._limit:
            response = await self._client(peer).request(method, path, params=params, json=body)
        self.bytes_received += response.num_bytes_downloaded  # as sent (gzip), not unpacked
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise RuntimeError(f"answered {response.status_code}: {str(detail)[:200]}")
        return response.json()

    async def _ask_all(self, method: str, path: str, params: dict[str, Any], body: Any) -> Answers:
        async def one(peer: Peer) -> tuple[str, Any, str | None]:
            try:
                found = await asyncio.wait_for(
                    self._ask(peer, method, path, params, body), self.deadline_s
                )
            except TimeoutError:
                return peer.name, None, f"no answer within {self.deadline_s:g}s"
            except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                return peer.name, None, str(exc) or type(exc).__name__
            return peer.name, found, None

        results = await asyncio.gather(*(one(p) for p in self.peers))
        return Answers(
            by_host={name: found for name, found, why in results if why is None},
            missing={name: why for name, _, why in results if why is not None},
        )

    def _gather(
        self,
        path: str,
        params: dict[str, Any],
        parse: Callable[[Any], T],
        coverage: Coverage | None,
        model: str | None,
        method: str = "GET",
        body: Any = None,
    ) -> dict[str, T]:
        """Every peer's answer to one request, parsed; the hosts that did not answer go into
        `coverage` with their last known share of `model`'s traffic."""
        clean = {k: v for k, v in params.items() if v is not None}
        answers = asyncio.run_coroutine_threadsafe(
            self._ask_all(method, path, clean, body), self._loop
        ).result()
        parsed: dict[str, T] = {}
        for host, found in answers.by_host.items():
            try:
                parsed[host] = parse(found)
            except ValueError as exc:
                answers.missing[host] = f"answered what this controller cannot read: {exc}"
        if coverage is not None:
            for host in [self.local.host, *sorted(parsed)]:
                if host not in coverage.answered:
                    coverage.answered.append(host)
            for host, why in sorted(answers.missing.items()):
                if any(m.host == host for m in coverage.missing):
                    continue
                share = self.shares.get((host, model)) if model else None
                coverage.missing.append(
                    MissingHost(
                        host=host,
                        reason=why,
                        last_share=share[0] if share else None,
                        last_seen=share[1] if share else None,
                    )
                )
        for host, why in answers.missing.items():
            log.warning("fleet: %s did not answer %s: %s", host, path, why)
        return parsed

    # -- shares of traffic -----------------------------------------------------------------
    def _load_shares(self) -> dict[tuple[str, str], tuple[float, datetime]]:
        doc = self.store.get_state(SHARES_KEY) if self.store is not None else None
        out: dict[tuple[str, str], tuple[float, datetime]] = {}
        for item in doc or []:
            out[(item["host"], item["model"])] = (
                float(item["share"]),
                datetime.fromisoformat(item["at"]),
            )
        return out

    def _learn_shares(self, model: str, calls: dict[str, int], complete: bool) -> None:
        """Remember each host's share of `model`'s calls, from an answer every host gave."""
        total = sum(calls.values())
        if not complete or total == 0:
            return
        now = datetime.now(UTC)
        for host, n in calls.items():
            self.shares[(host, model)] = (n / total, now)
        if self.store is not None:
            doc = [
                {"host": h, "model": m, "share": s, "at": at.isoformat()}
                for (h, m), (s, at) in sorted(self.shares.items())
            ]
            self.store.put_state(SHARES_KEY, doc)

    # -- the RequestLog interface -------------------------------------------------------
    def requests(self, where: RequestFilter, coverage: Coverage | None = None) -> list[RequestRow]:
        params = {
            "model": where.model,
            "version": where.version,
            "role": where.role,
            "status": where.status,
            "since": _when(where.since) if where.since else None,
            "until": _when(where.until) if where.until else None,
            "limit": where.limit,
        }
        rows = self.local.requests(where, coverage)
        answers = self._gather("/v1/fleet/requests", params, _rows, coverage, where.model)
        for found in answers.values():
            rows += found
        rows.sort(key=lambda r: r.ts, reverse=True)
        return rows[: where.limit]

    def request(self, request_id: str, coverage: Coverage | None = None) -> list[RequestRow]:
        from urllib.parse import quote

        rows = self.local.request(request_id, coverage)
        path = f"/v1/fleet/requests/{quote(request_id, safe='')}"
        for found in self._gather(path, {}, _rows, coverage, None).values():
            rows += found
        rows.sort(key=lambda r: (r.ts, r.role), reverse=True)
        return rows

    def originals(
        self, model: str, request_ids: list[str], coverage: Coverage | None = None
    ) -> list[Original]:
        rows = self.local.originals(model, request_ids, coverage)
        body = {"model": model, "request_ids": request_ids}

        def parse(doc: Any) -> list[Original]:
            return [Original(**OriginalRow.model_validate(r).model_dump()) for r in doc]

        answers = self._gather("/v1/fleet/originals", {}, parse, coverage, model, "POST", body)
        seen = {r.request_id for r in rows}
        for found in answers.values():
            for r in found:
                if r.request_id not in seen:
                    seen.add(r.request_id)
                    rows.append(r)
        return rows

    def calls(
        self,
        model: str,
        canary: str,
        stable: str,
        since: datetime,
        until: datetime,
        coverage: Coverage | None = None,
    ) -> CallWindow:
        cov = coverage if coverage is not None else Coverage()
        params = {"model": model, "canary": canary, "stable": stable}
        params.update(since=_when(since), until=_when(until))
        parts = {self.local.host: self.local.call_part(model, canary, stable, since, until)}
        parts.update(self._gather("/v1/fleet/calls", params, _columns, cov, model))
        counts = {host: len(p["ts_us"]) for host, p in parts.items()}
        self._learn_shares(model, counts, complete=not cov.missing)
        return call_window_of(concat(list(parts.values()), CALL_WINDOW_COLUMNS))

    def shadow_pairs(
        self,
        model: str,
        canary: str,
        stable: str,
        since: datetime,
        until: datetime,
        coverage: Coverage | None = None,
    ) -> PairCounts:
        params = {"model": model, "canary": canary, "stable": stable}
        params.update(since=_when(since), until=_when(until))
        total = self.local.shadow_pairs(model, canary, stable, since, until, coverage)
        pairs, disagreements = total.pairs, total.disagreements
        parse = PairTotals.model_validate
        for found in self._gather("/v1/fleet/pairs", params, parse, coverage, model).values():
            pairs += found.pairs
            disagreements += found.disagreements
        return PairCounts(pairs=pairs, disagreements=disagreements)

    def feature_counts(
        self,
        source: DriftSource,
        since: datetime,
        until: datetime,
        buckets: int = 1,
        only: list[int] | None = None,
        coverage: Coverage | None = None,
    ) -> FeatureCounts:
        vb = self.local.bins(source.model, source.version)
        indexes = only if only is not None else list(range(len(source.features)))
        since, until = minute_window(naive_utc(since), naive_utc(until))
        params: dict[str, Any] = {"model": source.model, "version": source.version}
        params.update(since=_when(since), until=_when(until), buckets=buckets, only=indexes)
        parts = [
            self.local.feature_part(source.model, source.version, since, until, buckets, indexes)
        ]
        expected = {k: v.shape for k, v in parts[0].items()}

        def parse(doc: Any) -> dict[str, Any]:
            part = _columns(doc)
            if {k: v.shape for k, v in part.items()} != expected:
                raise ValueError("counts on other bins (another reference sample?)")
            return part

        found = self._gather("/v1/fleet/features", params, parse, coverage, source.model)
        parts += found.values()
        return counts_on_bins(vb, indexes, buckets, sum_dense(parts))

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
        rows = self.local.confidence_counts(model, version, since, until, buckets, edges)
        params: dict[str, Any] = {"model": model, "version": version, "buckets": buckets}
        params.update(since=_when(naive_utc(since)), until=_when(naive_utc(until)), edges=edges)

        def parse(doc: Any) -> list[tuple[int, int, int]]:
            return [(c.bucket, c.bin, c.n) for c in map(ConfidenceCount.model_validate, doc)]

        answers = self._gather("/v1/fleet/confidence", params, parse, coverage, model)
        for found in answers.values():
            rows += found
        return rows

    def label_counts(
        self,
        source: DriftSource,
        since: datetime,
        until: datetime,
        buckets: int = 1,
        coverage: Coverage | None = None,
    ) -> dict[int, dict[str, int]] | None:
        vb = self.local.bins(source.model, source.version)
        if vb.reference_labels is None:
            return None
        since, until = minute_window(naive_utc(since), naive_utc(until))
        params: dict[str, Any] = {"model": source.model, "version": source.version}
        params.update(since=_when(since), until=_when(until), buckets=buckets)
        rows = self.local.label_part(source.model, source.version, since, until, buckets)

        def parse(doc: Any) -> list[tuple[int, str, int]]:
            return [(c.bucket, c.label, c.n) for c in map(LabelCount.model_validate, doc)]

        answers = self._gather("/v1/fleet/labels", params, parse, coverage, source.model)
        for found in answers.values():
            rows += found
        return label_counts_of(vb.reference_labels, rows)

    def latency(
        self,
        model: str | None,
        version: str | None,
        since: datetime,
        until: datetime,
        step_s: int,
        coverage: Coverage | None = None,
    ) -> list[LatencyPoint]:
        import numpy as np

        since, until = minute_window(naive_utc(since), naive_utc(until))
        step_s = whole_minutes(step_s)
        params: dict[str, Any] = {"model": model, "version": version, "step": step_s}
        params.update(since=_when(since), until=_when(until))
        series, calls, hist = self.local.latency_part(model, version, since, until, step_s)
        parts = [(series, calls, hist)]
        for found in self._gather(
            "/v1/fleet/latency", params, LatencyColumns.model_validate, coverage, model
        ).values():
            parts.append((found.versions, found.calls.arrays(), found.latency.arrays()))
        names = sorted({s for p in parts for s in p[0]})
        index = {name: i for i, name in enumerate(names)}
        call_parts, hist_parts = [], []
        for names_of, c, h in parts:
            remap = np.array([index[s] for s in names_of] or [0], dtype=np.int64)
            call_parts.append({**c, "series": remap[np.asarray(c["series"], dtype=np.int64)]})
            hist_parts.append({**h, "series": remap[np.asarray(h["series"], dtype=np.int64)]})
        return latency_points(
            names,
            concat(call_parts, CALL_COLUMNS),
            concat(hist_parts, LATENCY_COLUMNS),
            since,
            until,
            step_s,
            utcnow(),
        )

    def replicas(self, coverage: Coverage | None = None) -> list[ReplicaReport]:
        out = self.local.replicas(coverage)
        for rows in self._gather("/v1/fleet/replicas", {}, _replicas, coverage, None).values():
            out += rows
        return sorted(out, key=lambda r: (r.host, r.model, r.version, r.replica))

    def host_facts(
        self, since: datetime, until: datetime, coverage: Coverage | None = None
    ) -> list[HostFacts]:
        params = {"since": _when(since), "until": _when(until)}
        out = self.local.host_facts(since, until, coverage)
        found = self._gather(
            "/v1/fleet/host-facts", params, HostFacts.model_validate, coverage, None
        )
        return out + [found[host] for host in sorted(found)]

    def traffic(
        self, model: str, since: datetime, until: datetime, coverage: Coverage | None = None
    ) -> list[HostCounts]:
        cov = coverage if coverage is not None else Coverage()
        params = {"model": model, "since": _when(since), "until": _when(until)}
        out = self.local.traffic(model, since, until, cov)
        parse = HostCounts.model_validate
        out += list(self._gather("/v1/fleet/traffic", params, parse, cov, model).values())
        self._learn_shares(
            model, {h.host: sum(h.calls.values()) for h in out}, complete=not cov.missing
        )
        return sorted(out, key=lambda h: h.host)


def _rows(doc: Any) -> list[RequestRow]:
    return [RequestRow.model_validate(r) for r in doc]


def _columns(doc: Any) -> dict[str, Any]:
    return Columns.model_validate(doc).arrays()
