"""Train the demo models on scikit-learn's bundled digits data, export to ONNX, register them.

digits/v1: standardised logistic regression. digits/v2: a random forest. Both are seeded, so
running this twice gives the same predictions. Nothing is downloaded: the digits data ship
inside scikit-learn.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serve.model_store import DEFAULT_STORE, ModelStore
from serve.registration import manifest_fields

SEED = 7
MODEL = "digits"
REFERENCE_ROWS = 600
FEATURES = [f"px_{r}_{c}" for r in range(8) for c in range(8)]


def build_versions() -> dict[str, object]:
    return {
        "v1": make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=3000, C=0.5, random_state=SEED)
        ),
        "v2": RandomForestClassifier(n_estimators=80, max_depth=12, random_state=SEED, n_jobs=1),
    }


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)


def write_reference(path: Path, x: np.ndarray, y: np.ndarray, predicted: np.ndarray) -> None:
    columns = {name: x[:, i] for i, name in enumerate(FEATURES)}
    columns["label"] = y
    columns["prediction"] = predicted.astype(np.int64)
    con = duckdb.connect()
    try:
        con.register("reference", columns)
        con.execute(f"COPY reference TO '{path}' (FORMAT parquet)")
    finally:
        con.close()


def train_and_register(store: ModelStore, out_dir: Path) -> list[str]:
    x_train, x_test, y_train, y_test = split()
    rng = np.random.default_rng(SEED)
    ref_idx = np.sort(rng.choice(len(x_train), size=REFERENCE_ROWS, replace=False))
    done = []
    for version, estimator in build_versions().items():
        if store.exists(MODEL, version):
            print(f"{MODEL}/{version}: already registered in {store.root}, skipped")
            continue
        estimator.fit(x_train, y_train)
        proba = estimator.predict_proba(x_test)
        metrics = {
            "accuracy": round(float(accuracy_score(y_test, estimator.predict(x_test))), 6),
            "f1_macro": round(
                float(f1_score(y_test, estimator.predict(x_test), average="macro")), 6
            ),
            "log_loss": round(float(log_loss(y_test, proba)), 6),
        }
        onnx_model = to_onnx(
            estimator,
            x_train[:1],
            options={"zipmap": False},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
        artifact = out_dir / f"{MODEL}-{version}.onnx"
        artifact.write_bytes(onnx_model.SerializeToString())
        reference = out_dir / f"{MODEL}-{version}-reference.parquet"
        write_reference(
            reference, x_train[ref_idx], y_train[ref_idx], estimator.predict(x_train[ref_idx])
        )
        # Held-out digits for the confidence calibration (the reference is training data).
        held_out = out_dir / f"{MODEL}-{version}-calibration.parquet"
        write_reference(held_out, x_test, y_test, estimator.predict(x_test))
        fields = manifest_fields(
            MODEL,
            version,
            artifact,
            reference,
            calibration_sample=held_out,
            metrics=metrics,
            classes=[int(c) for c in estimator.classes_],
            script=str(Path(__file__).resolve()),
        )
        manifest = store.register(fields, artifact, reference)
        print(f"{MODEL}/{version}: registered {manifest.sha256[:12]} {metrics}")
        done.append(version)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help="model store folder")
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    with tempfile.TemporaryDirectory() as tmp:
        train_and_register(store, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
