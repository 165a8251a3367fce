"""The Serve config builder: the one place that knows Ray Serve's declarative config schema.

It turns model configs into the full config that `PUT /api/serve/applications/` takes. A PUT
removes every application it does not list, so callers always build the whole config.
No Ray import: the agent (controller role) uses this module too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from serve.model_config import ModelConfig, RouterOptions, VersionOptions
from serve.names import app_name, router_app_name
from serve.routing_table import RoutingTable

VERSION_IMPORT_PATH = "serve.version_app:build"
VERSION_DEPLOYMENT = "ModelVersion"
ROUTER_IMPORT_PATH = "serve.router_app:build"
ROUTER_DEPLOYMENT = "Router"
TABLE_DEPLOYMENT = "RoutingTableHolder"
GPU_MAX_SURGE_PERCENT = 25


@dataclass(frozen=True)
class ClusterResources:
    """What the cluster has in total (from the dashboard), to resolve `accelerator = auto`."""

    cpus: float = 0.0
    gpus: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ServeTarget:
    """Settings of the Serve instance the config is for."""

    store_root: Path
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] = "EveryNode"


@dataclass(frozen=True)
class VersionPlan:
    """How one version will be placed, and why it may not be schedulable."""

    model: str
    version: str
    app: str
    route_prefix: str
    device: Literal["gpu", "cpu"]
    num_gpus: float
    problem: str | None = None


def version_route(model: str, version: str) -> str:
    return f"/models/{model}/versions/{version}"


def _fmt(value: float) -> str:
    return f"{value:g}"


def plan_version(
    model: str, version: str, options: VersionOptions, cluster: ClusterResources
) -> VersionPlan:
    """Resolve the accelerator and say up front when the cluster cannot place a replica.

    Serve leaves a replica it cannot place DEPLOYING forever; knowing the totals, we can
    report it at once instead.
    """
    wants_gpu = options.accelerator == "gpu" or (
        options.accelerator == "auto" and cluster.gpus >= options.num_gpus
    )
    problem = None
    if wants_gpu and cluster.gpus < options.num_gpus:
        has = "none" if cluster.gpus == 0 else _fmt(cluster.gpus)
        problem = f"unschedulable: needs GPU {_fmt(options.num_gpus)}, cluster has {has}"
    elif cluster.cpus and options.num_cpus > cluster.cpus:
        problem = (
            f"unschedulable: needs CPU {_fmt(options.num_cpus)}, cluster has {_fmt(cluster.cpus)}"
        )
    for name, amount in sorted(options.resources.items()):
        if problem is None and cluster.custom.get(name, 0.0) < amount:
            problem = f"unschedulable: needs resource {name} {_fmt(amount)}, cluster has none"
    return VersionPlan(
        model=model,
        version=version,
        app=app_name(model, version),
        route_prefix=version_route(model, version),
        device="gpu" if wants_gpu else "cpu",
        num_gpus=options.num_gpus if wants_gpu else 0.0,
        problem=problem,
    )


def _scaling(options: VersionOptions) -> dict[str, Any]:
    if options.num_replicas is not None:
        return {"num_replicas": options.num_replicas}
    auto = options.autoscaling
    config: dict[str, Any] = {
        "min_replicas": auto.min_replicas,
        "max_replicas": auto.max_replicas,
        "target_ongoing_requests": auto.target_ongoing_requests,
        "upscale_delay_s": auto.upscale_delay_s,
        "downscale_delay_s": auto.downscale_delay_s,
    }
    if auto.initial_replicas is not None:
        config["initial_replicas"] = auto.initial_replicas
    return {"autoscaling_config": config}


def version_user_config(options: VersionOptions) -> dict[str, Any]:
    """What a replica can change in place (Serve calls `reconfigure`, no restart)."""
    return {
        "max_batch_size": options.max_batch_size,
        "batch_wait_timeout_s": options.batch_wait_timeout_s,
    }


def version_app_config(
    plan: VersionPlan, options: VersionOptions, target: ServeTarget, spool_dir: Path | None = None
) -> dict[str, Any]:
    actor_options: dict[str, Any] = {"num_cpus": options.num_cpus, "num_gpus": plan.num_gpus}
    if options.resources:
        actor_options["resources"] = dict(options.resources)
    surge = options.max_surge_percent
    if surge is None:
        surge = GPU_MAX_SURGE_PERCENT if plan.device == "gpu" else 0
    deployment: dict[str, Any] = {
        "name": VERSION_DEPLOYMENT,
        "max_ongoing_requests": options.max_ongoing_requests,
        "graceful_shutdown_timeout_s": options.graceful_shutdown_timeout_s,
        "max_surge_percent": surge,
        "ray_actor_options": actor_options,
        "user_config": version_user_config(options),
        **_scaling(options),
    }
    return {
        "name": plan.app,
        "route_prefix": plan.route_prefix,
        "import_path": VERSION_IMPORT_PATH,
        "args": {
            "store": str(target.store_root),
            "model": plan.model,
            "version": plan.version,
            "max_rows": options.max_rows_per_request,
            "max_body_bytes": options.max_body_bytes,
            # Where its replicas tell the host's agent what they run on (replica_facts.py).
            "spool_dir": str(spool_dir) if spool_dir else None,
            "asked_gpus": plan.num_gpus,
        },
        "deployments": [deployment],
    }


def model_route(model: str) -> str:
    return f"/models/{model}"


def router_app_config(
    model: str,
    table: RoutingTable,
    options: RouterOptions,
    spool_dir: Path | None,
    replay_token_sha256: str | None = None,
    name: str | None = None,
    route_prefix: str | None = None,
) -> dict[str, Any]:
    """The router application of one model.

    The table lives in the user_config of a one-replica deployment: a PUT that changes only
    it reconfigures that replica in place, and every router replica long-polls it.
    """
    return {
        "name": name or router_app_name(model),
        "route_prefix": route_prefix or model_route(model),
        "import_path": ROUTER_IMPORT_PATH,
        "args": {"model": model, "spool_dir": str(spool_dir) if spool_dir else None},
        "deployments": [
            {
                "name": ROUTER_DEPLOYMENT,
                "num_replicas": options.num_replicas,
                **(
                    {"max_replicas_per_node": options.max_replicas_per_node}
                    if options.max_replicas_per_node is not None
                    else {}
                ),
                "max_ongoing_requests": options.max_ongoing_requests,
                "graceful_shutdown_timeout_s": options.graceful_shutdown_timeout_s,
                "ray_actor_options": {"num_cpus": options.num_cpus},
                "user_config": options.user_config(replay_token_sha256).model_dump(),
            },
            {
                "name": TABLE_DEPLOYMENT,
                "num_replicas": 1,
                # Every router replica holds one long-poll open here.
                "max_ongoing_requests": 10_000,
                "ray_actor_options": {"num_cpus": 0.01},
                "user_config": {"table": table.model_dump()},
            },
        ],
    }


def build_serve_config(applications: list[dict[str, Any]], target: ServeTarget) -> dict[str, Any]:
    """The whole declarative config: every application trackside wants to exist."""
    names = [a["name"] for a in applications]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate application names in {names}")
    return {
        "proxy_location": target.proxy_location,
        "http_options": {"host": target.http_host, "port": target.http_port},
        "applications": sorted(applications, key=lambda a: a["name"]),
    }


@dataclass(frozen=True)
class Deployed:
    """What trackside wants running for one model: its versions, and its router's table
    (None: no router)."""

    versions: list[str]
    table: RoutingTable | None


@dataclass(frozen=True)
class Deployment:
    """The whole config to PUT, and how each version will be placed."""

    config: dict[str, Any]
    plans: dict[str, VersionPlan]


def desired_config(
    models: dict[str, ModelConfig],
    deployed: dict[str, Deployed],
    cluster: ClusterResources,
    target: ServeTarget,
    spool_dir: Path | None = None,
    replay_token_sha256: str | None = None,
    extra_apps: list[dict[str, Any]] | None = None,
) -> Deployment:
    """Every application of every model (versions and routers), plus `extra_apps`."""
    apps, plans = list(extra_apps or []), {}
    for model, wanted in sorted(deployed.items()):
        if model not in models:
            raise ValueError(f"no config for model {model!r}")
        config = models[model]
        for version in wanted.versions:
            options = config.options(version)
            plan = plan_version(model, version, options, cluster)
            plans[plan.app] = plan
            apps.append(version_app_config(plan, options, target, spool_dir))
        if wanted.table is not None:
            apps.append(
                router_app_config(
                    model, wanted.table, config.router, spool_dir, replay_token_sha256
                )
            )
    return Deployment(config=build_serve_config(apps, target), plans=plans)
