"""Spool → DuckDB with real files and a real DuckDB file."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.ingest import ingest_once, pending_files
from agent.store import REQUEST_COLUMNS, Store
from serve.request_record import SPOOL_COLUMNS, RequestRecord
from serve.spool import SpoolWriter


def test_agent_table_matches_the_spool_contract():
    assert REQUEST_COLUMNS == SPOOL_COLUMNS


def write(spool, n, start=0, writer="rep1"):
    w = SpoolWriter(spool, writer)
    for i in range(start, start + n):
        w.append(
            RequestRecord(
                request_id=f"r{i}",
                ts=datetime.now(UTC),
                model="digits",
                version="v1",
                role="primary",
                route_version=1,
                status=200,
                error=None,
                latency_ms=1.0,
                total_ms=2.0,
                input="{}",
                output="{}",
                sha256="x",
                host="h",
                replica=writer,
            )
        )
    w.flush()


def test_exact_counts_and_files_deleted_after_commit(tmp_path):
    store = Store(tmp_path / "a.duckdb")
    spool = tmp_path / "spool"
    write(spool, 100)
    write(spool, 50, start=100, writer="rep2")
    result = ingest_once(store, spool)
    assert (result.files, result.rows_read, result.rows_inserted) == (2, 150, 150)
    assert pending_files(spool) == []
    assert store.query("SELECT count(*) AS n FROM requests")[0]["n"] == 150


def test_reingesting_the_same_files_adds_nothing(tmp_path):
    # A crash between commit and delete leaves the files: the next pass must not duplicate.
    store = Store(tmp_path / "a.duckdb")
    spool = tmp_path / "spool"
    write(spool, 80)
    assert ingest_once(store, spool, delete=False).rows_inserted == 80
    again = ingest_once(store, spool)
    assert (again.rows_read, again.rows_inserted) == (80, 0)
    assert store.query("SELECT count(*) AS n FROM requests")[0]["n"] == 80


def test_a_corrupt_file_is_set_aside_and_the_rest_ingested(tmp_path):
    store = Store(tmp_path / "a.duckdb")
    spool = tmp_path / "spool"
    write(spool, 10)
    (spool / "0000-garbage.parquet").write_bytes(b"not parquet")
    result = ingest_once(store, spool)
    assert (result.rows_inserted, result.quarantined) == (10, 1)
    assert (spool / "bad" / "0000-garbage.parquet").exists()
    assert pending_files(spool) == []


def test_temporary_files_are_left_alone(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / ".123-x.parquet.tmp").write_bytes(b"half")
    assert pending_files(spool) == []
