"""Both demo versions as real Serve applications, queried over HTTP on loopback."""

from __future__ import annotations

import concurrent.futures
import ipaddress

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits

from serve.onnx_model import OnnxModel
from tests.integration.serve_helpers import deploy, serve_status

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def deployed(ray_cluster, demo_store):
    deploy(ray_cluster, demo_store, {"digits": ["v1", "v2"]})
    return ray_cluster


def url(cluster, version: str) -> str:
    return f"{cluster.serve_url}/models/digits/versions/{version}"


def direct(store, version: str, x: np.ndarray):
    loaded = store.load("digits", version)
    return OnnxModel(loaded.data, loaded.manifest).predict(x)


def samples(n: int) -> np.ndarray:
    return load_digits().data[:n].astype(np.float32)


def test_cluster_listens_on_loopback_only(deployed):
    addresses = deployed.listening_addresses()
    assert addresses, "found no listening sockets of the test cluster"
    for ip, port, name in addresses:
        addr = ipaddress.ip_address(ip)
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        assert addr.is_loopback, f"{name} listens on {ip}:{port}"
    assert 8000 not in {port for _, port, _ in addresses}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_http_predictions_match_onnx_run_directly(deployed, demo_store, version):
    x = samples(64)
    expected = direct(demo_store, version, x)
    # One request with all rows, then one request per row sent concurrently so that
    # @serve.batch merges them into batches of varying size.
    whole = httpx.post(url(deployed, version), json={"instances": x.tolist()}, timeout=30).json()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        singles = list(
            pool.map(
                lambda row: httpx.post(
                    url(deployed, version), json={"instances": [row]}, timeout=30
                ).json(),
                x.tolist(),
            )
        )
    for answers in (whole["predictions"], [s["predictions"][0] for s in singles]):
        labels = np.array([a["label"] for a in answers])
        probs = np.array([a["probabilities"] for a in answers], dtype=np.float64)
        assert np.array_equal(labels, expected.labels)
        assert np.abs(probs - expected.probabilities).max() <= 1e-6
    assert whole["sha256"] == demo_store.manifest("digits", version).sha256
    assert whole["version"] == version


def test_float_bits_through_serve(deployed, demo_store):
    """Replay depends on this: are answers bit-identical to a direct run of the same rows?"""
    x = samples(32)
    expected = direct(demo_store, "v1", x)
    single_expected = np.stack(
        [direct(demo_store, "v1", x[i : i + 1]).probabilities[0] for i in range(len(x))]
    )
    got = httpx.post(url(deployed, "v1"), json={"instances": x.tolist()}, timeout=30).json()
    probs = np.array([a["probabilities"] for a in got["predictions"]], dtype=np.float32)
    # Same rows in the same batch: the float32 values survive JSON exactly.
    assert np.array_equal(probs, expected.probabilities)
    # Recorded for the note: a row's bits may depend on the batch it ran in.
    print(
        "batch-vs-single max abs diff:",
        float(np.abs(single_expected - expected.probabilities).max()),
    )


BAD_BODIES = [
    ("wrong shape", b'{"instances": [[1, 2, 3]]}', 400, "expects 64"),
    ("strings", b'{"instances": [["a", "b"]]}', 400, "values"),
    (
        "string values",
        ('{"instances": [[' + ",".join(['"x"'] * 64) + "]]}").encode(),
        400,
        "not a number",
    ),
    ("NaN", ('{"instances": [[' + ",".join(["NaN"] * 64) + "]]}").encode(), 400, "not finite"),
    ("empty body", b"", 400, "empty body"),
    ("not json", b"{oops", 400, "not valid JSON"),
    ("10 MB body", b"1" * (10 * 1024 * 1024), 413, "exceeds the limit"),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "reason"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_input_gets_4xx_with_reason_and_replica_keeps_serving(
    deployed, name, body, status, reason
):
    r = httpx.post(
        url(deployed, "v1"), content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]
    ok = httpx.post(url(deployed, "v1"), json={"instances": samples(1).tolist()}, timeout=30)
    assert ok.status_code == 200


def test_autoscaling_config_reaches_serve(deployed):
    apps = serve_status(deployed)["applications"]
    for version in ("v1", "v2"):
        dep = apps[f"digits--{version}"]["deployments"]["ModelVersion"]["deployment_config"]
        assert dep["autoscaling_config"]["min_replicas"] == 1
        assert dep["autoscaling_config"]["max_replicas"] == 2
        assert dep["autoscaling_config"]["target_ongoing_requests"] == 16
        assert dep["max_ongoing_requests"] == 64
        assert dep["ray_actor_options"]["num_cpus"] == 0.25
        assert dep["user_config"]["max_batch_size"] == 32
