"""This host's model-version replicas, as they described themselves (serve/replica_facts.py),
with the GPU memory NVML last saw each of their processes use. Pure reading: the files
under the spool, the latest GPU sample in DuckDB, and psutil to tell a live process (the
same pid and start time) from a dead one whose file is left."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import psutil

from agent.schemas.models import ReplicaReport
from agent.store import Store
from serve.replica_facts import ReplicaFacts, facts_dir, read_facts


def alive(facts: ReplicaFacts) -> bool:
    try:
        started = psutil.Process(facts.pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return abs(started - facts.process_started) < 1.0


def gpu_memory_by_pid(gpu_rows: Iterable[dict]) -> dict[int, dict[str, int]]:
    """pid -> {GPU uuid: bytes} from the `processes` column of GPU samples."""
    out: dict[int, dict[str, int]] = {}
    for row in gpu_rows:
        for proc in json.loads(row.get("processes") or "[]"):
            used = proc.get("used_mem")
            if proc.get("pid") is None or used is None:
                continue
            out.setdefault(int(proc["pid"]), {})[row["uuid"]] = int(used)
    return out


def local_replicas(spool: Path, store: Store) -> list[ReplicaReport]:
    by_pid = gpu_memory_by_pid(store.latest("gpu_samples", order="gpu_index"))
    return [
        ReplicaReport(
            **facts.model_dump(), gpu_memory=by_pid.get(facts.pid, {}), problem=facts.cpu_fallback()
        )
        for facts in read_facts(facts_dir(spool), alive)
    ]


def short_provider(provider: str) -> str:
    """`CUDAExecutionProvider` -> `CUDA`."""
    return provider.removesuffix("ExecutionProvider") or provider


def version_runtime(
    reports: Iterable[ReplicaReport], model: str, version: str
) -> tuple[dict[str, int], int | None, str | None]:
    """Replicas per provider, GPU memory in use, and the first problem, of one version."""
    runs_on: dict[str, int] = {}
    memory: int | None = None
    problem: str | None = None
    for r in reports:
        if r.model != model or r.version != version:
            continue
        key = short_provider(r.provider)
        runs_on[key] = runs_on.get(key, 0) + 1
        if r.gpu_memory:
            memory = (memory or 0) + sum(r.gpu_memory.values())
        if r.problem and problem is None:
            problem = f"{r.host} {r.replica}: {r.problem}"
    return runs_on, memory, problem
