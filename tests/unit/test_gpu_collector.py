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
