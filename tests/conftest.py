"""Shared fixtures: the demo models in a temporary store, and one local Ray cluster per session
on its own loopback ports (never 8000: Serve's proxy binds with SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.local_cluster import LocalCluster
from serve.model_store import ModelStore


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    from scripts.train_demo_models import train_and_register

    root = tmp_path_factory.mktemp("store")
    store = ModelStore(root / "models")
    work = tmp_path_factory.mktemp("train")
    train_and_register(store, work)
    return store


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    log = tmp_path_factory.mktemp("ray") / "ray.log"
    cluster = LocalCluster(num_cpus=4, log_file=log)
    assert cluster.ports["serve_http"] != 8000
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def run(coro):  # small helper for sync tests that drive async clients
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
