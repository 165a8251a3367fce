"""Host telemetry from psutil: CPU, load, memory, swap, disk use and I/O, network I/O."""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

from agent.store import utcnow


class HostCollector:
    name = "host"

    def __init__(self, disk_path: str = "/") -> None:
        self.disk_path = disk_path
        self._last: tuple[float, Any, Any] | None = None
        psutil.cpu_percent(percpu=True)  # the first call only sets the baseline

    def _rates(self) -> dict[str, float | None]:
        now = time.monotonic()
        disk = psutil.disk_io_counters()
        net = psutil.net_io_counters()
        rates: dict[str, float | None] = dict.fromkeys(
            ("disk_read_bps", "disk_write_bps", "net_sent_bps", "net_recv_bps")
        )
        if self._last is not None:
            then, last_disk, last_net = self._last
            dt = max(now - then, 1e-6)
            if disk is not None and last_disk is not None:
                rates["disk_read_bps"] = (disk.read_bytes - last_disk.read_bytes) / dt
                rates["disk_write_bps"] = (disk.write_bytes - last_disk.write_bytes) / dt
            if net is not None and last_net is not None:
                rates["net_sent_bps"] = (net.bytes_sent - last_net.bytes_sent) / dt
                rates["net_recv_bps"] = (net.bytes_recv - last_net.bytes_recv) / dt
        self._last = (now, disk, net)
        return rates

    def sample(self) -> dict[str, Any]:
        per_cpu = psutil.cpu_percent(percpu=True)
        mem = psutil.virtual_memory()
        swap = psutil.swap_memory()
        disk = psutil.disk_usage(self.disk_path)
        load1, load5, load15 = os.getloadavg()
        return {
            "ts": utcnow(),
            "cpu_pct": sum(per_cpu) / len(per_cpu) if per_cpu else None,
            "per_cpu": per_cpu,
            "load1": load1,
            "load5": load5,
            "load15": load15,
            "mem_used": mem.total - mem.available,
            "mem_total": mem.total,
            "mem_pct": mem.percent,
            "swap_used": swap.used,
            "swap_pct": swap.percent,
            "disk_used": disk.used,
            "disk_total": disk.total,
            "disk_pct": disk.percent,
            **self._rates(),
        }
