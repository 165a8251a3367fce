import json
import stat

import duckdb
import numpy as np
import pytest

from serve.manifest import MANIFEST_FILE
from serve.model_store import IntegrityError, ModelStore, StoreError
from serve.names import InvalidName
from serve.onnx_model import OnnxModel
from serve.registration import manifest_fields


def test_demo_manifest_holds_the_contract(demo_store):
    m = demo_store.manifest("digits", "v1")
    assert (m.model, m.version, m.framework) == ("digits", "v1", "onnx")
    assert len(m.sha256) == 64 and m.size_bytes > 0
    assert m.input.features[0] == "px_0_0" and len(m.input.features) == 64
    assert m.input.shape == [None, 64] and m.input.dtype == "float32"
    assert m.output.classes == list(range(10))
    assert {"accuracy", "f1_macro", "log_loss"} <= set(m.metrics)
    assert m.reference == "reference.parquet" and m.reference_rows == 600
    assert m.provenance.script.endswith("train_demo_models.py")
    assert {"onnxruntime", "skl2onnx", "scikit-learn"} <= set(m.provenance.packages)
    assert m.allow_pickle is False
    ref = demo_store.reference_path("digits", "v1")
    cols = [r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM '{ref}'").fetchall()]
    assert cols[:64] == m.input.features and cols[64:] == ["label", "prediction"]


def test_list_is_sorted_and_filtered(demo_store):
    assert [(m.model, m.version) for m in demo_store.list()] == [("digits", "v1"), ("digits", "v2")]
    assert demo_store.list("nothing") == []


def _copy_store(demo_store, tmp_path) -> ModelStore:
    store = ModelStore(tmp_path / "store")
    for version in ("v1",):
        src = demo_store.version_dir("digits", version)
        m = demo_store.manifest("digits", version)
        store.register(
            manifest_fields(
                "digits", version, src / m.artifact, src / "reference.parquet", m.metrics
            ),
            src / m.artifact,
            src / "reference.parquet",
        )
    return store


def test_register_refuses_to_overwrite(demo_store, tmp_path):
    store = _copy_store(demo_store, tmp_path)
    src = demo_store.version_dir("digits", "v1")
    before = (store.version_dir("digits", "v1") / MANIFEST_FILE).read_text()
    with pytest.raises(StoreError, match="already registered"):
        store.register(
            manifest_fields("digits", "v1", src / "digits-v1.onnx", None),
            src / "digits-v1.onnx",
            None,
        )
    assert (store.version_dir("digits", "v1") / MANIFEST_FILE).read_text() == before
    assert not any(p.name.startswith(".staging") for p in (store.root / "digits").iterdir())


def test_register_refuses_path_traversal(demo_store, tmp_path):
    store = ModelStore(tmp_path / "store")
    src = demo_store.version_dir("digits", "v1") / "digits-v1.onnx"
    for model, version in [("../evil", "v1"), ("digits", "../../etc"), ("digits", "a/b")]:
        with pytest.raises(InvalidName):
            store.register({"model": model, "version": version}, src, None)
        with pytest.raises(InvalidName):
            manifest_fields(model, version, src, None)
    assert not (tmp_path / "evil").exists()


def test_tampered_artifact_is_refused_naming_both_hashes(demo_store, tmp_path):
    store = _copy_store(demo_store, tmp_path)
    manifest = store.manifest("digits", "v1")
    artifact = store.version_dir("digits", "v1") / manifest.artifact
    artifact.chmod(artifact.stat().st_mode | stat.S_IWUSR)
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as info:
        store.load("digits", "v1")
    message = str(info.value)
    assert manifest.sha256 in message
    import hashlib

    assert hashlib.sha256(bytes(data)).hexdigest() in message


def test_a_pickle_framework_is_never_loaded(demo_store, tmp_path):
    store = _copy_store(demo_store, tmp_path)
    path = store.version_dir("digits", "v1") / MANIFEST_FILE
    doc = json.loads(path.read_text())
    doc["framework"] = "sklearn-pickle"
    doc["allow_pickle"] = True
    path.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="invalid"):
        store.load("digits", "v1")


def test_loaded_artifact_predicts_like_the_manifest_says(demo_store):
    loaded = demo_store.load("digits", "v2")
    model = OnnxModel(loaded.data, loaded.manifest)
    assert model.provider == "CPUExecutionProvider"
    ref = demo_store.reference_path("digits", "v2")
    rows = duckdb.sql(f"SELECT * FROM '{ref}'").fetchnumpy()
    x = np.stack([rows[f] for f in loaded.manifest.input.features], axis=1).astype(np.float32)
    out = model.predict(x)
    assert out.probabilities.shape == (len(x), 10)
    # The reference sample recorded scikit-learn's own predictions: ONNX agrees.
    assert (out.labels == rows["prediction"]).mean() > 0.99


def test_training_twice_gives_the_same_predictions(demo_store, tmp_path):
    from scripts.train_demo_models import train_and_register

    again = ModelStore(tmp_path / "again")
    train_and_register(again, tmp_path)
    for version in ("v1", "v2"):
        a = demo_store.load("digits", version)
        b = again.load("digits", version)
        x = np.random.default_rng(0).uniform(0, 16, size=(200, 64)).astype(np.float32)
        pa = OnnxModel(a.data, a.manifest).predict(x)
        pb = OnnxModel(b.data, b.manifest).predict(x)
        assert np.array_equal(pa.labels, pb.labels)
        assert np.array_equal(pa.probabilities, pb.probabilities)


def test_a_registration_left_half_done_is_ignored_and_cleaned(demo_store, tmp_path):
    """Before: a `.staging-*` folder left by a killed `models register` (its manifest already
    written) made `models list` fail on the folder's name."""
    import os
    import shutil

    store = _copy_store(demo_store, tmp_path)
    v1 = store.version_dir("digits", "v1")
    leftover = v1.parent / ".staging-v2-deadbeef"
    shutil.copytree(v1, leftover)
    assert [(m.model, m.version) for m in store.list()] == [("digits", "v1")]
    old = leftover.stat().st_mtime - 2 * 3600
    os.utime(leftover, (old, old))
    src = demo_store.version_dir("digits", "v2")
    m = demo_store.manifest("digits", "v2")
    store.register(
        manifest_fields("digits", "v2", src / m.artifact, None, m.metrics), src / m.artifact, None
    )
    assert not leftover.exists()  # an hour-old registration was killed: removed
    assert [m.version for m in store.list()] == ["v1", "v2"]


@pytest.mark.parametrize("name", ["manifest.json", "reference.parquet"])
def test_an_artifact_named_like_the_store_own_files_is_refused(demo_store, tmp_path, name):
    """Before: it became a version that could never load (the manifest overwrote it)."""
    store = ModelStore(tmp_path / "store")
    src = demo_store.version_dir("digits", "v1")
    renamed = tmp_path / name
    renamed.write_bytes((src / demo_store.manifest("digits", "v1").artifact).read_bytes())
    with pytest.raises(StoreError, match="may not be named"):
        store.register(manifest_fields("digits", "v1", renamed, None), renamed, None)
    assert store.list() == []


def test_a_reference_outside_the_version_folder_is_refused(demo_store, tmp_path):
    store = _copy_store(demo_store, tmp_path)
    folder = store.version_dir("digits", "v1")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["reference"] = "../../../etc/passwd"
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="not a plain file name"):
        store.reference_path("digits", "v1")
    manifest["reference"] = "reference.parquet"
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    outside = tmp_path / "elsewhere.parquet"
    (folder / "reference.parquet").rename(outside)
    (folder / "reference.parquet").symlink_to(outside)
    with pytest.raises(StoreError, match="outside"):
        store.reference_path("digits", "v1")
