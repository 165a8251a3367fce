"""GPU telemetry through NVML (pynvml, from nvidia-ml-py).

`nvmlInit` runs once and device handles are cached: fetching them on every sample is what
made gpustat spend most of a core. A field a GPU does not support is None. With no NVIDIA
library the host reports "no GPU" once and the collector goes quiet. A GPU that falls off
the bus is reported once and skipped.

`nvml` is the pynvml module or anything with the same functions (the tests use a fake).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any

from agent.store import utcnow

log = logging.getLogger("trackside.agent.gpu")
PROCESS_LIST_EVERY_S = 1.0

# Clock-event (throttle) reason bits, named as NVML names them.
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def decode_throttle(mask: int | None) -> list[str] | None:
    if mask is None:
        return None
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    if unknown:
        names.append(f"0x{unknown:x}")
    return names


@dataclass
class GpuState:
    index: int
    handle: Any
    uuid: str
    name: str
    lost: bool = False
    processes: Any = None  # the last process list, and when it was read
    processes_at: float = float("-inf")
    xid_errors: int = 0  # critical XID events since the agent started
    last_xid: int | None = None


@dataclass
class GpuCollector:
    nvml: Any = None
    name: str = "gpu"
    status: str = "not started"  # "ok", "no GPU: ...", "error: ..."
    gpus: list[GpuState] = field(default_factory=list)
    available: bool = False
    _started: bool = False
    _events: Any = None  # NVML's event set for XID errors, None where unsupported

    def _lib(self) -> ModuleType | Any:
        if self.nvml is None:
            import pynvml

            self.nvml = pynvml
        return self.nvml

    def start(self) -> None:
        """Initialise NVML once; on a host without NVIDIA's library, say so once."""
        if self._started:
            return
        self._started = True
        nvml = self._lib()
        try:
            nvml.nvmlInit()
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            self.available = False
            self.status = f"no GPU: {exc}"
            log.info("GPU telemetry off on this host: %s", self.status)
            return
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except nvml.NVMLError as exc:
                # Lost before we started (or otherwise unreachable): that GPU, not all of them.
                log.error("GPU %d cannot be reached: %s; sampling the others", index, exc)
                self.gpus.append(GpuState(index, None, f"gpu-{index}", "unknown", lost=True))
                continue
            uuid = self._text(nvml.nvmlDeviceGetUUID, handle) or f"gpu-{index}"
            name = self._text(nvml.nvmlDeviceGetName, handle) or "unknown"
            self.gpus.append(GpuState(index, handle, uuid, name))
        self._watch_xid()
        self.available = True
        lost = sum(g.lost for g in self.gpus)
        self.status = f"ok: {count} GPU(s)" + (f", {lost} lost" if lost else "")

    def _watch_xid(self) -> None:
        """Register every reachable GPU for critical XID events (drained at each sample)."""
        nvml = self.nvml
        kind = getattr(nvml, "nvmlEventTypeXidCriticalError", None)
        if kind is None or not hasattr(nvml, "nvmlEventSetCreate"):
            return
        try:
            events = nvml.nvmlEventSetCreate()
        except nvml.NVMLError as exc:
            log.info("no XID events on this host: %s", exc)
            return
        for gpu in self.gpus:
            if gpu.lost:
                continue
            try:
                nvml.nvmlDeviceRegisterEvents(gpu.handle, kind, events)
            except nvml.NVMLError as exc:  # not supported on this GPU (e.g. GeForce, vGPU)
                log.info("GPU %d reports no XID events: %s", gpu.index, exc)
        self._events = events

    def _drain_xid(self) -> None:
        if self._events is None:
            return
        nvml = self.nvml
        by_uuid = {g.uuid: g for g in self.gpus}
        for _ in range(1000):  # a storm is counted over several samples, not in one
            try:
                event = nvml.nvmlEventSetWait_v2(self._events, 0)
            except nvml.NVMLError:  # NVML_ERROR_TIMEOUT: nothing more now
                return
            gpu = by_uuid.get(self._text(nvml.nvmlDeviceGetUUID, event.device) or "")
            if gpu is None:
                continue
            gpu.xid_errors += 1
            gpu.last_xid = int(event.eventData)
            log.error("GPU %d (%s): XID %d", gpu.index, gpu.uuid, gpu.last_xid)

    def _text(self, fn: Callable[..., Any], *args: Any) -> str | None:
        try:
            value = fn(*args)
        except self.nvml.NVMLError:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def _field(self, gpu: GpuState, fn_name: str, *args: Any) -> Any:
        """A value, or None when unsupported; raises _Lost when the GPU is gone."""
        nvml = self.nvml
        fn = getattr(nvml, fn_name, None)
        if fn is None:
            return None
        try:
            return fn(gpu.handle, *args)
        except nvml.NVMLError as exc:
            lost = getattr(nvml, "NVMLError_GpuIsLost", None)
            if lost is not None and isinstance(exc, lost):
                raise _Lost(str(exc)) from exc
            return None

    def _throttle_mask(self, gpu: GpuState) -> int | None:
        for fn in (
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetCurrentClocksThrottleReasons",
        ):
            if hasattr(self.nvml, fn):
                return self._field(gpu, fn)
        return None

    def _processes(self, gpu: GpuState) -> Any:
        """At most once a second: the list costs milliseconds and takes the driver's lock."""
        now = time.monotonic()
        if now - gpu.processes_at >= PROCESS_LIST_EVERY_S:
            gpu.processes = self._field(gpu, "nvmlDeviceGetComputeRunningProcesses")
            gpu.processes_at = now
        return gpu.processes

    def _one(self, gpu: GpuState, ts: datetime) -> dict[str, Any]:
        nvml = self.nvml
        util = self._field(gpu, "nvmlDeviceGetUtilizationRates")
        enc = self._field(gpu, "nvmlDeviceGetEncoderUtilization")
        dec = self._field(gpu, "nvmlDeviceGetDecoderUtilization")
        mem = self._field(gpu, "nvmlDeviceGetMemoryInfo")
        power = self._field(gpu, "nvmlDeviceGetPowerUsage")
        limit = self._field(gpu, "nvmlDeviceGetEnforcedPowerLimit")
        remapped = self._field(gpu, "nvmlDeviceGetRemappedRows")
        procs = self._processes(gpu)
        return {
            "ts": ts,
            "gpu_index": gpu.index,
            "uuid": gpu.uuid,
            "name": gpu.name,
            "util_gpu": getattr(util, "gpu", None),
            "util_mem": getattr(util, "memory", None),
            "util_enc": enc[0] if enc else None,
            "util_dec": dec[0] if dec else None,
            "mem_used": getattr(mem, "used", None),
            "mem_total": getattr(mem, "total", None),
            "temp_c": self._field(gpu, "nvmlDeviceGetTemperature", nvml.NVML_TEMPERATURE_GPU),
            "power_w": power / 1000.0 if power is not None else None,
            "power_limit_w": limit / 1000.0 if limit is not None else None,
            "sm_clock_mhz": self._field(gpu, "nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_SM),
            "mem_clock_mhz": self._field(gpu, "nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_MEM),
            "throttle_reasons": decode_throttle(self._throttle_mask(gpu)),
            "ecc_uncorrected": self._field(
                gpu,
                "nvmlDeviceGetTotalEccErrors",
                nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                nvml.NVML_VOLATILE_ECC,
            ),
            "remapped_rows": (remapped[0] + remapped[1]) if remapped else None,
            "xid_errors": gpu.xid_errors if self._events is not None else None,
            "last_xid": gpu.last_xid,
            "processes": None
            if procs is None
            else json.dumps(
                [{"pid": p.pid, "used_mem": getattr(p, "usedGpuMemory", None)} for p in procs]
            ),
        }

    def sample(self) -> list[dict[str, Any]]:
        self.start()
        if not self.available:
            return []
        self._drain_xid()
        ts = utcnow()
        rows = []
        for gpu in self.gpus:
            if gpu.lost:
                continue
            try:
                rows.append(self._one(gpu, ts))
            except _Lost as exc:
                gpu.lost = True
                log.error(
                    "GPU %d (%s) is lost: %s; no more samples from it", gpu.index, gpu.uuid, exc
                )
        return rows

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "index": g.index,
                "uuid": g.uuid,
                "name": g.name,
                "lost": g.lost,
                "xid_errors": g.xid_errors,
                "last_xid": g.last_xid,
            }
            for g in self.gpus
        ]


class _Lost(Exception):
    pass
