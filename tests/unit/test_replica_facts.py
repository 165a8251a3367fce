"""What a replica tells its host's agent, and what the agent makes of it: a GPU version on
the CPU named in plain words, dead replicas forgotten, GPU memory attributed by pid."""

from __future__ import annotations

import json
import os
import time

import psutil
import pytest

from agent.replicas import alive, gpu_memory_by_pid, version_runtime
from agent.schemas.models import ReplicaReport, VersionStatus
from serve.replica_facts import CPU, CUDA, ReplicaFacts, read_facts, write_facts


def facts(**kw) -> ReplicaFacts:
    base = dict(
        model="digits",
        version="v2",
        replica="digits--v2#ModelVersion#abc",
        host="gpu-a",
        pid=os.getpid(),
        process_started=psutil.Process().create_time(),
        asked_gpus=0.5,
        gpu_ids=["0"],
        provider=CUDA,
        available_providers=[CUDA, CPU],
        onnxruntime="1.20.0",
    )
    return ReplicaFacts(**(base | kw))


@pytest.mark.parametrize(
    ("kw", "problem"),
    [
        ({}, None),  # on the GPU, as asked
        ({"asked_gpus": 0.0, "provider": CPU}, None),  # a CPU version on the CPU
        (
            {"provider": CPU, "available_providers": [CPU]},
            "asked for GPU 0.5, running on CPU: this onnxruntime (1.20.0) has no CUDA provider",
        ),
        ({"provider": CPU, "gpu_ids": []}, "asked for GPU 0.5, running on CPU: Ray assigned"),
        ({"provider": CPU}, "asked for GPU 0.5, running on CPU: the CUDA provider did not load"),
    ],
)
def test_a_gpu_version_on_the_cpu_is_named_with_the_reason(kw, problem):
    found = facts(**kw).cpu_fallback()
    assert (found is None) if problem is None else found.startswith(problem), found


def test_facts_of_dead_or_recycled_processes_are_dropped(tmp_path):
    folder = tmp_path / "replicas"
    write_facts(folder, facts())
    write_facts(folder, facts(replica="gone", pid=2**22 + 12345))  # no such process
    write_facts(folder, facts(replica="recycled", process_started=1.0))  # same pid, new process
    (folder / "torn.json").write_text("{")  # a half-written file from elsewhere: skipped
    assert oct((folder / "gone.json").stat().st_mode & 0o777) == "0o600"
    found = read_facts(folder, alive)
    assert [f.replica for f in found] == ["digits--v2#ModelVersion#abc"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "digits--v2#ModelVersion#abc.json",
        "torn.json",
    ]


def test_gpu_memory_is_attributed_by_pid_and_summed_per_version():
    rows = [
        {"uuid": "GPU-0", "processes": json.dumps([{"pid": 10, "used_mem": 1 << 30}])},
        {"uuid": "GPU-1", "processes": json.dumps([{"pid": 10, "used_mem": 1 << 29}, {"pid": 11}])},
        {"uuid": "GPU-2", "processes": None},
    ]
    assert gpu_memory_by_pid(rows) == {10: {"GPU-0": 1 << 30, "GPU-1": 1 << 29}}
    reports = [
        ReplicaReport(**facts(pid=10).model_dump(), gpu_memory={"GPU-0": 1 << 30}),
        ReplicaReport(
            **facts(pid=12, replica="r2", provider=CPU, available_providers=[CPU]).model_dump(),
            problem="asked for GPU 0.5, running on CPU: ...",
        ),
        ReplicaReport(**facts(version="v1", pid=13).model_dump()),
    ]
    runs_on, memory, problem = version_runtime(reports, "digits", "v2")
    assert runs_on == {"CUDA": 1, "CPU": 1} and memory == 1 << 30
    assert problem == "gpu-a r2: asked for GPU 0.5, running on CPU: ..."
    status = VersionStatus(version="v2", runs_on=runs_on, gpu_memory=memory)
    assert status.runs_on_summary() == "CPU:1 CUDA:1 1.0G"
    assert VersionStatus(version="v9").runs_on_summary() == "-"


def test_facts_are_written_whole(tmp_path):
    path = write_facts(tmp_path / "r", facts())
    assert ReplicaFacts.model_validate_json(path.read_text()).pid == os.getpid()
    assert not list((tmp_path / "r").glob(".*"))  # no temporary left
    assert abs(facts().started_at.timestamp() - time.time()) < 5
