"""The request spool: routers buffer records and write them as Parquet files, atomically.

Files are written through an in-memory DuckDB (no JSON is produced here), to a dot-prefixed
temporary name, then renamed, so the agent only ever sees whole files. Appending never
blocks or raises.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import fields
from pathlib import Path

import duckdb
import numpy as np

from serve.request_record import SPOOL_COLUMNS, RequestRecord

log = logging.getLogger("trackside.spool")
SUFFIX = ".parquet"
_RECORD_FIELDS = [f.name for f in fields(RequestRecord)]


def spool_bytes(folder: Path) -> int:
    total = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0
    return total


# What a record costs beyond its text fields, and a Parquet file beyond its records: enough
# that the estimate stays above the file DuckDB writes (which compresses).
RECORD_OVERHEAD = 160
FILE_OVERHEAD = 16 << 10


def record_bytes(record: RequestRecord) -> int:
    texts = (getattr(record, name) for name in _RECORD_FIELDS)
    return RECORD_OVERHEAD + sum(len(v) for v in texts if isinstance(v, str))


class SpoolWriter:
    """Both bounds are in bytes: `max_bytes` on disk (checked before a file is made, and
    its real size checked again before it is renamed into the spool), `max_buffer_bytes` in
    memory. Records that do not fit on disk yet wait in memory for the agent to make room;
    a failed write keeps them for the next flush. Only what overflows memory is dropped,
    and counted."""

    def __init__(
        self,
        folder: Path | str,
        writer_id: str,
        max_bytes: int = 256 << 20,
        max_buffered: int = 50_000,
        max_buffer_bytes: int = 64 << 20,
    ) -> None:
        self.folder = Path(folder)
        # Records hold requests and answers: the folder and its files are the owner's only.
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.writer_id = writer_id.replace("/", "_")
        self.max_bytes = max_bytes
        self.max_buffered = max_buffered
        self.buffer_cap = max_buffer_bytes
        self.dropped = 0
        self.shadows_shed = 0  # the router's count, written with every file as dropped is
        self.written = 0
        self.files = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self._buffer: list[tuple[RequestRecord, int]] = []
        self._buffer_bytes = 0
        self._lock = threading.Lock()  # append (event loop) vs flush (worker thread)
        self._flush_lock = threading.Lock()
        self._seq = 0
        self._full_since: float | None = None  # said once per episode, not every flush
        self._con = duckdb.connect(":memory:")

    def append(self, record: RequestRecord) -> None:
        size = record_bytes(record)
        with self._lock:
            if (
                len(self._buffer) >= self.max_buffered
                or self._buffer_bytes + size > self.max_buffer_bytes
            ):
                self.dropped += 1
                return
            self._buffer.append((record, size))
            self._buffer_bytes += size

    @property
    def max_buffer_bytes(self) -> int:
        """Memory holds at most what the spool could: a tiny bound buffers little."""
        return min(self.buffer_cap, self.max_bytes)

    def pending(self) -> int:
        return len(self._buffer)

    def pending_bytes(self) -> int:
        return self._buffer_bytes

    def flush(self) -> int:
        """Write what is buffered and fits under the bound as one file; returns the number of
        records written. Never raises: a router must answer whatever the disk does."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer, self._buffer_bytes = self._buffer, [], 0
            if not batch:
                return 0
            room = self.max_bytes - spool_bytes(self.folder)
            fits, estimate = 0, FILE_OVERHEAD
            for _, size in batch:
                if estimate + size > room:
                    break
                fits, estimate = fits + 1, estimate + size
            written = 0
            if fits:
                try:
                    written = fits if self._write([r for r, _ in batch[:fits]], room) else 0
                except Exception as exc:  # a full disk must not take the router down
                    self.write_errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._say_full(f"could not write a spool file ({self.last_error})")
            if not written:
                self._say_full(f"full (its bound is {self.max_bytes} bytes)")
            else:
                self.written += written
                self.files += 1
                if self._full_since is not None:
                    log.warning("spool %s takes records again", self.folder)
                    self._full_since = None
            self._hold(batch[written:])
            return written

    def _say_full(self, why: str) -> None:
        if self._full_since is None:
            self._full_since = time.monotonic()
            log.warning(
                "spool %s: %s; records wait in memory (at most %d bytes), then are dropped"
                " and counted",
                self.folder,
                why,
                self.max_buffer_bytes,
            )

    def _hold(self, rest: list[tuple[RequestRecord, int]]) -> None:
        """Put what was not written back in front of what arrived meanwhile; the oldest go
        first when memory is over its bound."""
        if not rest:
            return
        with self._lock:
            merged = rest + self._buffer
            total = sum(size for _, size in merged)
            drop = 0
            while drop < len(merged) and (
                total > self.max_buffer_bytes or len(merged) - drop > self.max_buffered
            ):
                total -= merged[drop][1]
                drop += 1
            self.dropped += drop
            self._buffer, self._buffer_bytes = merged[drop:], total

    def _write(self, batch: list[RequestRecord], room: int) -> bool:
        """One file of `batch`, renamed into the spool only if its real size fits `room`."""
        columns = {
            name: np.array([getattr(r, name) for r in batch], dtype=object)
            for name in _RECORD_FIELDS
        }
        columns["ts"] = np.array([r.ts.replace(tzinfo=None) for r in batch], dtype="datetime64[us]")
        columns["dropped_total"] = np.full(len(batch), self.dropped, dtype=np.int64)
        columns["shadows_shed_total"] = np.full(len(batch), self.shadows_shed, dtype=np.int64)
        self._seq += 1
        name = f"{time.time_ns()}-{self.writer_id}-{self._seq:06d}-{uuid.uuid4().hex[:6]}{SUFFIX}"
        tmp = self.folder / f".{name}.tmp"
        select = ", ".join(f'"{c}"::{t} AS "{c}"' for c, t in SPOOL_COLUMNS.items())
        self._con.register("batch", columns)
        try:
            self._con.execute(f"COPY (SELECT {select} FROM batch) TO '{tmp}' (FORMAT parquet)")
        finally:
            self._con.unregister("batch")
        try:
            os.chmod(tmp, 0o600)
            if tmp.stat().st_size > room:
                tmp.unlink()
                return False
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.folder / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True

    def close(self) -> None:
        self.flush()
        self._con.close()
