"""A FAKE NVML: the functions of pynvml that trackside calls, backed by made-up GPUs.

This machine has no NVIDIA GPU or driver, so the NVML code path is tested against this fake.
Its errors are pynvml's real exception classes, built the way pynvml builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml

NVMLError = pynvml.NVMLError
NVMLError_GpuIsLost = pynvml.NVMLError_GpuIsLost
NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
NVML_VOLATILE_ECC = pynvml.NVML_VOLATILE_ECC
nvmlEventTypeXidCriticalError = pynvml.nvmlEventTypeXidCriticalError


def not_supported() -> pynvml.NVMLError:
    return pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)


@dataclass
class FakeGpu:
    name: str
    uuid: str
    supported: bool = True  # False: every optional field raises NotSupported
    lost_after: int | None = None  # good samples before the GPU falls off the bus
    lost_at_start: bool = False  # off the bus before the agent starts: no handle at all
    calls: int = 0
    processes: list[tuple[int, int]] = field(default_factory=lambda: [(4242, 1 << 30)])
    ecc_uncorrected: int = 0
    remapped_uncorrectable: int = 0
    clock_reasons: int = 0x4 | 0x20  # sw power cap + sw thermal slowdown


@dataclass
class FakeNvml:
    gpus: list[FakeGpu] = field(default_factory=list)
    library_missing: bool = False
    init_calls: int = 0
    handle_calls: int = 0
    process_calls: int = 0
    xid_supported: bool = True
    # XID events waiting to be read: (GPU, XID code), as the driver queues them.
    events: list[tuple[FakeGpu, int]] = field(default_factory=list)
    registered: list[FakeGpu] = field(default_factory=list)

    NVMLError = NVMLError
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_VOLATILE_ECC = NVML_VOLATILE_ECC
    nvmlEventTypeXidCriticalError = nvmlEventTypeXidCriticalError

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.library_missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self.handle_calls += 1
        if self.gpus[index].lost_at_start:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return self.gpus[index]

    def nvmlEventSetCreate(self) -> object:
        if not self.xid_supported:
            raise not_supported()
        return object()

    def nvmlDeviceRegisterEvents(self, gpu: FakeGpu, kinds: int, events: object) -> None:
        if not gpu.supported:
            raise not_supported()
        self.registered.append(gpu)

    def nvmlEventSetWait_v2(self, events: object, timeout_ms: int):
        queued = [e for e in self.events if e[0] in self.registered]
        if not queued:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
        gpu, xid = queued[0]
        self.events.remove(queued[0])
        return SimpleNamespace(device=gpu, eventType=nvmlEventTypeXidCriticalError, eventData=xid)

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return gpu.uuid

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> bytes:
        return gpu.name.encode()

    def _check(self, gpu: FakeGpu, optional: bool = False) -> None:
        if gpu.lost_after is not None and gpu.calls > gpu.lost_after:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if optional and not gpu.supported:
            raise not_supported()

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu):
        gpu.calls += 1  # one call per sample: counts samples
        self._check(gpu)
        return SimpleNamespace(gpu=42, memory=17)

    def nvmlDeviceGetEncoderUtilization(self, gpu: FakeGpu):
        self._check(gpu, optional=True)
        return (3, 1000)

    def nvmlDeviceGetDecoderUtilization(self, gpu: FakeGpu):
        self._check(gpu, optional=True)
        return (4, 1000)

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu):
        self._check(gpu)
        return SimpleNamespace(used=2 << 30, total=16 << 30)

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        self._check(gpu)
        return 61

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        self._check(gpu, optional=True)
        return 123_000

    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: FakeGpu) -> int:
        self._check(gpu, optional=True)
        return 300_000

    def nvmlDeviceGetClockInfo(self, gpu: FakeGpu, clock: int) -> int:
        self._check(gpu, optional=True)
        return 1410 if clock == NVML_CLOCK_SM else 1215

    def nvmlDeviceGetCurrentClocksEventReasons(self, gpu: FakeGpu) -> int:
        self._check(gpu, optional=True)
        return gpu.clock_reasons

    def nvmlDeviceGetTotalEccErrors(self, gpu: FakeGpu, kind: int, counter: int) -> int:
        self._check(gpu, optional=True)
        return gpu.ecc_uncorrected

    def nvmlDeviceGetRemappedRows(self, gpu: FakeGpu):
        self._check(gpu, optional=True)
        return (1, gpu.remapped_uncorrectable, False, False)

    def nvmlDeviceGetComputeRunningProcesses(self, gpu: FakeGpu):
        self._check(gpu, optional=True)
        self.process_calls += 1
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.processes]


def three_gpus(lost_after: int = 3) -> FakeNvml:
    """GPU 0 full-featured, GPU 1 supports only the basics, GPU 2 is lost mid-run."""
    return FakeNvml(
        gpus=[
            FakeGpu("FAKE A100", "GPU-fake-0"),
            FakeGpu("FAKE T4 (basic fields only)", "GPU-fake-1", supported=False),
            FakeGpu("FAKE L4 (falls off the bus)", "GPU-fake-2", lost_after=lost_after),
        ]
    )
