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


def big(i: int) -> RequestRecord:
    """A record of ~5 KB (a request of 600 numbers), written as it comes: a Parquet file
    of them is about as big as the text."""
    numbers = ",".join(f"{(i * 7919 + k) % 100003 / 7.0:.6f}" for k in range(600))
    return record(i, input=f'{{"instances": [[{numbers}]]}}')


def on_disk(folder) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def test_the_spool_bound_is_in_bytes_and_nothing_waiting_is_lost(tmp_path):
    """Before: the bound was checked before a flush only, and the buffer counted records, so
    one flush wrote 4.8 MB into a spool bounded at 1 MiB."""
    bound = 1 << 20
    spool = SpoolWriter(tmp_path, "rep1", max_bytes=bound)
    for i in range(1000):  # ~5 MB offered
        spool.append(big(i))
    held = spool.pending()
    assert spool.pending_bytes() <= bound  # memory holds what the spool could, no more
    assert spool.dropped == 1000 - held > 0
    total = 0
    while (more := spool.flush()) > 0:
        total += more
    assert on_disk(tmp_path) <= bound  # the files DuckDB wrote, measured
    assert spool.pending() == held - total  # what did not fit (if any) waits in memory
    while spool.pending():  # the agent ingests (and deletes) what is there
        for f in tmp_path.glob("*.parquet"):
            f.unlink()
        total += spool.flush()
        assert on_disk(tmp_path) <= bound
    assert total == held and spool.dropped == 1000 - held


def test_memory_is_bounded_in_bytes_and_what_overflows_is_counted(tmp_path):
    spool = SpoolWriter(tmp_path, "rep1", max_bytes=200_000, max_buffer_bytes=100_000)
    (tmp_path / "not-ingested-yet.parquet").write_bytes(b"x" * 200_000)  # the spool is full
    for i in range(50):  # ~250 KB against a 100 KB buffer
        spool.append(big(i))
    assert spool.pending_bytes() <= 100_000
    assert spool.dropped == 50 - spool.pending() > 0
    assert spool.flush() == 0  # nothing fits on disk: held, not dropped
    assert spool.dropped == 50 - spool.pending()
    (tmp_path / "not-ingested-yet.parquet").unlink()  # the agent caught up
    spool.append(record(99))
    waiting = spool.pending()
    assert spool.flush() == waiting
    [(dropped_total,)] = duckdb.sql(
        f"SELECT max(dropped_total) FROM '{tmp_path}/*.parquet'"
    ).fetchall()
    assert dropped_total == spool.dropped  # every file says how many were lost so far


def test_buffer_bound_drops_instead_of_growing(tmp_path):
    spool = SpoolWriter(tmp_path, "rep1", max_buffered=10)
    for i in range(25):
        spool.append(record(i))
    assert spool.pending() == 10 and spool.dropped == 15


def test_a_failed_write_keeps_the_records_for_the_next_flush(tmp_path):
    """A write that fails is reported and retried, not taken for bad data (nor dropped)."""
    folder = tmp_path / "s"
    spool = SpoolWriter(folder, "rep1")
    spool.append(record(1))
    folder.rmdir()  # the folder is gone (or unwritable): the write fails, nothing raises
    assert spool.flush() == 0
    assert spool.write_errors == 1 and spool.last_error and spool.pending() == 1
    assert spool.dropped == 0 and not tmp_path.joinpath("s").exists()
    folder.mkdir(mode=0o700)
    assert spool.flush() == 1
    assert duckdb.sql(f"SELECT count(*) FROM '{folder}/*.parquet'").fetchall() == [(1,)]
