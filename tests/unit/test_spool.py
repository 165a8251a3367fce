"""The spool writer against real files, read back with DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from serve.request_record import SPOOL_COLUMNS, RequestRecord
from serve.spool import SpoolWriter
from tests.records import make_record


def record(i: int, **kw) -> RequestRecord:
    return make_record(
        i,
        ts=datetime(2026, 1, 1, 12, 0, i % 60, tzinfo=UTC),
        route_version=3,
        replica="rep1",
        **kw,
    )


def test_flush_writes_one_parquet_file_with_the_contract_schema(tmp_path):
    spool = SpoolWriter(tmp_path, "rep1")
    for i in range(100):
        spool.append(record(i, error=None if i % 2 else "boom", primary_request_id=None))
    assert spool.flush() == 100
    assert spool.flush() == 0
    files = list(tmp_path.glob("*.parquet"))
    assert len(files) == 1 and not list(tmp_path.glob(".*"))
    described = duckdb.sql(f"DESCRIBE SELECT * FROM '{files[0]}'").fetchall()
    assert [(r[0], r[1]) for r in described] == list(SPOOL_COLUMNS.items())
    rows = duckdb.sql(
        f"SELECT count(*), count(error), min(ts), max(dropped_total) FROM '{files[0]}'"
    ).fetchall()[0]
    assert rows[0] == 100 and rows[1] == 50 and rows[2] == datetime(2026, 1, 1, 12, 0, 0)
    assert rows[3] == 0


def test_over_the_bound_records_are_dropped_and_counted(tmp_path):
    spool = SpoolWriter(tmp_path, "rep1", max_bytes=1)
    spool.append(record(1))
    assert spool.flush() == 1  # the folder was empty
    spool.append(record(2))
    spool.append(record(3))
    assert spool.flush() == 0
    assert spool.dropped == 2
    spool.max_bytes = 1 << 30
    spool.append(record(4))
    spool.flush()
    total = duckdb.sql(
        f"SELECT max(dropped_total), count(*) FROM '{tmp_path}/*.parquet'"
    ).fetchall()[0]
    assert total == (2, 2)


def test_buffer_bound_drops_instead_of_growing(tmp_path):
    spool = SpoolWriter(tmp_path, "rep1", max_buffered=10)
    for i in range(25):
        spool.append(record(i))
    assert spool.pending() == 10 and spool.dropped == 15


def test_unwritable_folder_drops_without_raising(tmp_path):
    spool = SpoolWriter(tmp_path / "s", "rep1")
    (tmp_path / "s").chmod(0o500)
    try:
        spool.append(record(1))
        import os

        if os.geteuid() == 0:  # root ignores permissions: remove the folder instead
            (tmp_path / "s").chmod(0o700)
            (tmp_path / "s").rmdir()
        assert spool.flush() == 0
        assert spool.dropped == 1
    finally:
        if (tmp_path / "s").exists():
            (tmp_path / "s").chmod(0o700)
