"""Real ONNX models that fail at run time (a Reshape no input can satisfy): the tests see a
version raise inside a real replica without any test hook in the serving code. `broken`
fails every call; `flaky` is a working model that fails only on the calls whose digit has
ink at one pixel (pixel 5 above 15: 5% of the load's digits)."""

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


def flaky_onnx(working: Path, path: Path, feature: int = 5, above: float = 15.0) -> Path:
    """`working`'s graph, with its label made to fail when any row has `feature` > `above`."""
    model = onnx.load(working)
    graph = model.graph
    x = graph.input[0].name
    label = next(o for o in graph.output if o.name == "label")
    for node in graph.node:  # the working label becomes an inner value
        node.output[:] = ["label_ok" if o == "label" else o for o in node.output]
    impossible = helper.make_tensor("impossible", TensorProto.INT64, [2], [-1, 7])
    then_branch = helper.make_graph(
        [helper.make_node("Reshape", ["label_ok", "impossible"], ["failed"])],
        "fail",
        [],
        [helper.make_tensor_value_info("failed", label.type.tensor_type.elem_type, None)],
        initializer=[impossible],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["label_ok"], ["passed"])],
        "pass",
        [],
        [helper.make_tensor_value_info("passed", label.type.tensor_type.elem_type, None)],
    )
    graph.initializer.extend(
        [
            helper.make_tensor("pixel", TensorProto.INT64, [1], [feature]),
            helper.make_tensor("above", TensorProto.FLOAT, [], [above]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Gather", [x, "pixel"], ["column"], axis=1),
            helper.make_node("Greater", ["column", "above"], ["inked"]),
            helper.make_node("Cast", ["inked"], ["inked_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMax", ["inked_f"], ["any_inked"], keepdims=0),
            helper.make_node("Greater", ["any_inked", "half"], ["fail"]),
            helper.make_node(
                "If", ["fail"], ["label"], then_branch=then_branch, else_branch=else_branch
            ),
        ]
    )
    graph.initializer.append(helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]))
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def register_flaky(
    store: ModelStore, working: Path, reference: Path, work: Path, version: str = "flaky"
) -> None:
    artifact = flaky_onnx(working, work / f"{version}.onnx")
    store.register(manifest_fields("digits", version, artifact, reference), artifact, reference)
