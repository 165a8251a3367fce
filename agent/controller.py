"""The controller role: the desired Serve state of every model, and the actions that change it.

State per model (versions deployed, routing table, stable and its predecessors) lives in the
agent's DuckDB; every change builds the *whole* Serve config and PUTs it. If the PUT (or the
new version's start) fails, the stored state is left as it was, and the old table stays in
force. One action per model at a time: a second one gets 409.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.api_models import ActionResult, ModelStatus, TrafficRequest, VersionStatus
from agent.deployer import DeployError, wait_until_running
from agent.serve_api import ServeAPI, ServeAPIError
from agent.serve_status import ServeStatus, diagnose
from agent.store import Store
from serve.manifest import Manifest
from serve.model_config import ModelConfig
from serve.model_store import ModelStore, StoreError
from serve.names import InvalidName, app_name, check_version, router_app_name
from serve.routing_table import RoutingTable
from serve.serve_config import (
    ServeTarget,
    build_serve_config,
    plan_version,
    router_app_config,
    version_app_config,
)

log = logging.getLogger("trackside.agent.controller")


class ActionError(Exception):
    """An action refused or failed; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ModelState(BaseModel):
    model: str
    versions: list[str]
    table: RoutingTable
    stable: str
    previous_stable: list[str] = []


class Controller:
    def __init__(
        self,
        store: Store,
        serve_api: ServeAPI,
        models: list[ModelConfig],
        model_store: ModelStore,
        target: ServeTarget,
        spool_dir: Path,
        replay_token: str,
        apply_timeout_s: float = 120,
    ) -> None:
        self.store = store
        self.api = serve_api
        self.models = {m.model: m for m in models}
        self.model_store = model_store
        self.target = target
        self.spool_dir = spool_dir
        self.replay_token_sha256 = hashlib.sha256(replay_token.encode()).hexdigest()
        self.apply_timeout_s = apply_timeout_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._manifests: dict[tuple[str, str], Manifest] = {}
        self.last_status: ServeStatus | None = None

    # -- state -------------------------------------------------------------------------------
    def state(self, model: str) -> ModelState:
        if model not in self.models:
            raise ActionError(404, f"unknown model {model!r}; known: {sorted(self.models)}")
        doc = self.store.get_state(f"model:{model}")
        if doc is None:
            raise ActionError(409, f"model {model} has not been deployed yet")
        return ModelState.model_validate(doc)

    def states(self) -> dict[str, ModelState]:
        out = {}
        for model in self.models:
            doc = self.store.get_state(f"model:{model}")
            if doc is not None:
                out[model] = ModelState.model_validate(doc)
        return out

    def _save(self, state: ModelState) -> None:
        self.store.put_state(f"model:{state.model}", state.model_dump(mode="json"))

    def full_config(self, override: ModelState | None = None) -> tuple[dict[str, Any], dict]:
        """The whole Serve config for every model, with `override` in place of its stored state."""
        states = self.states()
        if override is not None:
            states[override.model] = override
        apps, plans = [], {}
        cluster = self._cluster
        for model, state in sorted(states.items()):
            config = self.models[model]
            for version in state.versions:
                options = config.options(version)
                plan = plan_version(model, version, options, cluster)
                plans[plan.app] = plan
                apps.append(version_app_config(plan, options, self.target))
            apps.append(
                router_app_config(
                    model, state.table, config.router, self.spool_dir, self.replay_token_sha256
                )
            )
        return build_serve_config(apps, self.target), plans

    async def refresh_cluster(self) -> None:
        self._cluster = await self.api.cluster_resources()

    async def bootstrap(self) -> None:
        """Deploy every configured model that has no state yet, and re-apply the rest."""
        await self.refresh_cluster()
        for model, config in self.models.items():
            if self.store.get_state(f"model:{model}") is not None:
                continue
            stable = config.stable or next(v for v in config.versions if v != "*")
            self._manifest(model, stable)
            table = RoutingTable(
                route_version=1, weights={stable: 100}, sticky_header=config.router.sticky_header
            )
            self._save(ModelState(model=model, versions=[stable], table=table, stable=stable))
        config, _ = self.full_config()
        await self.api.put_applications(config)

    # -- helpers -----------------------------------------------------------------------------
    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())

    def _stored_manifest(self, model: str, version: str) -> Manifest:
        """Versions are immutable, so a manifest read once is kept (status is polled often)."""
        key = (model, version)
        if key not in self._manifests:
            self._manifests[key] = self.model_store.manifest(model, version)
        return self._manifests[key]

    def _manifest(self, model: str, version: str) -> Manifest:
        try:
            check_version(version)
            return self._stored_manifest(model, version)
        except (StoreError, InvalidName) as exc:
            raise ActionError(422, f"unknown version {model}/{version}: {exc}") from exc

    async def _serve_status(self) -> ServeStatus:
        self.last_status = ServeStatus.parse(await self.api.get_applications())
        return self.last_status

    async def _require_running(self, model: str, versions: set[str]) -> None:
        status = await self._serve_status()
        for version in sorted(versions):
            app = status.applications.get(app_name(model, version))
            if app is None or app.status != "RUNNING":
                state = "not deployed" if app is None else app.status
                problem = diagnose(app) if app else None
                raise ActionError(
                    422,
                    f"version {version} of {model} is {state}"
                    + (f" ({problem})" if problem else "")
                    + "; deploy it and wait until it is RUNNING",
                )

    async def _apply(self, new: ModelState, wait_for: list[str] | None = None) -> None:
        await self.refresh_cluster()
        config, plans = self.full_config(override=new)
        old_config, _ = self.full_config()
        try:
            await self.api.put_applications(config)
            if wait_for:
                await wait_until_running(self.api, wait_for, plans, timeout_s=self.apply_timeout_s)
        except (ServeAPIError, DeployError) as exc:
            old = self.states().get(new.model)
            in_force = f"route_version {old.table.route_version}" if old else "no table"
            if wait_for:
                # Put back what was there: the new version must not linger half-deployed.
                try:
                    await self.api.put_applications(old_config)
                except ServeAPIError as revert_exc:
                    log.error("could not restore the previous Serve config: %s", revert_exc)
            raise ActionError(
                502,
                f"apply failed: {exc}; the previous routing table ({in_force}) is still in force",
            ) from exc
        self._save(new)

    async def _act(self, model: str, action: str, who: str, request: Any, change) -> ActionResult:
        lock = self._lock(model)
        if lock.locked():
            raise ActionError(409, f"another action on {model} is in flight; retry when it ends")
        async with lock:
            before = None
            try:
                state = self.state(model)
                before = state.table
                new, message, wait_for = await change(state)
                if new is None:
                    after, changed = before, False
                else:
                    await self._apply(new, wait_for)
                    after, changed = new.table, True
            except ActionError as exc:
                self.store.audit(
                    who,
                    action,
                    model,
                    request,
                    _dump(before),
                    None,
                    "refused" if exc.status < 500 else "failed",
                    exc.message,
                )
                raise
            audit_id = self.store.audit(
                who, action, model, request, _dump(before), _dump(after), "ok"
            )
            return ActionResult(
                action=action,
                model=model,
                changed=changed,
                before=before,
                after=after,
                message=message,
                audit_id=audit_id,
            )

    def _next_table(self, state: ModelState, **changes: Any) -> RoutingTable:
        doc = state.table.model_dump()
        doc.update(changes)
        doc["route_version"] = state.table.route_version + 1
        try:
            return RoutingTable.model_validate(doc)
        except ValidationError as exc:
            raise ActionError(422, _first_error(exc)) from exc

    # -- actions -------------------------------------------------------------------------------
    async def deploy(self, model: str, version: str, force: bool, who: str) -> ActionResult:
        async def change(state: ModelState):
            manifest = self._manifest(model, version)
            if version in state.versions:
                return None, f"{model}/{version} is already deployed", None
            if not force:
                self._check_blessing(model, state.stable, manifest.metrics, version)
            new = state.model_copy(update={"versions": [*state.versions, version]})
            return new, f"deployed {model}/{version} (no traffic yet)", [app_name(model, version)]

        return await self._act(model, "deploy", who, {"version": version, "force": force}, change)

    def _check_blessing(
        self, model: str, stable: str, metrics: dict[str, float], version: str
    ) -> None:
        rules = self.models[model].blessing
        base = self._stored_manifest(model, stable).metrics
        failures = []
        for metric, rule in sorted(rules.items()):
            if metric not in metrics or metric not in base:
                continue
            worse = (
                base[metric] - metrics[metric]
                if rule.higher_is_better
                else metrics[metric] - base[metric]
            )
            if worse > rule.tolerance:
                failures.append(
                    f"{metric} {metrics[metric]:.4g} vs stable {stable} {base[metric]:.4g}"
                    f" (worse by {worse:.4g}, tolerance {rule.tolerance:g})"
                )
        if failures:
            raise ActionError(
                422,
                f"{model}/{version} is not blessed: "
                + "; ".join(failures)
                + ". Pass force to deploy anyway.",
            )

    async def set_traffic(self, model: str, body: TrafficRequest, who: str) -> ActionResult:
        async def change(state: ModelState):
            updates: dict[str, Any] = {"weights": body.weights, "shadow": body.shadow}
            if body.sticky_header is not None:
                updates["sticky_header"] = body.sticky_header
            updates["fallback"] = body.fallback
            table = self._next_table(
                state,
                **{
                    k: (v.model_dump() if isinstance(v, BaseModel) else v)
                    for k, v in updates.items()
                },
            )
            unknown = sorted(table.versions() - set(state.versions))
            if unknown:
                raise ActionError(422, f"versions {unknown} of {model} are not deployed")
            await self._require_running(model, table.versions())
            new = state.model_copy(update={"table": table})
            return new, "traffic updated", None

        return await self._act(model, "traffic", who, body.model_dump(mode="json"), change)

    async def promote(self, model: str, version: str, who: str) -> ActionResult:
        async def change(state: ModelState):
            if version not in state.versions:
                raise ActionError(422, f"version {version} of {model} is not deployed")
            await self._require_running(model, {version})
            table = self._next_table(
                state,
                weights={version: 100},
                shadow=None,
                fallback=state.stable if state.stable != version else None,
            )
            history = state.previous_stable
            if state.stable != version:
                history = [*history, state.stable][-20:]
            new = state.model_copy(
                update={"table": table, "stable": version, "previous_stable": history}
            )
            return new, f"{version} is stable with 100% of traffic (was {state.stable})", None

        return await self._act(model, "promote", who, {"version": version}, change)

    async def rollback(self, model: str, to: str | None, who: str) -> ActionResult:
        async def change(state: ModelState):
            target = to
            history = list(state.previous_stable)
            if target is None:
                if not history:
                    raise ActionError(
                        422, f"{model} has no previous stable version to roll back to"
                    )
                target = history.pop()
            elif target in history:
                history = history[: history.index(target)]
            if target not in state.versions:
                raise ActionError(422, f"version {target} of {model} is not deployed")
            await self._require_running(model, {target})
            table = self._next_table(state, weights={target: 100}, shadow=None, fallback=None)
            new = state.model_copy(
                update={"table": table, "stable": target, "previous_stable": history}
            )
            return new, f"rolled back {model} to {target} (100% of traffic)", None

        return await self._act(model, "rollback", who, {"to": to}, change)

    async def retire(self, model: str, version: str, who: str) -> ActionResult:
        async def change(state: ModelState):
            if version not in state.versions:
                raise ActionError(422, f"version {version} of {model} is not deployed")
            if version in state.table.versions() or version == state.stable:
                raise ActionError(
                    409,
                    f"{version} still has traffic (weight, shadow, fallback or stable);"
                    " move it first",
                )
            new = state.model_copy(update={"versions": [v for v in state.versions if v != version]})
            return new, f"retired {model}/{version}", None

        return await self._act(model, "retire", who, {"version": version}, change)

    # -- status ----------------------------------------------------------------------------------
    def model_status(self, model: str, serve: ServeStatus | None) -> ModelStatus:
        state = self.state(model)
        versions = []
        for version in state.versions:
            app = serve.applications.get(app_name(model, version)) if serve else None
            replicas: dict[str, int] = {}
            autoscaling = None
            if app is not None:
                for dep in app.deployments.values():
                    for k, v in dep.replica_counts().items():
                        replicas[k] = replicas.get(k, 0) + v
                    autoscaling = dep.deployment_config.get("autoscaling_config") or autoscaling
            try:
                manifest = self._stored_manifest(model, version)
                sha, metrics = manifest.sha256, manifest.metrics
            except StoreError:
                sha, metrics = None, {}
            shadow = state.table.shadow
            versions.append(
                VersionStatus(
                    version=version,
                    weight=state.table.weights.get(version, 0),
                    shadow_fraction=shadow.fraction
                    if shadow and shadow.version == version
                    else 0.0,
                    is_stable=version == state.stable,
                    is_fallback=state.table.fallback == version,
                    app_status=app.status if app else None,
                    replicas=replicas,
                    autoscaling=autoscaling,
                    problem=diagnose(app) if app else None,
                    sha256=sha,
                    metrics=metrics,
                )
            )
        router = serve.applications.get(router_app_name(model)) if serve else None
        return ModelStatus(
            model=model,
            stable=state.stable,
            previous_stable=state.previous_stable,
            table=state.table,
            versions=versions,
            router_status=router.status if router else None,
        )


def _dump(table: RoutingTable | None) -> Any:
    return table.model_dump() if table is not None else None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err['msg']}" if where else err["msg"]
