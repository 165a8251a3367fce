"""The request spool: routers buffer records and write them as Parquet files, atomically.

Files are written through an in-memory DuckDB (no JSON is produced here), to a dot-prefixed
temporary name, then renamed, so the agent only ever sees whole files. Past the size bound
records are dropped and counted; appending never blocks or raises.
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


class SpoolWriter:
    def __init__(
        self,
        folder: Path | str,
        writer_id: str,
        max_bytes: int = 256 << 20,
        max_buffered: int = 50_000,
    ) -> None:
        self.folder = Path(folder)
        # Records hold requests and answers: the folder and its files are the owner's only.
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.writer_id = writer_id.replace("/", "_")
        self.max_bytes = max_bytes
        self.max_buffered = max_buffered
        self.dropped = 0
        self.written = 0
        self.files = 0
        self._buffer: list[RequestRecord] = []
        self._lock = threading.Lock()  # append (event loop) vs flush (worker thread)
        self._flush_lock = threading.Lock()
        self._seq = 0
        self._con = duckdb.connect(":memory:")

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            if len(self._buffer) >= self.max_buffered:
                self.dropped += 1
                return
            self._buffer.append(record)

    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> int:
        """Write what is buffered as one file; returns the number of records written."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            if spool_bytes(self.folder) >= self.max_bytes:
                self.dropped += len(batch)
                log.warning(
                    "spool %s is over its bound of %d bytes: dropped %d records (%d in all)",
                    self.folder,
                    self.max_bytes,
                    len(batch),
                    self.dropped,
                )
                return 0
            try:
                self._write(batch)
            except Exception:  # a full disk must not take the router down
                self.dropped += len(batch)
                log.exception("could not write spool file; dropped %d records", len(batch))
                return 0
            self.written += len(batch)
            self.files += 1
            return len(batch)

    def _write(self, batch: list[RequestRecord]) -> None:
        columns = {
            name: np.array([getattr(r, name) for r in batch], dtype=object)
            for name in _RECORD_FIELDS
        }
        columns["ts"] = np.array([r.ts.replace(tzinfo=None) for r in batch], dtype="datetime64[us]")
        columns["dropped_total"] = np.full(len(batch), self.dropped, dtype=np.int64)
        self._seq += 1
        name = f"{time.time_ns()}-{self.writer_id}-{self._seq:06d}-{uuid.uuid4().hex[:6]}{SUFFIX}"
        tmp = self.folder / f".{name}.tmp"
        select = ", ".join(f'"{c}"::{t} AS "{c}"' for c, t in SPOOL_COLUMNS.items())
        self._con.register("batch", columns)
        try:
            self._con.execute(f"COPY (SELECT {select} FROM batch) TO '{tmp}' (FORMAT parquet)")
        finally:
            self._con.unregister("batch")
        os.chmod(tmp, 0o600)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / name)

    def close(self) -> None:
        self.flush()
        self._con.close()
