"""The router of one model: weighted, sticky, shadow and fallback routing between its
version applications, logging every model call to the spool.

Two deployments make the application:
- `RoutingTable`, one replica whose user_config holds the table (durable: Serve keeps it
  across restarts). A PUT that changes only that user_config reconfigures it in place.
- `Router`, the ingress, any number of replicas. Each long-polls `RoutingTable.watch`, which
  answers every waiting replica the moment the table changes, so all replicas switch
  together instead of Serve's 20%-at-a-time rolling reconfigure.

Both live here because they are one Serve application (its builder is `build`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serve.model_config import RouterUserConfig
from serve.names import (
    HOST_ENV,
    REPLAY_OF_HEADER,
    REPLAY_TOKEN_HEADER,
    REPLAY_VERSION_HEADER,
    SPOOL_ENV,
    app_name,
)
from serve.ray_hardening import bind_replica_grpc_to_node_ip
from serve.request_record import RequestRecord, Role, new_call_id
from serve.routing import choose_version, fallback_version, shadow_version
from serve.routing_table import RoutingTable
from serve.spool import SpoolWriter

log = logging.getLogger("ray.serve")

WATCH_WAIT_S = 10.0


class RoutingTableHolder:
    """Holds the table from user_config and wakes every watcher when it changes."""

    def __init__(self) -> None:
        bind_replica_grpc_to_node_ip()
        self._table: dict[str, Any] | None = None
        self._changed = asyncio.Event()

    async def reconfigure(self, config: dict[str, Any]) -> None:
        table = RoutingTable.model_validate(config["table"])
        self._table = table.model_dump()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def watch(self, known_route_version: int | None, wait_s: float) -> dict | None:
        """The table, at once if it differs from `known_route_version`, else when it changes
        (or after `wait_s`, so watchers notice a lost holder)."""
        if self._table is None or self._table["route_version"] == known_route_version:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait_s)
        return self._table


class VersionFailed(Exception):
    def __init__(self, version: str, reason: str, status: int = 503) -> None:
        super().__init__(reason)
        self.version = version
        self.reason = reason
        self.status = status


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _text(body: bytes | None) -> str | None:
    return None if body is None else body.decode("utf-8", errors="replace")


class Router:
    def __init__(self, table_holder: DeploymentHandle, model: str, spool_dir: str | None) -> None:
        bind_replica_grpc_to_node_ip()
        self.model = model
        self.holder = table_holder
        self.table: RoutingTable | None = None
        self._ready = asyncio.Event()
        self._handles: dict[str, DeploymentHandle] = {}
        self.host = os.environ.get(HOST_ENV) or socket.gethostname()
        spool_dir = os.environ.get(SPOOL_ENV) or spool_dir
        self.replica = serve.get_replica_context().replica_tag
        self.settings = RouterUserConfig()
        self.spool = SpoolWriter(spool_dir, f"{model}-{self.replica}") if spool_dir else None
        self._tasks: set[asyncio.Task] = set()
        self._watch_task = asyncio.get_running_loop().create_task(self._watch())
        self._flush_task = asyncio.get_running_loop().create_task(self._flush_loop())
        self.switches: list[tuple[int, float]] = []
        self.in_flight = 0  # client requests this replica is answering now
        self.shadows_sent = 0
        self.shadows_shed = 0

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.settings = RouterUserConfig.model_validate(config)
        if self.spool is not None:
            self.spool.max_bytes = int(self.settings.spool_max_mb * (1 << 20))

    # -- the table ----------------------------------------------------------------------
    async def _watch(self) -> None:
        known: int | None = None
        while True:
            try:
                doc = await self.holder.watch.remote(known, WATCH_WAIT_S)
                if doc is not None and doc["route_version"] != known:
                    self.table = RoutingTable.model_validate(doc)
                    known = self.table.route_version
                    self.switches.append((known, time.time()))
                    self._ready.set()
                    log.info("router %s serves route_version %s", self.replica, known)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # holder restarting: keep the last table, retry
                log.warning("routing table watch failed: %r", exc)
                await asyncio.sleep(0.5)

    async def _current_table(self) -> RoutingTable | None:
        if self.table is None:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout=5)
            except TimeoutError:
                return None
        return self.table

    # -- calling versions ---------------------------------------------------------------
    async def _handle(self, version: str) -> DeploymentHandle:
        handle = self._handles.get(version)
        if handle is None:
            # get_app_handle makes a blocking controller call: off the event loop, once.
            handle = await asyncio.to_thread(serve.get_app_handle, app_name(self.model, version))
            self._handles[version] = handle
        return handle

    async def _call(self, version: str, body: bytes, timeout_s: float) -> dict[str, Any]:
        try:
            handle = await self._handle(version)
        except Exception as exc:
            self._handles.pop(version, None)
            raise VersionFailed(version, f"version {version} is not deployed: {exc}") from exc
        response = handle.answer.remote(body)
        try:
            return await asyncio.wait_for(response, timeout=timeout_s)
        except TimeoutError as exc:
            response.cancel()
            raise VersionFailed(
                version, f"version {version} did not answer within {timeout_s:g}s", 504
            ) from exc
        except asyncio.CancelledError:
            response.cancel()
            raise
        except Exception as exc:
            if "Unavailable" in type(exc).__name__:  # app deleted: look it up afresh next time
                self._handles.pop(version, None)
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            raise VersionFailed(
                version, f"version {version} failed: {type(exc).__name__}: {reason[:300]}"
            ) from exc

    # -- HTTP ---------------------------------------------------------------------------
    async def __call__(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(self.describe())
        if request.method != "POST":
            return JSONResponse({"error": "use POST with a JSON body"}, 405)
        self.in_flight += 1
        try:
            return await self._route(request)
        finally:
            self.in_flight -= 1

    async def _route(self, request: Request) -> Response:
        started = time.perf_counter()
        ts = datetime.now(UTC)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        # Serve's proxy already answers with x-request-id (the client's, or one it made and
        # passed to us): the router uses that same id for the log.
        headers = {"x-trackside-router": self.replica}
        limit = self.settings.max_body_bytes
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                reason = f"body exceeds the limit of {limit} bytes"
                return JSONResponse({"status": 413, "error": reason}, 413, headers=headers)
        table = await self._current_table()
        if table is None:
            reason = f"no routing table for {self.model} yet; retry shortly"
            return JSONResponse({"status": 503, "error": reason}, 503, headers=headers)
        headers["x-route-version"] = str(table.route_version)

        forced = self._forced_version(request)
        role: Role = "replay" if forced else "primary"
        sticky_key = None if forced else request.headers.get(table.sticky_header)
        version = forced or choose_version(table, sticky_key, random.random())
        timeout_s = self.settings.timeout_s
        fallback_from = None
        error = None
        try:
            answer = await self._call(version, bytes(body), timeout_s)
        except VersionFailed as failed:
            error = failed.reason
            backup = None if forced else fallback_version(table, version)
            if backup is None:
                answer = None
                status, out = failed.status, self._error_body(failed, table)
            else:
                fallback_from, version = version, backup
                try:
                    answer = await self._call(backup, bytes(body), timeout_s)
                except VersionFailed as second:
                    answer = None
                    error = f"{failed.reason}; fallback {second.reason}"
                    status, out = second.status, self._error_body(second, table, first=failed)
        if answer is not None:
            status, out = answer["status"], answer["body"]
        headers["x-model-version"] = version
        if fallback_from:
            headers["x-trackside-fallback-from"] = fallback_from
        call_id = new_call_id()
        self._log_call(
            request_id,
            ts,
            version,
            role,
            table,
            status,
            error,
            answer,
            started,
            bytes(body),
            out,
            sticky_key_hash=_hash_key(sticky_key) if sticky_key else None,
            primary_request_id=request.headers.get(REPLAY_OF_HEADER) if forced else None,
            fallback_from=fallback_from,
            call_id=call_id,
        )
        if not forced:
            shadow = shadow_version(table, version, random.random())
            if shadow is not None:
                self._send_shadow(shadow, bytes(body), request_id, call_id, table)
        return Response(out, status, headers=headers, media_type="application/json")

    def _error_body(
        self, failed: VersionFailed, table: RoutingTable, first: VersionFailed | None = None
    ) -> bytes:
        doc = {
            "status": failed.status,
            "error": failed.reason if first is None else f"{first.reason}; then {failed.reason}",
            "model": self.model,
            "version": (first or failed).version,
            "route_version": table.route_version,
            "hint": "no fallback version is configured"
            if first is None and table.fallback is None
            else None,
        }
        return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()

    def _forced_version(self, request: Request) -> str | None:
        """A replay names its version; honoured only with the right token (clients must not
        be able to bypass a rollout)."""
        version = request.headers.get(REPLAY_VERSION_HEADER)
        token = request.headers.get(REPLAY_TOKEN_HEADER)
        expected = self.settings.replay_token_sha256
        if not version or not token or not expected:
            return None
        presented = hashlib.sha256(token.encode()).hexdigest()
        return version if hmac.compare_digest(presented, expected) else None

    def _send_shadow(
        self, version: str, body: bytes, request_id: str, call_id: str, table: RoutingTable
    ) -> None:
        if self.in_flight > self.settings.shadow_shed_above:
            self.shadows_shed += 1
            if self.spool is not None:  # on record with the next file, for /metrics
                self.spool.shadows_shed = self.shadows_shed
            if self.shadows_shed == 1 or self.shadows_shed % 1000 == 0:
                log.warning(
                    "router %s is busy (%d requests in flight): %d shadow copies shed so far",
                    self.replica,
                    self.in_flight,
                    self.shadows_shed,
                )
            return
        self.shadows_sent += 1
        self._spawn(self._shadow(version, body, request_id, call_id, table))

    async def _shadow(
        self, version: str, body: bytes, request_id: str, call_id: str, table: RoutingTable
    ) -> None:
        """Send a copy to `version`; its record pairs with the primary by the router's own
        call id (`pair_id`), never by the request id a client chose."""
        started = time.perf_counter()
        ts = datetime.now(UTC)
        answer, error, status = None, None, 0
        try:
            answer = await self._call(version, body, self.settings.shadow_timeout_s)
            status = answer["status"]
        except VersionFailed as failed:
            error, status = failed.reason, failed.status
        except Exception as exc:  # a shadow never reaches the client, whatever happens
            error, status = repr(exc), 500
        output = answer["body"] if answer else None
        self._log_call(
            request_id,
            ts,
            version,
            "shadow",
            table,
            status,
            error,
            answer,
            started,
            body,
            output,
            primary_request_id=request_id,
            pair_id=call_id,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the request log ----------------------------------------------------------------
    def _log_call(
        self,
        request_id: str,
        ts: datetime,
        version: str,
        role: Role,
        table: RoutingTable,
        status: int,
        error: str | None,
        answer: dict | None,
        started: float,
        body: bytes,
        output: bytes | None,
        call_id: str | None = None,
        **extra: str | None,
    ) -> None:
        """One record per model call (the spool contract), built in one place."""
        self._log(
            RequestRecord(
                request_id=request_id,
                ts=ts,
                model=self.model,
                version=version,
                role=role,
                route_version=table.route_version,
                status=status,
                error=error,
                latency_ms=answer["latency_ms"] if answer else None,
                total_ms=(time.perf_counter() - started) * 1000.0,
                input=_text(bytes(body)),
                output=_text(output),
                sha256=answer["sha256"] if answer else None,
                host=self.host,
                replica=self.replica,
                call_id=call_id or new_call_id(),
                **extra,
            )
        )

    def _log(self, record: RequestRecord) -> None:
        if self.spool is not None and self.settings.log_requests:
            self.spool.append(record)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            if self.spool is not None and self.spool.pending():
                try:
                    await asyncio.to_thread(self.spool.flush)
                except Exception:
                    log.exception("spool flush failed")

    def describe(self) -> dict[str, Any]:
        spool = None
        if self.spool is not None:
            spool = {
                "folder": str(self.spool.folder),
                "written": self.spool.written,
                "dropped": self.spool.dropped,
                "pending": self.spool.pending(),
                "pending_bytes": self.spool.pending_bytes(),
                "write_errors": self.spool.write_errors,
                "last_error": self.spool.last_error,
            }
        return {
            "model": self.model,
            "replica": self.replica,
            "table": self.table.model_dump() if self.table else None,
            "spool": spool,
            "shadow": {
                "sent": self.shadows_sent,
                "shed": self.shadows_shed,
                "in_flight": sum(1 for t in self._tasks if not t.done()),
            },
            "in_flight": self.in_flight,
        }

    async def __del__(self) -> None:
        # Graceful shutdown (Serve has drained client requests): shadows in flight end
        # within their timeout and are logged; then flush what we hold.
        if self._tasks:
            timeout = self.settings.shadow_timeout_s + 0.5
            await asyncio.wait(list(self._tasks), timeout=timeout)
        if self.spool is not None:
            self.spool.close()


def build(args: dict[str, Any]) -> serve.Application:
    # serve.deployment here, not as a class decorator: the same deployment, and mypy keeps
    # seeing the class (it ignores what a class decorator returns).
    return serve.deployment()(Router).bind(
        table_holder=serve.deployment()(RoutingTableHolder).bind(),
        model=args["model"],
        spool_dir=args.get("spool_dir"),
    )
