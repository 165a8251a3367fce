"""The GPU collector against a FAKE NVML (tests/fake_nvml.py): this machine has no GPU.

Three fake GPUs: one with every field, one whose optional fields are unsupported, one lost
mid-run. Also the path of a host without NVIDIA's library at all.
"""

from __future__ import annotations

from agent.collectors.gpu import GpuCollector, decode_throttle
from tests.fake_nvml import FakeGpu, FakeNvml, three_gpus


def test_three_fake_gpus_unsupported_fields_and_a_lost_gpu():
    nvml = three_gpus(lost_after=2)
    collector = GpuCollector(nvml=nvml)
    first = collector.sample()
    assert [r["uuid"] for r in first] == ["GPU-fake-0", "GPU-fake-1", "GPU-fake-2"]
    full, basic, _ = first
    assert full["util_gpu"] == 42 and full["mem_total"] == 16 << 30 and full["temp_c"] == 61
    assert full["power_w"] == 123.0 and full["power_limit_w"] == 300.0
    assert full["sm_clock_mhz"] == 1410 and full["mem_clock_mhz"] == 1215
    assert full["throttle_reasons"] == ["sw_power_cap", "sw_thermal_slowdown"]
    assert full["ecc_uncorrected"] == 0 and full["remapped_rows"] == 1
    assert '"pid": 4242' in full["processes"]
    # Unsupported fields are None, not errors; the basics are still there.
    assert basic["util_gpu"] == 42 and basic["temp_c"] == 61
    for key in (
        "power_w",
        "util_enc",
        "sm_clock_mhz",
        "throttle_reasons",
        "ecc_uncorrected",
        "remapped_rows",
        "processes",
    ):
        assert basic[key] is None, key
    second = collector.sample()
    assert len(second) == 3
    third = collector.sample()  # GPU 2 is lost now: reported once, then skipped
    assert [r["uuid"] for r in third] == ["GPU-fake-0", "GPU-fake-1"]
    assert [g["lost"] for g in collector.describe()] == [False, False, True]
    assert len(collector.sample()) == 2
    # nvmlInit once, handles fetched once per GPU, never per sample.
    assert nvml.init_calls == 1 and nvml.handle_calls == 3


def test_a_gpu_lost_before_the_agent_starts_silences_only_that_gpu():
    """Before: start() raised on the lost GPU's handle, stayed "not started", and the daemon
    stopped sampling every GPU. (FAKE NVML: no GPU on this machine.)"""
    nvml = FakeNvml(
        gpus=[
            FakeGpu("FAKE A100", "GPU-fake-0"),
            FakeGpu("FAKE L4 (lost before start)", "GPU-fake-1", lost_at_start=True),
            FakeGpu("FAKE T4", "GPU-fake-2"),
        ]
    )
    collector = GpuCollector(nvml=nvml)
    rows = collector.sample()
    assert [r["uuid"] for r in rows] == ["GPU-fake-0", "GPU-fake-2"]
    assert [(g["index"], g["lost"]) for g in collector.describe()] == [
        (0, False),
        (1, True),
        (2, False),
    ]
    assert collector.available and collector.status == "ok: 3 GPU(s), 1 lost"
    assert len(collector.sample()) == 2


def test_no_nvidia_library_means_no_gpu_not_a_crash():
    nvml = FakeNvml(library_missing=True)
    collector = GpuCollector(nvml=nvml)
    assert collector.sample() == []
    assert collector.sample() == []
    assert not collector.available
    assert collector.status.startswith("no GPU")
    assert nvml.init_calls == 1  # said once, then quiet


def test_real_pynvml_on_this_machine_degrades_to_no_gpu():
    collector = GpuCollector()  # the real pynvml; no driver here
    rows = collector.sample()
    if not collector.available:
        assert rows == [] and collector.status.startswith("no GPU")


def test_throttle_decoding_keeps_unknown_bits():
    assert decode_throttle(0) == []
    assert decode_throttle(None) is None
    assert decode_throttle(0x1 | 0x1000) == ["gpu_idle", "0x1000"]


def test_the_process_list_is_read_at_most_once_a_second(monkeypatch):
    """It takes the driver's lock: a 4 Hz collector must not ask four times a second."""
    clock = [1000.0]
    monkeypatch.setattr("agent.collectors.gpu.time.monotonic", lambda: clock[0])
    nvml = FakeNvml(gpus=[FakeGpu("FAKE A100", "GPU-fake-0")])
    collector = GpuCollector(nvml=nvml)
    for _ in range(4):
        rows = collector.sample()
        clock[0] += 0.25
    assert nvml.process_calls == 1
    assert '"pid": 4242' in rows[0]["processes"]  # the list kept between reads
    clock[0] += 1.0
    collector.sample()
    assert nvml.process_calls == 2


def test_xid_events_and_ecc_counts_reach_the_samples_and_metrics():
    """FAKE NVML: the driver queues XID 79 (fallen off the bus) and XID 48 (double-bit ECC)
    for GPU 0; GPU 1 cannot report events (and says so once); ECC and remapped rows are read
    with every sample."""
    gpu0 = FakeGpu("FAKE A100", "GPU-fake-0", ecc_uncorrected=2, remapped_uncorrectable=1)
    gpu1 = FakeGpu("FAKE T4", "GPU-fake-1", supported=False)
    nvml = FakeNvml(gpus=[gpu0, gpu1])
    collector = GpuCollector(nvml=nvml)
    first = collector.sample()
    assert [r["xid_errors"] for r in first] == [0, 0] and first[0]["last_xid"] is None
    nvml.events += [(gpu0, 48), (gpu0, 79), (gpu1, 13)]  # gpu1 is not registered
    second = collector.sample()
    assert (second[0]["xid_errors"], second[0]["last_xid"]) == (2, 79)
    assert second[0]["ecc_uncorrected"] == 2 and second[0]["remapped_rows"] == 2
    assert second[1]["xid_errors"] == 0
    assert collector.describe()[0]["xid_errors"] == 2
    assert collector.sample()[0]["xid_errors"] == 2  # counted once


def test_a_host_without_event_support_reports_no_xid_column():
    nvml = FakeNvml(gpus=[FakeGpu("FAKE A100", "GPU-fake-0")], xid_supported=False)
    (row,) = GpuCollector(nvml=nvml).sample()
    assert row["xid_errors"] is None  # unknown, not zero
