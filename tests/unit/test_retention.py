"""Retention on a real DuckDB file: raw samples older than the window become 1-minute
rollups and are dropped; old requests go; recent data stays."""

from __future__ import annotations

from datetime import timedelta

from agent.store import HOST_COLUMNS, Store, utcnow


def test_old_samples_are_rolled_up_then_dropped(tmp_path):
    store = Store(tmp_path / "a.duckdb")
    now = utcnow()
    old = now - timedelta(hours=30)
    rows = [
        {"ts": old.replace(second=s, microsecond=0), "cpu_pct": float(s), "mem_pct": 50.0}
        for s in range(0, 60, 10)
    ]
    rows.append({"ts": now, "cpu_pct": 99.0, "mem_pct": 10.0})
    store.insert_rows("host_samples", HOST_COLUMNS, rows)
    store.execute(
        "INSERT INTO requests (request_id, ts, role) VALUES ('old', ?, 'primary'),"
        " ('new', ?, 'primary')",
        [now - timedelta(days=9), now],
    )
    deleted = store.apply_retention(raw_hours=24, rollup_step_s=60, rollup_days=30, requests_days=7)
    assert deleted["host_samples"] == 6 and deleted["requests"] == 1
    (rollup,) = store.query("SELECT * FROM host_rollup")
    assert rollup["samples"] == 6
    assert rollup["cpu_pct_avg"] == 25.0 and rollup["cpu_pct_max"] == 50.0
    assert store.query("SELECT count(*) AS n FROM host_samples")[0]["n"] == 1
    assert [r["request_id"] for r in store.query("SELECT request_id FROM requests")] == ["new"]
    # The telemetry query reads old time from the rollup and recent time from raw samples.
    series = store.telemetry(
        "host_samples", ["cpu_pct"], now - timedelta(hours=31), now + timedelta(seconds=1), 3600
    )
    assert sum(r["samples"] for r in series) == 7
