"""The agent's DuckDB file: telemetry, ingested requests, audit, controller state.

DuckDB lets one process open the file read-write and no other process open it at all, so
the agent is the only reader and writer: everyone else reads through the HTTP API. Within
the agent, every thread works on its own cursor of the one connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from agent.summaries import SCHEMA as SUMMARY_SCHEMA
from agent.summaries import SUMMARY_TABLES, Summaries
from serve.model_store import ModelStore
from serve.request_record import SPOOL_COLUMNS

# The request spool contract, defined once where the routers write it.
REQUEST_COLUMNS: dict[str, str] = SPOOL_COLUMNS

HOST_COLUMNS = {
    "ts": "TIMESTAMP",
    "cpu_pct": "DOUBLE",
    "per_cpu": "DOUBLE[]",
    "load1": "DOUBLE",
    "load5": "DOUBLE",
    "load15": "DOUBLE",
    "mem_used": "BIGINT",
    "mem_total": "BIGINT",
    "mem_pct": "DOUBLE",
    "swap_used": "BIGINT",
    "swap_pct": "DOUBLE",
    "disk_used": "BIGINT",
    "disk_total": "BIGINT",
    "disk_pct": "DOUBLE",
    "disk_read_bps": "DOUBLE",
    "disk_write_bps": "DOUBLE",
    "net_sent_bps": "DOUBLE",
    "net_recv_bps": "DOUBLE",
}
GPU_COLUMNS = {
    "ts": "TIMESTAMP",
    "gpu_index": "INTEGER",
    "uuid": "VARCHAR",
    "name": "VARCHAR",
    "util_gpu": "DOUBLE",
    "util_mem": "DOUBLE",
    "util_enc": "DOUBLE",
    "util_dec": "DOUBLE",
    "mem_used": "BIGINT",
    "mem_total": "BIGINT",
    "temp_c": "DOUBLE",
    "power_w": "DOUBLE",
    "power_limit_w": "DOUBLE",
    "sm_clock_mhz": "DOUBLE",
    "mem_clock_mhz": "DOUBLE",
    "throttle_reasons": "VARCHAR[]",
    "ecc_uncorrected": "BIGINT",
    "remapped_rows": "BIGINT",
    "processes": "VARCHAR",
    "xid_errors": "BIGINT",
    "last_xid": "INTEGER",
}
SERVE_COLUMNS = {
    "ts": "TIMESTAMP",
    "app": "VARCHAR",
    "deployment": "VARCHAR",
    "status": "VARCHAR",
    "message": "VARCHAR",
    "problem": "VARCHAR",
    "replicas": "VARCHAR",
    "replica_ids": "VARCHAR",  # JSON list: a replaced replica shows even if the counts do not
}
# Numeric host/GPU columns kept as 1-minute aggregates after the raw retention.
HOST_ROLLUP = [
    "cpu_pct",
    "load1",
    "mem_pct",
    "swap_pct",
    "disk_pct",
    "disk_read_bps",
    "disk_write_bps",
    "net_sent_bps",
    "net_recv_bps",
]
GPU_ROLLUP = ["util_gpu", "util_mem", "mem_used", "temp_c", "power_w"]


# A batch job's record (agent/schemas/batch.py's BatchJob; its lists and objects as JSON).
BATCH_COLUMNS = {
    "id": "VARCHAR",
    "model": "VARCHAR",
    "selector": "VARCHAR",
    "version": "VARCHAR",
    "sha256": "VARCHAR",
    "input": "VARCHAR",
    "input_sha256": "VARCHAR",
    "files": "INTEGER",
    "output": "VARCHAR",
    "format": "VARCHAR",
    "state": "VARCHAR",
    "who": "VARCHAR",
    "schedule": "VARCHAR",
    "started_at": "TIMESTAMP",
    "ended_at": "TIMESTAMP",
    "total": "BIGINT",
    "read": "BIGINT",
    "scored": "BIGINT",
    "rejected": "BIGINT",
    "duration_s": "DOUBLE",
    "provider": "VARCHAR",
    "nodes": "VARCHAR",
    "phases": "VARCHAR",
    "timeline": "VARCHAR",
    "drift": "VARCHAR",
    "error": "VARCHAR",
}


class StoreLocked(RuntimeError):
    """Another process holds the DuckDB file."""


def _columns_sql(columns: dict[str, str]) -> str:
    return ", ".join(f'"{name}" {kind}' for name, kind in columns.items())


def _rollup_sql(columns: list[str]) -> str:
    return ", ".join(f'"{c}_avg" DOUBLE, "{c}_max" DOUBLE' for c in columns)


SCHEMA = (
    f"""
CREATE TABLE IF NOT EXISTS host_samples ({_columns_sql(HOST_COLUMNS)});
CREATE TABLE IF NOT EXISTS host_rollup (ts TIMESTAMP PRIMARY KEY, {_rollup_sql(HOST_ROLLUP)},
    samples INTEGER);
CREATE TABLE IF NOT EXISTS gpu_samples ({_columns_sql(GPU_COLUMNS)});
CREATE TABLE IF NOT EXISTS gpu_rollup (ts TIMESTAMP, uuid VARCHAR, gpu_index INTEGER,
    {_rollup_sql(GPU_ROLLUP)}, samples INTEGER, PRIMARY KEY (ts, uuid));
CREATE TABLE IF NOT EXISTS serve_samples ({_columns_sql(SERVE_COLUMNS)});
-- (request_id, role) is the key; ingest enforces it (an index would halve the ingest rate).
CREATE TABLE IF NOT EXISTS requests ({_columns_sql(REQUEST_COLUMNS)}, ingested_at TIMESTAMP);
CREATE SEQUENCE IF NOT EXISTS audit_id;
CREATE TABLE IF NOT EXISTS audit (id BIGINT PRIMARY KEY DEFAULT nextval('audit_id'),
    ts TIMESTAMP, who VARCHAR, action VARCHAR, model VARCHAR, request VARCHAR,
    before VARCHAR, after VARCHAR, result VARCHAR, error VARCHAR);
CREATE TABLE IF NOT EXISTS kv (key VARCHAR PRIMARY KEY, value VARCHAR, updated TIMESTAMP);
-- Every routing table a model was given, numbered: what served a call, and when.
CREATE TABLE IF NOT EXISTS routing_history (model VARCHAR, route_version BIGINT, ts TIMESTAMP,
    "table" VARCHAR, who VARCHAR, action VARCHAR, PRIMARY KEY (model, route_version));
-- Ground truth joined to the call it answers (agent/feedback.py): ts is the prediction's.
CREATE TABLE IF NOT EXISTS feedback (model VARCHAR, request_id VARCHAR, version VARCHAR,
    ts TIMESTAMP, predicted VARCHAR, truth VARCHAR, value DOUBLE, correct BOOLEAN,
    abs_error DOUBLE, truth_at TIMESTAMP, received_at TIMESTAMP,
    PRIMARY KEY (model, request_id));
-- Batch jobs (agent/batch_jobs.py): one row per job, kept up to date while it runs.
CREATE TABLE IF NOT EXISTS batch_jobs ({_columns_sql(BATCH_COLUMNS)}, PRIMARY KEY (id));
"""
    + SUMMARY_SCHEMA
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


class Store:
    def __init__(
        self,
        path: Path | str,
        threads: int | None = None,
        memory_limit: str | None = None,
        model_store: Path | str | None = None,
    ) -> None:
        """`model_store`: where versions' reference samples are, to summarise input features
        at ingest (without one, calls, latency and labels are still summarised)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, str | bool | int | float | list[str]] = {}
        if threads is not None:
            config["threads"] = threads
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        try:
            self.con = duckdb.connect(str(self.path), config=config)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLocked(
                    f"{self.path} is held by another process ({exc}). Only one agent may use a"
                    " data folder: stop the other agent, or give this one its own data_dir."
                ) from exc
            raise
        self._write_lock = threading.Lock()
        self.con.execute(SCHEMA)
        self._drop_request_key()
        self._add_columns("requests", REQUEST_COLUMNS)
        self._add_columns("gpu_samples", GPU_COLUMNS)
        self._add_columns("serve_samples", SERVE_COLUMNS)
        self._add_columns("batch_jobs", BATCH_COLUMNS)
        self.summaries = Summaries(ModelStore(model_store) if model_store else None)

    def _add_columns(self, table: str, columns: dict[str, str]) -> None:
        """Files from older agents lack columns their tables gained since."""
        have = {
            r[0]
            for r in self.con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]
            ).fetchall()
        }
        for name, kind in columns.items():
            if name not in have:
                self.con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind}')

    def _drop_request_key(self) -> None:
        """Files from agent 0.1.0 kept a primary key on requests; ingest dedups without it
        now, and the index made a reused client request id fail a whole spool file."""
        keyed = self.con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'requests'"
            " AND constraint_type = 'PRIMARY KEY'"
        ).fetchall()[0][0]
        if keyed:
            self.con.execute("BEGIN")
            self.con.execute("CREATE TABLE requests_unkeyed AS SELECT * FROM requests")
            self.con.execute("DROP TABLE requests")
            self.con.execute("ALTER TABLE requests_unkeyed RENAME TO requests")
            self.con.execute("COMMIT")

    def close(self) -> None:
        try:
            self.con.execute("CHECKPOINT")
        finally:
            self.con.close()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self.con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        with self.cursor() as cur:
            rel = cur.execute(sql, params or [])
            names = [d[0] for d in rel.description]
            return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]

    def query_arrays(self, sql: str, params: Any = None) -> dict[str, Any]:
        """Columns as numpy arrays: for analyses over many rows (no Python object per row)."""
        with self.cursor() as cur:
            return cur.execute(sql, params or []).fetchnumpy()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self._write_lock, self.cursor() as cur:
            cur.execute(sql, params or [])

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside BEGIN ... COMMIT, holding the write lock: writers take turns, and
        an exception rolls the whole transaction back."""
        with self._write_lock, self.cursor() as cur:
            cur.execute("BEGIN")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                # A failed COMMIT has rolled back already; ROLLBACK then raises "no
                # transaction is active", which must not hide the real error.
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
                raise

    # -- telemetry --------------------------------------------------------------------------
    def insert_rows(self, table: str, columns: dict[str, str], rows: list[dict[str, Any]]) -> None:
        self.insert_batches({table: (columns, rows)})

    def insert_batches(
        self, batches: dict[str, tuple[dict[str, str], list[dict[str, Any]]]]
    ) -> None:
        """Rows for several tables in one transaction (one commit)."""
        batches = {t: (c, rows) for t, (c, rows) in batches.items() if rows}
        if not batches:
            return
        with self.transaction() as cur:
            for table, (columns, rows) in batches.items():
                names = list(columns)
                # One statement per table: DuckDB's executemany costs ~1 ms per row.
                one = "(" + ", ".join("?" for _ in names) + ")"
                values = [row.get(n) for row in rows for n in names]
                cur.execute(
                    f"INSERT INTO {table} ({', '.join(names)})"
                    f" VALUES {', '.join([one] * len(rows))}",
                    values,
                )

    def telemetry(
        self,
        table: str,
        keys: list[str],
        since: datetime,
        until: datetime,
        step_s: int,
        group: str | None = None,
    ) -> list[dict[str, Any]]:
        """Raw samples bucketed by `step_s`, with older time filled from the rollups."""
        rollup = {"host_samples": "host_rollup", "gpu_samples": "gpu_rollup"}[table]
        group_sel = f", {group}" if group else ""
        raw_aggs = ", ".join(f'avg("{k}") AS "{k}", max("{k}") AS "{k}_max"' for k in keys)
        roll_aggs = ", ".join(
            f'sum("{k}_avg" * samples) / sum(samples) AS "{k}", max("{k}_max") AS "{k}_max"'
            for k in keys
        )
        sql = f"""
        WITH raw AS (
            SELECT time_bucket(to_seconds(?), ts) AS t{group_sel}, {raw_aggs}, count(*) AS samples
            FROM {table} WHERE ts >= ? AND ts < ? GROUP BY ALL
        ), old AS (
            SELECT time_bucket(to_seconds(?), ts) AS t{group_sel}, {roll_aggs},
                   sum(samples)::BIGINT AS samples
            FROM {rollup} WHERE ts >= ? AND ts < ?
              AND ts < coalesce((SELECT min(ts) FROM {table}), ?) GROUP BY ALL
        )
        SELECT * FROM (SELECT * FROM old UNION ALL BY NAME SELECT * FROM raw)
        ORDER BY t{group_sel}
        """
        params = [step_s, since, until, step_s, since, until, until]
        return self.query(sql, params)

    def latest(self, table: str, order: str = "ts") -> list[dict[str, Any]]:
        return self.query(
            f"SELECT * FROM {table} WHERE ts = (SELECT max(ts) FROM {table}) ORDER BY {order}"
        )

    # -- retention ---------------------------------------------------------------------------
    def apply_retention(
        self,
        raw_hours: float,
        rollup_step_s: int,
        rollup_days: float,
        requests_days: float,
        summary_days: float = 30,
    ) -> dict[str, int]:
        """Roll raw samples older than `raw_hours` into aggregates, then drop them."""
        now = utcnow()
        raw_cut = now - timedelta(hours=raw_hours)
        out: dict[str, int] = {}
        host_aggs = ", ".join(f'avg("{c}"), max("{c}")' for c in HOST_ROLLUP)
        gpu_aggs = ", ".join(f'avg("{c}"), max("{c}")' for c in GPU_ROLLUP)
        with self.transaction() as cur:
            cur.execute(
                f"INSERT OR REPLACE INTO host_rollup SELECT time_bucket(to_seconds(?), ts) AS t,"
                f" {host_aggs}, count(*) FROM host_samples WHERE ts < ? GROUP BY t",
                [rollup_step_s, raw_cut],
            )
            cur.execute(
                f"INSERT OR REPLACE INTO gpu_rollup SELECT time_bucket(to_seconds(?), ts) AS t,"
                f" uuid, any_value(gpu_index), {gpu_aggs}, count(*) FROM gpu_samples"
                f" WHERE ts < ? GROUP BY t, uuid",
                [rollup_step_s, raw_cut],
            )
            summary_cut = now - timedelta(days=summary_days)
            for table, cut in (
                *((t, summary_cut) for t in SUMMARY_TABLES),
                ("host_samples", raw_cut),
                ("gpu_samples", raw_cut),
                ("serve_samples", raw_cut),
                ("host_rollup", now - timedelta(days=rollup_days)),
                ("gpu_rollup", now - timedelta(days=rollup_days)),
                ("requests", now - timedelta(days=requests_days)),
                ("feedback", summary_cut),  # small, and accuracy over time reads it
            ):
                column = "minute" if table in SUMMARY_TABLES else "ts"
                deleted = cur.execute(f"DELETE FROM {table} WHERE {column} < ?", [cut]).fetchall()
                out[table] = int(deleted[0][0]) if deleted else 0
        return out

    # -- key/value state ---------------------------------------------------------------------
    def get_state(self, key: str) -> Any:
        rows = self.query("SELECT value FROM kv WHERE key = ?", [key])
        return json.loads(rows[0]["value"]) if rows else None

    def put_state(self, key: str, value: Any) -> None:
        self.execute(
            "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", [key, json.dumps(value), utcnow()]
        )

    def put_states(
        self, states: dict[str, Any], history: tuple[str, int, Any, str, str] | None = None
    ) -> None:
        """Several keys, and a row of the routing history (model, route_version, table, who,
        action), in one transaction: all of it is stored, or none."""
        with self.transaction() as cur:
            for key, value in states.items():
                cur.execute(
                    "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", [key, json.dumps(value), utcnow()]
                )
            if history is not None:
                model, route_version, table, who, action = history
                cur.execute(
                    "INSERT OR REPLACE INTO routing_history VALUES (?, ?, ?, ?, ?, ?)",
                    [model, route_version, utcnow(), json.dumps(table), who, action],
                )

    # -- audit ---------------------------------------------------------------------------------
    def audit(
        self,
        who: str,
        action: str,
        model: str | None,
        request: Any,
        before: Any,
        after: Any,
        result: str,
        error: str | None = None,
    ) -> int:
        with self._write_lock, self.cursor() as cur:
            row = cur.execute(
                "INSERT INTO audit (ts, who, action, model, request, before, after, result, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [
                    utcnow(),
                    who,
                    action,
                    model,
                    json.dumps(request),
                    json.dumps(before),
                    json.dumps(after),
                    result,
                    error,
                ],
            ).fetchall()
        return int(row[0][0])

    def file_size(self) -> int:
        total = 0
        for suffix in ("", ".wal"):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                total += os.path.getsize(p)
        return total
