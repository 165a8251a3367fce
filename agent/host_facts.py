"""What the host-level alert rules measure on one host over a window, from its own DuckDB file:
critical XID events and uncorrectable ECC errors on its GPUs, the share of GPU samples the
hardware slowed, and the request records its routers dropped. Counters are summed as
Prometheus' increase() sums them: the rise from one sample to the next, and a sample below
the one before (the agent or the driver restarted, the counter began again) counts whole."""

from __future__ import annotations

from datetime import datetime

from agent.schemas.alerts import HostFacts
from agent.store import Store, naive_utc

# Throttle reasons that mean the hardware itself slowed the GPU (not idle, not a clock set on
# purpose, not the power cap an operator chose).
HARDWARE_SLOWDOWN = (
    "hw_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "sw_thermal_slowdown",
)


def _increase(column: str, table: str, key: str) -> str:
    """SQL: the increase of a counter column per `key` over [$since, $until), reading one
    window back for the sample just before $since."""
    return f"""
        SELECT coalesce(sum(CASE WHEN rise >= 0 THEN rise ELSE now END), 0)::BIGINT AS n
        FROM (SELECT ts, {column} AS now,
                     {column} - lag({column}) OVER (PARTITION BY {key} ORDER BY ts) AS rise
              FROM {table}
              WHERE ts >= $before AND ts < $until AND {column} IS NOT NULL)
        WHERE ts >= $since AND rise IS NOT NULL
    """


def host_facts(store: Store, host: str, since: datetime, until: datetime) -> HostFacts:
    since, until = naive_utc(since), naive_utc(until)
    params = {"since": since, "until": until, "before": since - (until - since)}
    xid = store.query(_increase("xid_errors", "gpu_samples", "uuid"), params)[0]["n"]
    ecc = store.query(_increase("ecc_uncorrected", "gpu_samples", "uuid"), params)[0]["n"]
    # A file's rows all carry its router's total: one point per router and second, not per
    # call, keeps this cheap at any traffic.
    per_second = (
        "(SELECT replica, max(ts) AS ts, max(dropped_total) AS dropped_total FROM requests"
        " WHERE ts >= $before AND ts < $until GROUP BY replica, date_trunc('second', ts))"
    )
    drops = store.query(_increase("dropped_total", per_second, "replica"), params)[0]["n"]
    slowed = ", ".join(f"'{r}'" for r in HARDWARE_SLOWDOWN)
    (gpu,) = store.query(
        f"""
        SELECT count(DISTINCT uuid) AS gpus, count(*) AS samples,
               count(*) FILTER (WHERE list_has_any(throttle_reasons, [{slowed}])) AS slowed
        FROM gpu_samples WHERE ts >= $since AND ts < $until
        """,
        {"since": since, "until": until},
    )
    return HostFacts(
        host=host,
        gpus=int(gpu["gpus"]),
        xid_errors=int(xid),
        ecc_errors=int(ecc),
        throttled_share=gpu["slowed"] / gpu["samples"] if gpu["samples"] else None,
        spool_drops=int(drops),
    )
