"""Agent cost: CPU (% of one core) and RSS of the idle daemon sampling at 1 Hz, and spool
ingest rows/s for 1M records, beside a plain DuckDB insert of the same files (the floor).
Prints a table and one RESULT line."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import psutil

from agent.ingest import ingest_once
from agent.store import REQUEST_COLUMNS, Store
from scripts.bench.spool_files import write_spool
from serve.local_cluster import free_port


def agent_command(tmp: Path, port: int) -> list[str]:
    config = tmp / "agent.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\n[api]\nport = {port}\n[collect]\ninterval_s = 1.0\n'
    )
    return [sys.executable, "-m", "agent.daemon", "--config", str(config)]


def floor_command(tmp: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "scripts.bench.agent_floor", str(tmp / "floor.duckdb"), str(port)]


def idle_cost(seconds: float, tmp: Path, command) -> tuple[float, float]:
    """CPU (% of one core) and peak RSS (MiB) of a daemon left alone for `seconds`."""
    port = free_port()
    proc = subprocess.Popen(
        command(tmp, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        p = psutil.Process(proc.pid)
        time.sleep(5)  # past start-up
        t0, c0 = time.monotonic(), p.cpu_times()
        rss = 0
        while time.monotonic() - t0 < seconds:
            rss = max(rss, p.memory_info().rss)
            time.sleep(1)
        c1, t1 = p.cpu_times(), time.monotonic()
        cpu = ((c1.user - c0.user) + (c1.system - c0.system)) / (t1 - t0) * 100
        return cpu, rss / (1 << 20)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def make_spool(folder: Path, rows: int, files: int) -> None:
    """Contract-shaped Parquet files, generated inside DuckDB (as fast as the writer can be)."""
    con = duckdb.connect()
    body = '{"instances": [[' + ",".join(["1.0"] * 64) + "]]}"
    # A view cannot take a prepared parameter: the row count is an int, written in.
    con.execute(
        f"CREATE VIEW calls AS SELECT i, '{body}' AS input,"
        f' \'{{"predictions":[{{"label":3}}]}}\' AS output FROM range({int(rows)}) t(i)'
    )
    write_spool(con, "calls", folder, rows, files, datetime.now(UTC), 60.0, "digits", "v1")
    con.close()


def ingest_rate(tmp: Path, rows: int) -> tuple[float, float]:
    spool = tmp / "spool"
    make_spool(spool, rows, 20)
    # Warm the page cache so neither side pays for the first read from disk.
    duckdb.sql(f"SELECT count(*) FROM read_parquet('{spool}/*.parquet')").fetchall()
    floor_db = duckdb.connect(str(tmp / "floor.duckdb"))
    cols = ", ".join(f'"{c}" {t}' for c, t in REQUEST_COLUMNS.items())
    floor_db.execute(f"CREATE TABLE requests ({cols})")
    t0 = time.perf_counter()
    floor_db.execute(
        f"INSERT INTO requests SELECT * FROM read_parquet('{spool}/*.parquet', union_by_name=1)"
    )
    floor = rows / (time.perf_counter() - t0)
    floor_db.close()
    store = Store(tmp / "agent.duckdb")
    t0 = time.perf_counter()
    inserted = 0
    while True:
        result = ingest_once(store, spool)
        inserted += result.rows_inserted
        if result.files == 0:
            break
    rate = rows / (time.perf_counter() - t0)
    store.close()
    assert inserted == rows, (inserted, rows)
    return rate, floor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cpu, rss = idle_cost(args.seconds, Path(tmp), agent_command)
    with tempfile.TemporaryDirectory() as tmp:
        floor_cpu, floor_rss = idle_cost(args.seconds, Path(tmp), floor_command)
    with tempfile.TemporaryDirectory() as tmp:
        rate, floor = ingest_rate(Path(tmp), args.rows)
    print(f"\nagent cost ({args.seconds:.0f} s idle at 1 Hz; {args.rows:,} spooled rows)")
    print(f"{'measure':<40}{'value':>14}{'target':>12}")
    print(f"{'idle CPU, % of one core':<40}{cpu:>14.2f}{'<= 1':>12}")
    print(f"{'idle RSS, MiB':<40}{rss:>14.1f}{'<= 80':>12}")
    print(f"{'bare stack (FastAPI+DuckDB), CPU %':<40}{floor_cpu:>14.2f}{'':>12}")
    print(f"{'bare stack (FastAPI+DuckDB), RSS MiB':<40}{floor_rss:>14.1f}{'':>12}")
    print(f"{'ingest, rows/s (idempotent)':<40}{rate:>14,.0f}{'>= 300k':>12}")
    print(f"{'plain INSERT (no dedup), rows/s':<40}{floor:>14,.0f}{'':>12}")
    print(f"ingest / plain insert = {rate / floor:.2f}")
    print(
        f"RESULT agent cpu_pct={cpu:.3f} rss_mib={rss:.1f} bare_stack_rss_mib={floor_rss:.1f}"
        f" rss_vs_bare_stack={rss / floor_rss:.3f} ingest_rows_s={rate:.0f}"
        f" floor_rows_s={floor:.0f} ingest_vs_floor={rate / floor:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
