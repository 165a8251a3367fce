"""Drift through the agent's own path: spool files -> ingest -> drift report, for N reference
rows and N logged calls of 20 features (16 normal, 4 small-integer), the last 5 shifted.

Prints the ingest rate beside a plain INSERT of the same files, the cold and warm report
times, and one RESULT line. `--rows` sets N (default 1,000,000; Evidently's DataDriftPreset
took 327 s on that shape on a machine like this one).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

from agent.analysis.drift import drift_reports
from agent.ingest import ingest_once
from agent.local_log import LocalRequestLog
from agent.request_log import DriftSource
from agent.schemas.drift import DriftThresholds
from agent.store import REQUEST_COLUMNS, Store
from scripts.bench.spool_files import write_spool
from scripts.bench.synthetic_model import FEATURES, MODEL, VERSION, register

FILES = 50


def features(rows: int, seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(FEATURES):
        moved = shift if i >= 15 else 0.0  # the last five move
        if i < 16:
            out[name] = rng.normal(moved, 1.0, rows).round(4)
        else:
            out[name] = rng.poisson(3.0 + moved, rows).astype(float)
    return out


def write_reference(path: Path, rows: int) -> None:
    cols = features(rows, seed=1)
    cols["prediction"] = (cols["f0"] > 0).astype(np.int64)
    con = duckdb.connect()
    con.register("ref", cols)
    con.execute(f"COPY ref TO '{path}' (FORMAT parquet)")
    con.close()


def write_calls(folder: Path, rows: int, start: datetime, span: timedelta) -> None:
    """What a router fleet would have logged in `span`: one call per row, bodies as JSON."""
    cols = features(rows, seed=2, shift=0.5)
    cols["i"] = np.arange(rows)
    con = duckdb.connect()
    con.register("x", cols)
    values = ", ".join(f"{name}::VARCHAR" for name in FEATURES)
    con.execute(
        f"""CREATE VIEW calls AS SELECT i,
            '{{"instances": [[' || concat_ws(',', {values}) || ']]}}' AS input,
            '{{"predictions":[{{"label":' || (f0 > 0)::INTEGER || '}}]}}' AS output FROM x"""
    )
    write_spool(con, "calls", folder, rows, FILES, start, span.total_seconds(), MODEL, VERSION)
    con.close()


def plain_insert_rate(spool: Path, tmp: Path, rows: int) -> float:
    con = duckdb.connect(str(tmp / "plain.duckdb"))
    cols = ", ".join(f'"{c}" {t}' for c, t in REQUEST_COLUMNS.items())
    con.execute(f"CREATE TABLE requests ({cols})")
    t0 = time.perf_counter()
    con.execute(
        f"INSERT INTO requests SELECT * FROM read_parquet('{spool}/*.parquet', union_by_name=1)"
    )
    rate = rows / (time.perf_counter() - t0)
    con.close()
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="warm reports, median taken")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        reference = tmp / "reference.parquet"
        write_reference(reference, args.rows)
        store_root = register(tmp / "models", reference)
        until = datetime.now(UTC).replace(microsecond=0)
        since = until - timedelta(hours=1)
        spool = tmp / "spool"
        t0 = time.perf_counter()
        write_calls(spool, args.rows, since, timedelta(hours=1) - timedelta(seconds=1))
        written_s = time.perf_counter() - t0
        duckdb.sql(f"SELECT count(*) FROM read_parquet('{spool}/*.parquet')").fetchall()
        plain = plain_insert_rate(spool, tmp, args.rows)

        store = Store(tmp / "agent.duckdb", model_store=store_root)
        t0 = time.perf_counter()
        store.summaries.bins(MODEL, VERSION)  # once per version and agent process
        bins_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fold_s = 0.0
        while (result := ingest_once(store, spool)).files:
            fold_s += result.fold_seconds
        ingest_s = time.perf_counter() - t0
        log = LocalRequestLog(store)
        source = DriftSource(MODEL, VERSION, reference, list(FEATURES))
        times = []
        for _ in range(args.runs + 1):
            t0 = time.perf_counter()
            (report,) = drift_reports(log, source, since, until, DriftThresholds())
            times.append(time.perf_counter() - t0)
        store.close()
    drifted = [f.feature for f in report.features if f.decision.drifted]
    cold, warm = times[0], statistics.median(times[1:])
    print(f"\ndrift through spool -> ingest -> report ({args.rows:,} + {args.rows:,} rows x 20)")
    print(f"{'measure':<44}{'value':>14}{'target':>12}")
    print(f"{'spool files written (DuckDB), s':<44}{written_s:>14.2f}{'':>12}")
    insert_rate = args.rows / (ingest_s - fold_s)
    print(f"{'bins from the reference (once), s':<44}{bins_s:>14.2f}{'':>12}")
    print(f"{'ingest: insert and dedup, rows/s':<44}{insert_rate:>14,.0f}{'>= 300k':>12}")
    fold_rate = args.rows / fold_s
    print(f"{'ingest: folding into summaries, calls/s':<44}{fold_rate:>14,.0f}{'>= 50k':>12}")
    print(f"{'ingest, both in one pass, rows/s':<44}{args.rows / ingest_s:>14,.0f}{'':>12}")
    print(f"{'plain INSERT, rows/s':<44}{plain:>14,.0f}{'':>12}")
    print(f"{'report, cold, s':<44}{cold:>14.3f}{'':>12}")
    print(f"{'report, warm (median), s':<44}{warm:>14.3f}{'<= 1':>12}")
    print(f"{'rows in the report':<44}{report.rows:>14,}{'':>12}")
    print(f"drifted: {', '.join(drifted) or 'none'} (f15..f19 were shifted)")
    print(
        f"RESULT drift rows={args.rows} report_warm_s={warm:.3f} report_cold_s={cold:.3f}"
        f" insert_rows_s={insert_rate:.0f} fold_calls_s={fold_rate:.0f}"
        f" ingest_rows_s={args.rows / ingest_s:.0f} plain_insert_rows_s={plain:.0f}"
        f" insert_vs_plain={insert_rate / plain:.3f} bins_s={bins_s:.2f} drifted={len(drifted)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
