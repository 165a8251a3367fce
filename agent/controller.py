"""The controller role: the desired Serve state of every model, and the shell that applies
the actions' plans (agent/controller_rules.py decides what an action may do).

State per model lives in the agent's DuckDB; every change builds the *whole* Serve config and
PUTs it. If the PUT (or the new version's start) fails, the stored state is left as it was,
and the old table stays in force. One action per model at a time: a second one gets 409.
Every action, applied, refused or failed, is written to the audit table.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from agent import controller_rules as rules
from agent.answer_check import check_answers
from agent.controller_rules import Blessing, ModelState, Plan
from agent.deployer import DeployError, wait_until_running
from agent.errors import ApiError, Conflict, NotFound
from agent.request_log import DriftSource
from agent.schemas.models import ActionResult, ModelStatus, VersionStatus
from agent.schemas.routing import RoutingChange, RoutingHistory
from agent.serve_api import ServeAPI, ServeAPIError
from agent.serve_status import ServeStatus, diagnose
from agent.store import Store, naive_utc
from serve.manifest import Manifest
from serve.model_config import ModelConfig
from serve.model_store import ModelStore, StoreError
from serve.names import InvalidName, app_name, check_version, router_app_name
from serve.routing_table import RoutingTable, TrafficSplit
from serve.serve_config import (
    TABLE_DEPLOYMENT,
    ClusterResources,
    Deployed,
    Deployment,
    ServeTarget,
    desired_config,
    version_route,
)

log = logging.getLogger("trackside.agent.controller")
DASHBOARD_OPEN = (
    "Ray's dashboard at %s answers without a token: any user who can reach it (every local"
    " user of this host) can deploy code to the cluster. Start Ray with RAY_AUTH_MODE=token"
    " (README: multi-host guide)"
)

# An action's rule, given the model's state: the plan, or a refusal (an ApiError).
Rule = Callable[[ModelState], Plan]


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
        settle_s: float = 15.0,
    ) -> None:
        self.store = store
        self.api = serve_api
        self.models = {m.model: m for m in models}
        self.model_store = model_store
        self.target = target
        self.spool_dir = spool_dir
        self.replay_token_sha256 = hashlib.sha256(replay_token.encode()).hexdigest()
        self.apply_timeout_s = apply_timeout_s
        self.settle_s = settle_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._manifests: dict[tuple[str, str], Manifest] = {}
        self._cluster = ClusterResources()
        self.last_status: ServeStatus | None = None
        self.needs_reconcile = False
        self.dashboard_open = False  # known at bootstrap: Ray's token auth is off

    # -- state -------------------------------------------------------------------------------
    def state(self, model: str) -> ModelState:
        if model not in self.models:
            raise NotFound(f"unknown model {model!r}; known: {sorted(self.models)}")
        doc = self.store.get_state(f"model:{model}")
        if doc is None:
            raise Conflict(f"model {model} has not been deployed yet")
        return ModelState.model_validate(doc)

    def states(self) -> dict[str, ModelState]:
        out = {}
        for model in self.models:
            doc = self.store.get_state(f"model:{model}")
            if doc is not None:
                out[model] = ModelState.model_validate(doc)
        return out

    def _save(self, state: ModelState, who: str = "controller", action: str = "") -> None:
        """The model's state, its route counter and the table's history row, at once."""
        table = state.table
        self.store.put_states(
            {
                f"model:{state.model}": state.model_dump(mode="json"),
                f"route_seq:{state.model}": max(table.route_version, self._issued(state.model)),
            },
            history=(state.model, table.route_version, table.model_dump(mode="json"), who, action),
        )

    def _issued(self, model: str) -> int:
        """The highest route_version ever issued for `model` (applied or not)."""
        seq = self.store.get_state(f"route_seq:{model}") or 0
        rows = self.store.query(
            "SELECT max(route_version) AS m FROM routing_history WHERE model = ?", [model]
        )
        return max(int(seq), int(rows[0]["m"] or 0))

    def next_route_version(self, model: str) -> int:
        """A route_version never used before for `model`: taken (and stored) before the table
        is applied, so a failed save can never lead the next action to reuse it (running
        routers ignore a table whose number they have already seen)."""
        current = self.state(model).table.route_version
        number = max(current, self._issued(model)) + 1
        self.store.put_state(f"route_seq:{model}", number)
        return number

    def routing_history(self, model: str, at: datetime, limit: int) -> RoutingHistory:
        """The tables `model` was given up to `at`, newest first: the first is in force."""
        self.state(model)  # an unknown model is a 404
        rows = self.store.query(
            """
            SELECT h.route_version, h.ts AS since, h."table", h.who, h.action,
                   (SELECT min(a.id) FROM audit a
                     WHERE a.model = h.model AND a.result = 'ok'
                       AND TRY_CAST(json_extract_string(a.after, '$.route_version') AS BIGINT)
                           = h.route_version) AS audit_id
            FROM routing_history h
            WHERE h.model = ? AND h.ts <= ?
            ORDER BY h.ts DESC, h.route_version DESC
            LIMIT ?
            """,
            [model, naive_utc(at), limit],
        )
        changes = [
            RoutingChange(**{**r, "table": RoutingTable.model_validate_json(r["table"])})
            for r in rows
        ]
        return RoutingHistory(
            model=model, at=at, in_force=changes[0] if changes else None, changes=changes
        )

    def routing_table(self, model: str, route_version: int) -> RoutingTable | None:
        rows = self.store.query(
            'SELECT "table" FROM routing_history WHERE model = ? AND route_version = ?',
            [model, route_version],
        )
        return RoutingTable.model_validate_json(rows[0]["table"]) if rows else None

    def deployment(self, override: ModelState | None = None) -> Deployment:
        """The whole Serve config for every model, with `override` in place of its state."""
        states = self.states()
        if override is not None:
            states[override.model] = override
        deployed = {m: Deployed(s.versions, s.table) for m, s in states.items()}
        return desired_config(
            self.models,
            deployed,
            self._cluster,
            self.target,
            self.spool_dir,
            self.replay_token_sha256,
        )

    def problems(self) -> list[str]:
        """What an operator must know about the controller's cluster (shown with the host)."""
        return [DASHBOARD_OPEN % self.api.dashboard] if self.dashboard_open else []

    async def refresh_cluster(self) -> None:
        self._cluster = await self.api.cluster_resources()

    async def bootstrap(self) -> None:
        """Deploy every configured model that has no state yet, and re-apply the rest."""
        await self.refresh_cluster()
        self.dashboard_open = await self.api.answers_without_token()
        if self.dashboard_open:
            log.warning(DASHBOARD_OPEN, self.api.dashboard)
        for model, config in self.models.items():
            if self.store.get_state(f"model:{model}") is not None:
                continue
            stable = config.stable or next(v for v in config.versions if v != "*")
            self._manifest(model, stable)
            table = RoutingTable(
                route_version=1, weights={stable: 100}, sticky_header=config.router.sticky_header
            )
            state = ModelState(model=model, versions=[stable], table=table, stable=stable)
            self._save(state, "controller", "bootstrap")
        await self.reconcile("controller")

    async def reconcile(self, who: str) -> list[str]:
        """Make the stored tables and what Serve runs agree, after a start or a failed save.
        A table Serve runs that this controller issued but could not store (its number is
        one it handed out) is adopted; any other difference (a table from elsewhere, an older
        one) is replaced by the stored state under a new number, so every router sees the
        change. Each is audited; then the whole stored state is applied."""
        status = ServeStatus.parse(await self.api.get_applications())
        done = []
        for model, state in self.states().items():
            app = status.applications.get(router_app_name(model))
            running = running_table(app.deployed_app_config if app else None)
            if running is None or running == state.table:
                continue
            issued = self._issued(model)
            if state.table.route_version < running.route_version <= issued:
                deployed = sorted(
                    set(state.versions)
                    | {
                        name.partition("--")[2]
                        for name in status.applications
                        if name.startswith(f"{model}--") and name != router_app_name(model)
                    }
                )
                new = state.model_copy(update={"table": running, "versions": deployed})
                note = f"adopted #{running.route_version}: Serve ran it, its save had failed"
            else:
                number = max(issued, running.route_version) + 1
                table = state.table.model_copy(update={"route_version": number})
                new = state.model_copy(update={"table": table})
                note = (
                    f"Serve ran #{running.route_version}, not the stored"
                    f" #{state.table.route_version}: the stored table is applied as #{number}"
                )
            self._save(new, who, "reconcile")
            self.store.audit(
                who, "reconcile", model, {}, running.model_dump(), _dump(new.table), "ok", note
            )
            log.warning("reconcile %s: %s", model, note)
            done.append(f"{model}: {note}")
        await self.refresh_cluster()
        await self.api.put_applications(self.deployment().config)
        self.needs_reconcile = False
        return done

    # -- helpers -----------------------------------------------------------------------------
    def drift_source(self, model: str, version: str) -> DriftSource | None:
        """A version's reference sample, for drift against it (None: it has none)."""
        try:
            manifest = self.model_store.manifest(model, version)
            reference = self.model_store.reference_path(model, version)
        except StoreError:
            return None
        if reference is None or not reference.is_file():
            return None
        return DriftSource(model, version, reference, list(manifest.input.features))

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
            raise NotFound(f"unknown version {model}/{version}: {exc}") from exc

    async def _serve_status(self) -> ServeStatus:
        self.last_status = ServeStatus.parse(await self.api.get_applications())
        return self.last_status

    async def _require_running(self, model: str, versions: frozenset[str]) -> None:
        """Every version RUNNING, or a refusal that says why. A version Serve is still
        (re)deploying gets `settle_s` to come up: Serve restarts a replica whose health check
        was late on a busy host, and an action should not fail on that blip."""
        deadline = time.monotonic() + self.settle_s
        while versions:
            status = await self._serve_status()
            waiting = []
            for version in sorted(versions):
                app = status.applications.get(app_name(model, version))
                if app is not None and app.status == "RUNNING":
                    continue
                state = "not deployed" if app is None else app.status
                problem = diagnose(app) if app else None
                reason = (
                    f"version {version} of {model} is {state}"
                    + (f" ({problem})" if problem else "")
                    + "; deploy it and wait until it is RUNNING"
                )
                if app is None or app.status != "DEPLOYING" or problem:
                    raise Conflict(reason)
                waiting.append(reason)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise Conflict(waiting[0])
            await asyncio.sleep(0.5)

    async def _apply(
        self, new: ModelState, wait_for: tuple[str, ...], who: str, action: str
    ) -> None:
        await self.refresh_cluster()
        wanted = self.deployment(override=new)
        old_config = self.deployment().config
        try:
            await self.api.put_applications(wanted.config)
            if wait_for:
                await wait_until_running(
                    self.api, list(wait_for), wanted.plans, timeout_s=self.apply_timeout_s
                )
        except (ServeAPIError, DeployError) as exc:
            old = self.states().get(new.model)
            in_force = f"route_version {old.table.route_version}" if old else "no table"
            if wait_for:
                # Put back what was there: the new version must not linger half-deployed.
                try:
                    await self.api.put_applications(old_config)
                except ServeAPIError as revert_exc:
                    log.error("could not restore the previous Serve config: %s", revert_exc)
            raise ApiError(
                502,
                f"apply failed: {exc}; the previous routing table ({in_force}) is still in force",
            ) from exc
        try:
            self._save(new, who, action)
        except Exception as exc:  # Serve runs the new table; the agent could not store it
            log.error(
                "applied %s #%s but could not save it: %s", new.model, new.table.route_version, exc
            )
            self.needs_reconcile = True
            raise ApiError(
                500,
                f"Serve applied route_version {new.table.route_version} but the agent could"
                f" not store it ({exc}); it reconciles with Serve as soon as it can write",
            ) from exc

    async def _act(
        self,
        model: str,
        action: str,
        who: str,
        request: dict[str, Any],
        rule: Rule,
        then: Callable[[], Awaitable[str]] | None = None,
    ) -> ActionResult:
        """Run one action: its rule decides, this applies, and the audit records either;
        `then` runs after it, still under the model's lock, and adds to the message."""
        lock = self._locks.setdefault(model, asyncio.Lock())
        if lock.locked():
            raise ApiError(409, f"another action on {model} is in flight; retry when it ends")
        async with lock:
            before: RoutingTable | None = None
            try:
                state = self.state(model)
                before = state.table
                plan = rule(state)
                after, changed = before, False
                if plan.state is not None:
                    await self._require_running(model, plan.require_running)
                    await self._apply(plan.state, plan.wait_for, who, action)
                    after, changed = plan.state.table, True
            except ServeAPIError as exc:  # the dashboard did not answer: refuse, audited
                self._audit_failure(who, action, model, request, before, 502, str(exc))
                raise ApiError(502, f"{action} {model} not applied: {exc}") from exc
            except ApiError as exc:
                self._audit_failure(who, action, model, request, before, exc.status, exc.message)
                raise
            audit_id = self.store.audit(
                who, action, model, request, _dump(before), _dump(after), "ok"
            )
            message = plan.message + (await then() if then is not None else "")
            return ActionResult(
                action=action,
                model=model,
                changed=changed,
                before=before,
                after=after,
                message=message,
                audit_id=audit_id,
            )

    def _audit_failure(
        self,
        who: str,
        action: str,
        model: str,
        request: dict[str, Any],
        before: RoutingTable | None,
        status: int,
        message: str,
    ) -> None:
        try:
            result = "refused" if status < 500 else "failed"
            self.store.audit(who, action, model, request, _dump(before), None, result, message)
        except Exception as exc:  # the write itself failed: the log line is all there is
            log.error("could not audit %s %s (%s): %s", action, model, message, exc)

    # -- actions -------------------------------------------------------------------------------
    async def deploy(self, model: str, version: str, force: bool, who: str) -> ActionResult:
        def rule(state: ModelState) -> Plan:
            manifest = self._manifest(model, version)
            blessing = None
            if not force:
                blessing = Blessing(
                    rules=self.models[model].blessing,
                    candidate=manifest.metrics,
                    stable=self._stored_manifest(model, state.stable).metrics,
                    stable_version=state.stable,
                )
            return rules.deploy(state, version, blessing)

        request = {"version": version, "force": force}
        return await self._act(
            model,
            "deploy",
            who,
            request,
            rule,
            then=lambda: self._check_answers(model, version, who),
        )

    async def _check_answers(self, model: str, version: str, who: str) -> str:
        """After a deploy (or a deploy of a version already there: a new check), under the
        model's lock: does the version answer as it did at registration? The result is kept
        with the model (traffic to a mismatch is refused) and audited."""
        url = (
            f"http://{self.target.http_host}:{self.target.http_port}{version_route(model, version)}"
        )
        check = await check_answers(url, self._manifest(model, version).expected)
        state = self.state(model)
        new = state.model_copy(update={"checks": {**state.checks, version: check}})
        self.store.put_state(f"model:{model}", new.model_dump(mode="json"))
        result = {True: "ok", False: "refused", None: "not_checked"}[check.ok]
        self.store.audit(
            who,
            "check_answers",
            model,
            {"version": version},
            None,
            None,
            result,
            None if check.ok else check.message,
        )
        if check.ok is False:
            log.error("%s/%s: %s", model, version, check.message)
            return f"; but it does not answer as at registration, no traffic: {check.message}"
        return f"; {check.message}"

    async def set_traffic(
        self,
        model: str,
        split: TrafficSplit,
        who: str,
        sticky_header: str | None = None,
        if_route_version: int | None = None,
    ) -> ActionResult:
        """`if_route_version`: apply only if that table is still the one in force."""

        def rule(state: ModelState) -> Plan:
            rules.unchanged_since(state, if_route_version)
            return rules.set_traffic(state, split, sticky_header, self.next_route_version(model))

        request = {**split.model_dump(mode="json"), "sticky_header": sticky_header}
        return await self._act(model, "traffic", who, request, rule)

    async def promote(
        self, model: str, version: str, who: str, if_route_version: int | None = None
    ) -> ActionResult:
        def rule(state: ModelState) -> Plan:
            rules.unchanged_since(state, if_route_version)
            return rules.promote(state, version, self.next_route_version(model))

        return await self._act(model, "promote", who, {"version": version}, rule)

    async def rollback(self, model: str, to: str | None, who: str) -> ActionResult:
        def rule(state: ModelState) -> Plan:
            return rules.rollback(state, to, self.next_route_version(model))

        return await self._act(model, "rollback", who, {"to": to}, rule)

    async def retire(self, model: str, version: str, who: str) -> ActionResult:
        def rule(state: ModelState) -> Plan:
            return rules.retire(state, version)

        return await self._act(model, "retire", who, {"version": version}, rule)

    # -- status ----------------------------------------------------------------------------------
    def model_status(self, model: str) -> ModelStatus:
        state = self.state(model)
        serve = self.last_status
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
                    problem=(diagnose(app) if app else None) or mismatch(state, version),
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


def mismatch(state: ModelState, version: str) -> str | None:
    check = state.checks.get(version)
    if check is None or check.ok is not False:
        return None
    return f"answers unlike at registration, no traffic: {check.message}"


def running_table(app_config: dict[str, Any] | None) -> RoutingTable | None:
    """The routing table in a router application's deployed config, as Serve reports it."""
    for deployment in (app_config or {}).get("deployments", []):
        if deployment.get("name") == TABLE_DEPLOYMENT:
            doc = (deployment.get("user_config") or {}).get("table")
            return RoutingTable.model_validate(doc) if doc else None
    return None


def _dump(table: RoutingTable | None) -> Any:
    return table.model_dump() if table is not None else None
