"""Spool → DuckDB with real files and a real DuckDB file."""

from __future__ import annotations

from agent.ingest import ingest_once, pending_files
from agent.store import REQUEST_COLUMNS, Store
from serve.request_record import SPOOL_COLUMNS
from serve.spool import SpoolWriter
from tests.records import make_record


def test_agent_table_matches_the_spool_contract(tmp_path):
    assert REQUEST_COLUMNS == SPOOL_COLUMNS
    store = Store(tmp_path / "a.duckdb")
    table = {r["column_name"]: r["column_type"] for r in store.query("DESCRIBE requests")}
    store.close()
    assert table == {**SPOOL_COLUMNS, "ingested_at": "TIMESTAMP"}


def write(spool, n, start=0, writer="rep1"):
    w = SpoolWriter(spool, writer)
    for i in range(start, start + n):
        w.append(make_record(i, replica=writer))
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


def test_a_keyed_requests_table_from_agent_0_1_0_is_migrated(tmp_path):
    import duckdb

    from agent.store import _columns_sql

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        f"CREATE TABLE requests ({_columns_sql(REQUEST_COLUMNS)}, ingested_at TIMESTAMP,"
        " PRIMARY KEY (request_id, role))"
    )
    con.execute("INSERT INTO requests (request_id, role, model) VALUES ('old-1', 'primary', 'm')")
    con.close()
    store = Store(path)
    assert store.query("SELECT count(*) AS n FROM requests")[0]["n"] == 1
    keys = store.query(
        "SELECT count(*) AS n FROM duckdb_constraints() WHERE table_name = 'requests'"
        " AND constraint_type = 'PRIMARY KEY'"
    )
    assert keys[0]["n"] == 0
    spool = tmp_path / "spool"
    write(spool, 5)
    assert ingest_once(store, spool).rows_inserted == 5
