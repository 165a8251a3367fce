"""A real ONNX model that fails at run time (a Reshape no input can satisfy): lets the tests
see a version raise inside a real replica without any test hook in the serving code."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from serve.model_store import ModelStore
from serve.registration import manifest_fields


def broken_onnx(path: Path) -> Path:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 64])
    label = helper.make_tensor_value_info("label", TensorProto.FLOAT, None)
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 64])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 7])  # 64 is not 7·k
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["X", "shape"], ["label"]),
            helper.make_node("Identity", ["X"], ["probabilities"]),
        ],
        "broken",
        [x],
        [label, probs],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def register_broken(
    store: ModelStore, reference: Path, work: Path, version: str = "broken"
) -> None:
    artifact = broken_onnx(work / "broken.onnx")
    store.register(manifest_fields("digits", version, artifact, reference), artifact, reference)
