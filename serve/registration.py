"""Building a manifest for a new artifact: schemas read from the ONNX graph, provenance."""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import onnxruntime as ort

from serve.manifest import Calibration, ExpectedAnswers, InputSchema, OutputSchema, Provenance
from serve.names import check_name, check_version
from serve.onnx_model import predictions_json

log = logging.getLogger("trackside.registration")

# Columns of a reference sample that are not model inputs.
NON_FEATURE_COLUMNS = ("label", "prediction")
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64"}
PROVENANCE_PACKAGES = ("trackside", "onnxruntime", "onnx", "skl2onnx", "scikit-learn", "numpy")


def reference_columns(reference: Path) -> list[str]:
    con = duckdb.connect()
    try:
        rows = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(reference)]).fetchall()
    except duckdb.Error as exc:
        raise ValueError(f"cannot read reference sample {reference}: {exc}") from exc
    finally:
        con.close()
    return [r[0] for r in rows]


def reference_row_count(reference: Path) -> int:
    con = duckdb.connect()
    try:
        (rows,) = con.execute("SELECT count(*) FROM read_parquet(?)", [str(reference)]).fetchall()
        return int(rows[0])
    finally:
        con.close()


def describe_onnx(
    artifact: Path, feature_names: list[str] | None, classes: list[int | str] | None = None
) -> tuple[InputSchema, OutputSchema]:
    """Read input and output schemas from the graph itself, so they cannot disagree with it."""
    try:
        session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ValueError(f"{artifact} is not a loadable ONNX model: {exc}") from exc
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ValueError(f"{artifact} has {len(inputs)} inputs; trackside serves one-tensor models")
    tensor = inputs[0]
    dtype = _ORT_DTYPES.get(tensor.type)
    if dtype is None:
        raise ValueError(f"input {tensor.name} has type {tensor.type}; use float32/float64/int64")
    shape = [d if isinstance(d, int) else None for d in tensor.shape]
    if len(shape) != 2 or shape[1] is None:
        raise ValueError(
            f"input {tensor.name} has shape {tensor.shape}; expected [batch, features]"
        )
    n_features = shape[1]
    if feature_names is None:
        feature_names = [f"f{i}" for i in range(n_features)]
    if len(feature_names) != n_features:
        raise ValueError(
            f"the reference sample has {len(feature_names)} feature columns, the model takes"
            f" {n_features}"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    label = "label" if "label" in outputs else next(iter(outputs))
    probabilities = "probabilities" if "probabilities" in outputs else None
    kind = "classification" if probabilities else "regression"
    return (
        InputSchema(tensor=tensor.name, features=feature_names, dtype=dtype, shape=shape),
        OutputSchema(
            kind=kind,
            label_tensor=label,
            probabilities_tensor=probabilities,
            classes=list(classes or []),
        ),
    )


def _git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def collect_provenance(script: str | None = None) -> Provenance:
    packages = {}
    for name in PROVENANCE_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    script = script or (sys.argv[0] if sys.argv and sys.argv[0] else None)
    where = Path(script).resolve().parent if script and Path(script).exists() else Path.cwd()
    return Provenance(
        script=script,
        git_commit=_git_commit(where),
        packages=packages,
        python=platform.python_version(),
        host=socket.gethostname(),
    )


def manifest_fields(
    model: str,
    version: str,
    artifact: Path,
    reference: Path | None,
    metrics: dict[str, float] | None = None,
    classes: list[int | str] | None = None,
    script: str | None = None,
    calibration_sample: Path | None = None,
) -> dict:
    """Everything of a manifest except what the store computes (sha256, size, file names).
    `calibration_sample`: labelled rows the model did not learn from (a held-out set), for
    the confidence calibration; without it, the reference sample's labels are used (which,
    if it was drawn from the training data, make the estimate optimistic)."""
    check_name("model", model)
    check_version(version)
    features = None
    rows = 0
    if reference is not None:
        features = [c for c in reference_columns(reference) if c not in NON_FEATURE_COLUMNS]
        rows = reference_row_count(reference)
    input_schema, output_schema = describe_onnx(artifact, features, classes)
    labelled = calibration_sample or reference
    return {
        "model": model,
        "version": version,
        "framework": "onnx",
        "input": input_schema,
        "output": output_schema,
        "metrics": dict(metrics or {}),
        "reference_rows": rows,
        "provenance": collect_provenance(script),
        "expected": None
        if reference is None
        else expected_answers(artifact, input_schema, output_schema, reference),
        "calibration": None
        if labelled is None
        else calibrate(artifact, input_schema, output_schema, labelled),
    }


CALIBRATION_BINS = 10  # enough to tell another runtime or artifact; cheap to send at deploy


EXPECTED_ROWS = 16


def _reference_rows(
    reference: Path, input_schema: InputSchema, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The reference sample's feature rows (and its true labels, when it has them)."""
    con = duckdb.connect()
    try:
        names = [*input_schema.features]
        has_label = "label" in reference_columns(reference)
        columns = ", ".join(f'"{f}"' for f in [*names, *(["label"] if has_label else [])])
        rows = con.execute(
            f"SELECT {columns} FROM read_parquet(?)" + (f" LIMIT {limit}" if limit else ""),
            [str(reference)],
        ).fetchnumpy()
    finally:
        con.close()
    x = np.column_stack([rows[f] for f in names]).astype(input_schema.dtype)
    return x, (np.asarray(rows["label"]) if has_label else None)


def _run(
    artifact: Path, input_schema: InputSchema, output_schema: OutputSchema, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The artifact's labels and probabilities for `x` on the CPU (None: it fails on them)."""
    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    names = [output_schema.label_tensor]
    if output_schema.probabilities_tensor:
        names.append(output_schema.probabilities_tensor)
    try:
        out = session.run(names, {input_schema.tensor: x})
    except Exception as exc:  # onnxruntime raises its own untyped errors
        # Registered all the same (what it does when served is for the operator to see),
        # but with nothing to compare its deployed answers with.
        log.warning("%s fails on its reference rows: %s", artifact, exc)
        return None
    return np.asarray(out[0]), (np.asarray(out[1]) if len(out) > 1 else None)


def calibrate(
    artifact: Path, input_schema: InputSchema, output_schema: OutputSchema, reference: Path
) -> Calibration | None:
    """Accuracy per bin of confidence on the whole reference sample (a classifier with
    probabilities, and a reference with its true labels); equal-count bins."""
    x, truth = _reference_rows(reference, input_schema)
    if truth is None or output_schema.kind != "classification" or len(x) < CALIBRATION_BINS:
        return None
    ran = _run(artifact, input_schema, output_schema, x)
    if ran is None or ran[1] is None:
        return None
    labels, probabilities = ran[0], ran[1]
    confidence = probabilities.max(axis=1)
    right = labels.astype(str) == truth.astype(str)
    edges = sorted(set(np.quantile(confidence, np.linspace(0, 1, CALIBRATION_BINS + 1)[1:-1])))
    bins = np.searchsorted(edges, confidence, side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    hits = np.bincount(bins, weights=right, minlength=len(edges) + 1)
    accuracy = [
        float(h / n) if n else float(right.mean()) for h, n in zip(hits, counts, strict=True)
    ]
    return Calibration(
        edges=[float(e) for e in edges], accuracy=accuracy, counts=[int(n) for n in counts]
    )


def expected_answers(
    artifact: Path, input_schema: InputSchema, output_schema: OutputSchema, reference: Path
) -> ExpectedAnswers | None:
    """The version's answers, here and now (CPU), for the reference sample's first rows."""
    x, _ = _reference_rows(reference, input_schema, EXPECTED_ROWS)
    ran = _run(artifact, input_schema, output_schema, x)
    if ran is None:
        return None
    labels, probabilities = ran
    return ExpectedAnswers(
        instances=[[float(v) for v in row] for row in x],
        predictions=predictions_json(labels, probabilities),
        runtime=f"onnxruntime {ort.__version__} CPUExecutionProvider",
    )
