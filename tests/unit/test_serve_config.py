from pathlib import Path

import pytest

from serve.model_config import VersionOptions, parse_model_config
from serve.serve_config import (
    ClusterResources,
    ServeTarget,
    build_serve_config,
    plan_version,
    version_app_config,
)

NO_GPU = ClusterResources(cpus=2, gpus=0)
ONE_GPU = ClusterResources(cpus=8, gpus=1)
TARGET = ServeTarget(store_root=Path("/srv/models"), http_port=18000)


def test_auto_uses_gpu_only_when_the_cluster_has_one():
    options = VersionOptions(accelerator="auto", num_gpus=0.5)
    on_cpu = plan_version("m", "v1", options, NO_GPU)
    on_gpu = plan_version("m", "v1", options, ONE_GPU)
    assert (on_cpu.device, on_cpu.num_gpus, on_cpu.problem) == ("cpu", 0.0, None)
    assert (on_gpu.device, on_gpu.num_gpus, on_gpu.problem) == ("gpu", 0.5, None)


def test_gpu_version_on_a_gpu_less_cluster_is_reported_unschedulable():
    plan = plan_version("m", "v1", VersionOptions(accelerator="gpu", num_gpus=0.5), NO_GPU)
    assert plan.device == "gpu"
    assert plan.problem == "unschedulable: needs GPU 0.5, cluster has none"
    short = plan_version("m", "v1", VersionOptions(accelerator="gpu", num_gpus=2), ONE_GPU)
    assert short.problem == "unschedulable: needs GPU 2, cluster has 1"


def test_cpu_never_asks_for_a_gpu():
    plan = plan_version("m", "v1", VersionOptions(accelerator="cpu"), ONE_GPU)
    assert (plan.device, plan.num_gpus) == ("cpu", 0.0)


def test_missing_custom_resource_is_reported():
    options = VersionOptions(resources={"host_a": 0.01})
    assert "host_a" in plan_version("m", "v1", options, NO_GPU).problem
    ok = ClusterResources(cpus=2, custom={"host_a": 1})
    assert plan_version("m", "v1", options, ok).problem is None


def test_app_config_carries_every_option():
    options = VersionOptions(accelerator="gpu", num_gpus=0.5, max_ongoing_requests=48)
    plan = plan_version("digits", "v2", options, ONE_GPU)
    app = version_app_config(plan, options, TARGET)
    assert app["name"] == "digits--v2"
    assert app["route_prefix"] == "/models/digits/versions/v2"
    assert app["args"]["store"] == "/srv/models"
    (dep,) = app["deployments"]
    assert dep["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 0.5}
    assert dep["max_ongoing_requests"] == 48
    assert dep["max_surge_percent"] > 0, "GPU versions must not lose capacity during updates"
    assert dep["graceful_shutdown_timeout_s"] > options.request_timeout_s
    assert dep["autoscaling_config"]["max_replicas"] == 2
    assert "num_replicas" not in dep
    assert dep["user_config"] == {"max_batch_size": 32, "batch_wait_timeout_s": 0.005}


def test_cpu_versions_do_not_surge_and_fixed_replicas_disable_autoscaling():
    options = VersionOptions(accelerator="cpu", num_replicas=3)
    (dep,) = version_app_config(plan_version("m", "v", options, NO_GPU), options, TARGET)[
        "deployments"
    ]
    assert dep["max_surge_percent"] == 0
    assert dep["num_replicas"] == 3 and "autoscaling_config" not in dep


def test_full_config_lists_every_app_once_and_validates_against_serve_schema():
    config = parse_model_config({"model": "digits", "versions": {"v1": {}, "v2": {}}})
    apps = [
        version_app_config(
            plan_version("digits", v, config.options(v), NO_GPU), config.options(v), TARGET
        )
        for v in ("v2", "v1")
    ]
    full = build_serve_config(apps, TARGET)
    assert [a["name"] for a in full["applications"]] == ["digits--v1", "digits--v2"]
    assert full["http_options"] == {"host": "127.0.0.1", "port": 18000}
    # Serve's own schema accepts it (the only place this test touches Ray).
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(full)
    with pytest.raises(ValueError, match="duplicate"):
        build_serve_config(apps + apps[:1], TARGET)
