"""A registered model version for benchmarks that need one but never serve it: 20 float
features, a reference sample given by the caller, and a placeholder artifact (its sha256 is
recorded like any other; nothing loads it)."""

from __future__ import annotations

from pathlib import Path

from serve.manifest import InputSchema, OutputSchema
from serve.model_store import ModelStore

MODEL = "synthetic"
VERSION = "v1"
FEATURES = [f"f{i}" for i in range(20)]


def register(root: Path, reference: Path, version: str = VERSION) -> Path:
    """Register MODEL/`version` in a store at `root`; returns the store's root."""
    store = ModelStore(root)
    artifact = root.parent / "placeholder.onnx"
    artifact.write_bytes(b"not a model: benchmarks only read the reference sample")
    fields = {
        "model": MODEL,
        "version": version,
        "input": InputSchema(tensor="x", features=FEATURES, shape=[None, len(FEATURES)]),
        "output": OutputSchema(classes=[0, 1]),
        "metrics": {"accuracy": 0.9},
    }
    store.register(fields, artifact, reference)
    return store.root
