"""A full disk under the agent's DuckDB during ingest: the spool files stay where they are
(never set aside as bad), the error says what happened, and every row is ingested once the
space comes back. Real DuckDB file, real spool files, a real (small, filled) tmpfs."""

from __future__ import annotations

import pytest

from agent.ingest import IngestWriteError, bad_files, ingest_once, pending_files
from agent.store import Store
from serve.spool import SpoolWriter
from tests.records import make_record
from tests.reliability.tmpfs import fill, small_disk


def spool(folder, n: int, start: int = 0) -> None:
    w = SpoolWriter(folder, f"rep{start}")
    for i in range(start, start + n):
        w.append(make_record(i, input='{"instances": [[' + ",".join(["1.0"] * 64) + "]]}"))
    w.flush()


def test_disk_full_keeps_the_spool_and_resumes_when_space_returns(tmp_path):
    with small_disk(tmp_path / "disk", "16m") as disk:
        store = Store(disk / "agent.duckdb")
        queue = tmp_path / "spool"
        spool(queue, 500)
        assert ingest_once(store, queue).rows_inserted == 500
        filler = fill(disk)
        stored = 0
        for batch in range(40):  # until the file can grow no more
            spool(queue, 2000, start=1000 + batch * 2000)
            try:
                stored += ingest_once(store, queue).rows_inserted
            except IngestWriteError as exc:
                assert "No space left on device" in str(exc) or "space" in str(exc).lower()
                assert "no transaction is active" not in str(exc)
                break
        else:
            pytest.fail("the disk never filled")
        waiting = pending_files(queue)
        assert waiting and bad_files(queue) == (0, 0)  # kept, not set aside
        filler.unlink()
        while ingest_once(store, queue).files:
            pass
        total = store.query("SELECT count(*) AS n FROM requests")[0]["n"]
        assert total == 500 + 2000 * (batch + 1)  # every row written, once
        assert pending_files(queue) == []
        store.close()
