"""ONNX Runtime session for one verified artifact (no Ray: replay and tests use it directly)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from serve.manifest import Manifest
from serve.replica_facts import CPU, CUDA


def choose_providers(gpu_assigned: bool) -> list[str]:
    """CUDA only when a GPU was really assigned and this onnxruntime build has CUDA.

    A logical GPU in a test cluster sets CUDA_VISIBLE_DEVICES without any CUDA behind it:
    the CPU build of onnxruntime has no CUDA provider, so it stays on the CPU.
    """
    available = ort.get_available_providers()
    if gpu_assigned and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def predictions_json(labels: np.ndarray, probabilities: np.ndarray | None) -> list[dict[str, Any]]:
    """Plain JSON values; float32 → Python float is exact, so replay can compare bits."""
    out = []
    for i, label in enumerate(labels.tolist()):
        row: dict[str, Any] = {"label": label}
        if probabilities is not None:
            row["probabilities"] = [float(p) for p in probabilities[i]]
        out.append(row)
    return out


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray
    probabilities: np.ndarray | None


class OnnxModel:
    def __init__(self, data: bytes, manifest: Manifest, gpu_assigned: bool = False) -> None:
        options = ort.SessionOptions()
        # Replicas share a small host: one intra-op thread each, Serve scales replicas instead.
        options.intra_op_num_threads = int(os.environ.get("TRACKSIDE_ORT_THREADS", "1"))
        options.inter_op_num_threads = 1
        self.providers = choose_providers(gpu_assigned)
        self.session = ort.InferenceSession(data, sess_options=options, providers=self.providers)
        self.manifest = manifest
        self._outputs = [manifest.output.label_tensor]
        if manifest.output.probabilities_tensor:
            self._outputs.append(manifest.output.probabilities_tensor)

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def predict(self, rows: np.ndarray) -> Prediction:
        results = self.session.run(self._outputs, {self.manifest.input.tensor: rows})
        probabilities = np.asarray(results[1]) if len(results) > 1 else None
        return Prediction(labels=np.asarray(results[0]), probabilities=probabilities)
