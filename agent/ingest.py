"""Spool → DuckDB: read the routers' Parquet files natively, insert idempotently, fold what was
new into the per-minute summaries, then delete the files.

The router's `call_id` is the key (older files without one: request_id + role), so a crash
between the commit and the deletion only means the same files are read again and their rows
skipped, and nothing is folded twice. A file is set aside (to `bad/`) only when DuckDB cannot
read *it*; when the write fails (a full disk, any commit error) the files stay in the spool,
the error is raised as an IngestWriteError with DuckDB's own message, and the next ingest
tries again. Nothing already stored is lost either way.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from agent.store import REQUEST_COLUMNS, Store
from agent.traffic_metrics import Traffic, traffic_of

log = logging.getLogger("trackside.agent.ingest")
MAX_FILES_PER_BATCH = 2000
BAD = "bad"
# The log's key: the router's own call id; files from before it existed fall back to the
# client's request id and the role.
KEY = "coalesce({t}.call_id, {t}.request_id || chr(0) || {t}.role)"


class IngestWriteError(RuntimeError):
    """DuckDB could read the spool files but not store them; they stay in the spool."""


@dataclass(frozen=True)
class IngestResult:
    files: int
    rows_read: int
    rows_inserted: int
    quarantined: int
    seconds: float
    folded: int = 0  # calls folded into the summaries
    fold_seconds: float = 0.0
    traffic: Traffic = field(default_factory=Traffic)  # what was stored, for /metrics


@dataclass
class Quarantine:
    """Files DuckDB cannot read: moved to `bad/` when the spool is writable, otherwise
    remembered and skipped, so one unreadable file never stops the readable ones."""

    skipped: set[str] = field(default_factory=set)
    total: int = 0

    def set_aside(self, spool: Path, path: Path, reason: str) -> None:
        self.total += 1
        bad = spool / BAD
        try:
            bad.mkdir(exist_ok=True)
            shutil.move(str(path), bad / path.name)
        except OSError as exc:
            self.skipped.add(path.name)
            log.error(
                "spool file %s cannot be read (%s) nor moved to %s (%s); skipping it",
                path.name,
                reason,
                bad,
                exc,
            )
            return
        log.error("spool file %s could not be read (%s); moved to %s", path.name, reason, bad)


_QUARANTINES: dict[Path, Quarantine] = {}


def quarantine_of(spool: Path) -> Quarantine:
    return _QUARANTINES.setdefault(spool.resolve(), Quarantine())


def pending_files(spool: Path, skip: set[str] | None = None) -> list[Path]:
    if not spool.is_dir():
        return []
    skip = skip or set()
    # Writers use a dot-prefixed temporary name until the atomic rename.
    return sorted(
        p for p in spool.glob("*.parquet") if not p.name.startswith(".") and p.name not in skip
    )


def _insert(store: Store, files: list[Path]) -> tuple[int, int, int, float, Traffic]:
    select = ", ".join(f'"{c}"::{t} AS "{c}"' for c, t in REQUEST_COLUMNS.items())
    names = [str(f) for f in files]
    columns = ", ".join(f'"{c}"' for c in REQUEST_COLUMNS)
    with store.transaction() as cur:
        # Row counts from the Parquet footers: the data itself is read once, below.
        read = cur.execute(
            "SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata(?)", [names]
        ).fetchall()[0][0]
        # Idempotent without a key index (which cost ~60% of the ingest rate): a row read
        # again after a crash carries the ts it had, so only stored rows at or after the
        # batch's earliest ts can be its duplicate, and the ts zone maps skip the rest.
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE batch AS SELECT {select}"
            " FROM read_parquet(?, union_by_name = true) AS b"
            " WHERE NOT EXISTS (SELECT 1 FROM requests r"
            "   WHERE r.ts >= (SELECT min(ts) FROM read_parquet(?, union_by_name = true))"
            f"   AND {KEY.format(t='r')} = {KEY.format(t='b')})",
            [names, names],
        )
        cur.execute(
            f"INSERT INTO requests ({columns}, ingested_at)"
            f" SELECT {columns}, now()::TIMESTAMP FROM batch"
        )
        (inserted,) = cur.execute("SELECT count(*) FROM batch").fetchone() or (0,)
        t0 = time.perf_counter()
        folded = store.summaries.fold(cur, "batch")
        fold_s = time.perf_counter() - t0
        traffic = traffic_of(cur, "batch")
        cur.execute("DROP TABLE batch")
    return int(read), int(inserted), folded, fold_s, traffic


def _unreadable(store: Store, path: Path) -> str | None:
    """Why DuckDB cannot read this file (a read, no write), or None when it can."""
    try:
        with store.cursor() as cur:
            cur.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchall()
    except duckdb.Error as exc:
        return str(exc).splitlines()[0]
    return None


def ingest_once(store: Store, spool: Path, delete: bool = True) -> IngestResult:
    started = time.perf_counter()
    quarantine = quarantine_of(spool)
    files = pending_files(spool, quarantine.skipped)[:MAX_FILES_PER_BATCH]
    if not files:
        return IngestResult(0, 0, 0, 0, 0.0)
    quarantined = 0
    try:
        read, inserted, folded, fold_s, traffic = _insert(store, files)
    except duckdb.Error as first:
        # Either a file DuckDB cannot read, or a write that failed: reading each file alone
        # tells them apart without writing anything.
        good = []
        for f in files:
            reason = _unreadable(store, f)
            if reason is None:
                good.append(f)
            else:
                quarantine.set_aside(spool, f, reason)
                quarantined += 1
        if len(good) == len(files):
            raise IngestWriteError(
                f"could not store {len(files)} spool files: {first}; they stay in {spool}"
                " and are ingested when the write succeeds"
            ) from first
        files = good
        try:
            read, inserted, folded, fold_s, traffic = (
                _insert(store, files) if files else (0, 0, 0, 0.0, Traffic())
            )
        except duckdb.Error as second:
            raise IngestWriteError(
                f"could not store {len(files)} spool files: {second}; they stay in {spool}"
            ) from second
    if delete:
        for f in files:
            f.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    return IngestResult(len(files), read, inserted, quarantined, seconds, folded, fold_s, traffic)


def bad_files(spool: Path) -> tuple[int, int]:
    """Files set aside in `bad/`, and their bytes."""
    folder = spool / BAD
    if not folder.is_dir():
        return 0, 0
    found = [p for p in folder.iterdir() if p.is_file()]
    return len(found), sum(p.stat().st_size for p in found)


def clean_bad(spool: Path, older_than_s: float) -> int:
    """Delete set-aside files older than `older_than_s` (they were kept for a person to
    look at; the retention of the request log applies to them too)."""
    folder = spool / BAD
    if not folder.is_dir():
        return 0
    cut = time.time() - older_than_s
    removed = 0
    for p in folder.iterdir():
        try:
            if p.is_file() and p.stat().st_mtime < cut:
                p.unlink()
                removed += 1
        except OSError as exc:
            log.warning("could not remove %s: %s", p, exc)
    return removed
