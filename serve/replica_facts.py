"""What each model-version replica says about itself, for the agent of its host: which
process it is, which GPUs Ray gave it, and which ONNX Runtime execution provider it really
runs on. A replica writes one small JSON file under its host's spool folder when it starts
(atomically, mode 0600); the agent reads them and drops those whose process is gone.

This is how a GPU host never runs on the CPU silently: a replica that asked for a GPU and got
the CPU provider is a problem the agent names, and NVML's per-process GPU memory (by pid) is
attributed to a model version.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

FACTS_DIR = "replicas"  # under the spool folder
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ReplicaFacts(BaseModel):
    model: str
    version: str
    replica: str
    host: str
    pid: int
    process_started: float = Field(description="the process's start (epoch s): pids recur")
    asked_gpus: float = Field(description="GPUs per replica in the version's plan")
    gpu_ids: list[str] = Field(description="what Ray assigned (CUDA_VISIBLE_DEVICES)")
    provider: str = Field(description="the execution provider the session runs on")
    available_providers: list[str]
    onnxruntime: str
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def on_gpu(self) -> bool:
        return self.provider != CPU

    def cpu_fallback(self) -> str | None:
        """A replica that asked for a GPU and runs on the CPU, said in plain words."""
        if self.asked_gpus <= 0 or self.on_gpu:
            return None
        asked = f"asked for GPU {self.asked_gpus:g}, running on CPU"
        if CUDA not in self.available_providers:
            return (
                f"{asked}: this onnxruntime ({self.onnxruntime}) has no CUDA provider; install"
                " trackside[gpu] (onnxruntime-gpu) on the host"
            )
        if not self.gpu_ids:
            return f"{asked}: Ray assigned it no GPU"
        return f"{asked}: the CUDA provider did not load (CUDA or cuDNN missing? see its log)"


def facts_dir(spool_dir: Path | str) -> Path:
    return Path(spool_dir) / FACTS_DIR


def write_facts(folder: Path, facts: ReplicaFacts) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{facts.replica.replace('/', '_')}.json"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(facts.model_dump_json())
    os.replace(tmp, path)
    return path


def read_facts(folder: Path, alive: Callable[[ReplicaFacts], bool]) -> list[ReplicaFacts]:
    """The replicas of this host whose process still runs; files of the dead are removed
    (a replica killed with -9 cannot remove its own)."""
    out = []
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            facts = ReplicaFacts.model_validate(json.loads(path.read_text()))
        except (OSError, ValueError, ValidationError):
            continue
        if alive(facts):
            out.append(facts)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return out
