"""`trackside agent`: the host daemon. Collectors, spool ingest, retention, the HTTP API, and
(on the Ray head) the controller. Runs in the foreground; SIGTERM flushes and closes DuckDB."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.alerts import Alerts
from agent.api import create_app
from agent.api.context import AgentContext
from agent.api.server import Server, server
from agent.batch_jobs import BatchJobs
from agent.collectors.gpu import GpuCollector
from agent.collectors.host import HostCollector
from agent.collectors.serve_state import ServeCollector
from agent.config import AgentConfig, load_agent_config
from agent.controller import Controller
from agent.feedback import FeedbackBook
from agent.fleet_file import load_fleet
from agent.fleet_log import FleetRequestLog, Peer
from agent.ingest import IngestWriteError, clean_bad, ingest_once
from agent.local_log import LocalRequestLog
from agent.replay import Replayer
from agent.request_log import RequestLog
from agent.rollouts import Rollouts
from agent.secrets_file import SecretFileError, ensure_secret, read_secret
from agent.serve_api import ServeAPI
from agent.store import GPU_COLUMNS, HOST_COLUMNS, SERVE_COLUMNS, Store, StoreLocked
from agent.tokens import TokenBook
from serve.config_file import ConfigError
from serve.model_config import load_model_config
from serve.model_store import ModelStore
from serve.serve_config import ServeTarget

log = logging.getLogger("trackside.agent")
TELEMETRY_COLUMNS = {
    "host_samples": HOST_COLUMNS,
    "gpu_samples": GPU_COLUMNS,
    "serve_samples": SERVE_COLUMNS,
}


class LogfmtFormatter(logging.Formatter):
    """One structured line per event: ts=… level=… logger=… msg="…"."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().replace('"', "'")
        line = (
            f"ts={time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))}"
            f".{int(record.msecs):03d}Z level={record.levelname.lower()}"
            f' logger={record.name} msg="{msg}"'
        )
        if record.exc_info:
            line += f' exc="{self.formatException(record.exc_info)!r}"'
        return line


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Serve poll otherwise


def peers_from_file(path: Path) -> list[Peer]:
    """The agents of a fleet file, each at its own address (or its `url`)."""
    return [Peer(h.name, h.agent_url) for h in load_fleet(path).hosts]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: assume it reaches beyond this machine
        return False


def make_private(config: AgentConfig) -> None:
    """The data folder and spool hold every request and answer: folders 0700, files 0600
    (also for files an older agent left readable)."""
    os.umask(0o077)  # DuckDB's file, its WAL, everything this process makes
    for folder in (config.data_dir, config.spool_path):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    for path in config.data_dir.glob("agent.duckdb*"):
        path.chmod(0o600)


class Agent:
    def __init__(self, config: AgentConfig, nvml: Any = None) -> None:
        self.config = config
        make_private(config)
        self.store = Store(
            config.db_path,
            threads=config.duckdb.threads,
            memory_limit=config.duckdb.memory_limit,
            model_store=config.store_path,
        )
        self.token = ensure_secret(config.token_path)
        self.gpu = GpuCollector(nvml=nvml)
        self.host = HostCollector()
        self.collectors: dict[str, str] = {}
        self.local = LocalRequestLog(
            self.store, config.fleet.host or socket.gethostname(), config.spool_path
        )
        self.requests: RequestLog = self.local
        self.fleet: FleetRequestLog | None = None
        self.serve_api: ServeAPI | None = None
        self.controller: Controller | None = None
        rollouts = replayer = feedback = alerts = batch = None
        fleet_token = read_secret(config.fleet_token_path)
        if config.controller.enabled:
            self.controller = self._make_controller()
            if config.fleet.file is not None or config.fleet.from_ray:
                fleet_token = ensure_secret(config.fleet_token_path)
                peers = peers_from_file(config.fleet.file) if config.fleet.file else []
                self.fleet = FleetRequestLog(
                    self.local, peers, fleet_token, config.fleet.deadline_s, self.store
                )
                self.requests = self.fleet
            feedback = FeedbackBook(
                self.store,
                self.requests,
                set(self.controller.models),
                self.controller.model_store,
            )
            rollouts = Rollouts(self.store, self.controller, self.requests, feedback)
            alerts = Alerts(
                self.store,
                self.controller,
                self.requests,
                feedback,
                rollouts,
                host_rules=config.controller.alerts,
            )
            batch = BatchJobs(
                self.store,
                self.controller,
                config.data_dir / "batch",
                roots=config.controller.batch_roots,
            )
            replayer = Replayer(
                self.store,
                self.requests,
                f"http://127.0.0.1:{config.controller.serve_port}",
                ensure_secret(config.data_dir / "replay.token"),
            )
        self.ctx = AgentContext(
            store=self.store,
            tokens=TokenBook(config.data_dir / "tokens", self.token, fleet_token),
            gpu=self.gpu,
            requests=self.requests,
            local=self.local,
            spool=config.spool_path,
            collectors=self.collectors,
            controller=self.controller,
            replayer=replayer,
            rollouts=rollouts,
            feedback=feedback,
            alerts=alerts,
            batch=batch,
        )
        self.tasks: list[asyncio.Task[None]] = []
        self.server: Server | None = None
        self.pending: dict[str, list[dict[str, Any]]] = {}  # samples not yet in DuckDB
        self.ingest_failures = 0

    def _make_controller(self) -> Controller:
        ctl = self.config.controller
        self.serve_api = ServeAPI(ctl.dashboard)
        models = [load_model_config(p) for p in ctl.models]
        replay_token = ensure_secret(self.config.data_dir / "replay.token")
        return Controller(
            store=self.store,
            serve_api=self.serve_api,
            models=models,
            model_store=ModelStore(self.config.store_path),
            target=ServeTarget(
                store_root=self.config.store_path.resolve(), http_port=ctl.serve_port
            ),
            spool_dir=self.config.spool_path.resolve(),
            replay_token=replay_token,
            apply_timeout_s=ctl.apply_timeout_s,
            settle_s=ctl.settle_s,
        )

    async def _every(self, name: str, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` on a schedule; a failure is recorded and logged, never fatal."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await step()
                if failures:
                    log.info("collector %s recovered", name)
                failures = 0
                self.collectors[name] = "ok"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.collectors[name] = f"error: {exc}"
                if failures == 1 or failures % 60 == 0:
                    log.warning("collector %s failed (%d in a row): %r", name, failures, exc)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    def _pend(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.pending.setdefault(table, []).extend(rows)

    async def _write_telemetry(self) -> None:
        """Every buffered sample of every collector, in one DuckDB commit."""
        pending, self.pending = self.pending, {}
        await asyncio.to_thread(
            self.store.insert_batches,
            {table: (TELEMETRY_COLUMNS[table], rows) for table, rows in pending.items()},
        )

    async def _host(self) -> None:
        self._pend("host_samples", [await asyncio.to_thread(self.host.sample)])

    async def _gpu(self) -> None:
        rows = await asyncio.to_thread(self.gpu.sample)
        if not self.gpu.available:
            self.collectors["gpu"] = self.gpu.status
            raise asyncio.CancelledError  # nothing to sample on this host: stop quietly
        self._pend("gpu_samples", rows)

    async def _ingest(self) -> None:
        """A write failure (a full disk) leaves the files in the spool and raises: `_every`
        records it as this collector's error (health says degraded) and logs it."""
        try:
            result = await asyncio.to_thread(ingest_once, self.store, self.config.spool_path)
        except IngestWriteError:
            self.ingest_failures += 1
            raise
        self.ctx.traffic.observe(result.traffic)
        if result.rows_read:
            log.debug("ingested %d rows from %d files", result.rows_inserted, result.files)

    async def _retention(self) -> None:
        r = self.config.retention
        await asyncio.to_thread(
            self.store.apply_retention,
            r.raw_hours,
            r.rollup_step_s,
            r.rollup_days,
            r.requests_days,
            r.summary_days,
        )
        await asyncio.to_thread(clean_bad, self.config.spool_path, r.requests_days * 86400)

    async def _serve(self, collector: ServeCollector) -> None:
        rows = await collector.sample()
        if self.controller is not None:
            self.controller.last_status = collector.last
        self._pend("serve_samples", rows)

    async def _reconcile(self) -> None:
        """After a table Serve applied could not be stored: agree with Serve again."""
        if self.controller is not None and self.controller.needs_reconcile:
            await self.controller.reconcile("controller")

    async def _rollouts(self) -> None:
        if self.ctx.rollouts is not None and self.collectors.get("controller") == "ok":
            await self.ctx.rollouts.tick()

    async def _alerts(self) -> None:
        if self.ctx.alerts is not None and self.collectors.get("controller") == "ok":
            await self.ctx.alerts.tick()

    async def _batch(self) -> None:
        if self.ctx.batch is not None and self.collectors.get("controller") == "ok":
            await self.ctx.batch.tick()

    async def _bootstrap_controller(self) -> None:
        """Apply the desired Serve state; retried until Ray answers."""
        assert self.controller is not None
        while True:
            try:
                await self.controller.bootstrap()
                log.info("controller applied the desired Serve config")
                self.collectors["controller"] = "ok"
                return
            except Exception as exc:
                self.collectors["controller"] = f"waiting for Ray Serve: {exc}"
                log.warning("controller bootstrap failed, retrying in 2s: %s", exc)
                await asyncio.sleep(2)

    def start_tasks(self) -> None:
        c = self.config.collect
        spawn = asyncio.get_running_loop().create_task
        self.tasks += [
            spawn(self._every("host", c.interval_s, self._host)),
            spawn(self._every("writer", c.write_interval_s, self._write_telemetry)),
            spawn(self._gpu_loop(c.interval_s)),
            spawn(self._every("ingest", c.ingest_interval_s, self._ingest)),
            spawn(self._every("retention", self.config.retention.every_s, self._retention)),
        ]
        if self.controller is not None and self.serve_api is not None:
            collector = ServeCollector(self.serve_api)
            self.tasks.append(
                spawn(self._every("serve", max(c.interval_s, 1.0), lambda: self._serve(collector)))
            )
            self.tasks.append(spawn(self._bootstrap_controller()))
            self.tasks.append(spawn(self._every("rollouts", 2.0, self._rollouts)))
            every = self.config.controller.alert_interval_s
            self.tasks.append(spawn(self._every("alerts", every, self._alerts)))
            self.tasks.append(spawn(self._every("reconcile", 5.0, self._reconcile)))
            self.tasks.append(spawn(self._every("batch", 2.0, self._batch)))
            if self.fleet is not None and self.config.fleet.from_ray:
                every = self.config.fleet.refresh_s
                self.tasks.append(spawn(self._every("fleet", every, self._fleet_from_ray)))

    async def _fleet_from_ray(self) -> None:
        """The fleet is every alive node of the Ray cluster, each with an agent at the
        configured port."""
        assert self.serve_api is not None and self.fleet is not None
        port = self.config.fleet.agent_port
        nodes = await self.serve_api.nodes()
        self.fleet.peers = [
            Peer(n.hostname, f"http://{n.address}:{port}")
            for n in nodes
            if n.alive and n.hostname != self.local.host
        ]

    async def _gpu_loop(self, interval: float) -> None:
        try:
            await self._every("gpu", interval, self._gpu)
        except asyncio.CancelledError:
            if not self.gpu.available:
                return
            raise

    async def run(self, stop: asyncio.Event | None = None) -> None:
        # Collectors and ingest take turns on DuckDB anyway; the default pool would grow to
        # min(32, cores + 4) threads on a big GPU host.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="agent")
        )
        self.start_tasks()
        app = create_app(self.ctx)
        api = self.config.api
        self.server = server(app, api.host, api.port)
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        if stop is not None:
            self.tasks.append(loop.create_task(self._stop_when(stop)))
        log.info(
            "agent listening on http://%s:%d (role %s, data %s)",
            api.host,
            api.port,
            "controller" if self.controller else "agent",
            self.config.data_dir,
        )
        if not is_loopback(api.host):
            log.warning(
                "the API is bound to %s, beyond loopback: anyone who can reach it and holds a"
                " token can read this host's request log; keep it on a cluster network, or"
                " bind 127.0.0.1 and reach it through SSH tunnels",
                api.host,
            )
        try:
            await self.server.serve()
        finally:
            await self.shutdown()

    async def _stop_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.request_stop()

    def request_stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True

    async def shutdown(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await self._write_telemetry()
        except Exception:
            log.exception("could not write the last telemetry samples")
        try:
            await asyncio.to_thread(ingest_once, self.store, self.config.spool_path)
        except Exception:
            log.exception("final ingest failed; the files stay in the spool")
        if self.ctx.replayer is not None:
            await self.ctx.replayer.aclose()
        if self.serve_api is not None:
            await self.serve_api.aclose()
        if self.fleet is not None:
            await asyncio.to_thread(self.fleet.close)
        self.store.close()
        log.info("agent stopped; DuckDB closed cleanly")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trackside agent", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="agent TOML (default: every default)")
    parser.add_argument("--port", type=int, help="override api.port")
    parser.add_argument("--data-dir", type=Path, help="override data_dir")
    parser.add_argument("--controller", action="store_true", help="enable the controller role")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = load_agent_config(args.config)
        updates: dict[str, Any] = {}
        if args.port is not None:
            updates["api"] = config.api.model_copy(update={"port": args.port})
        if args.data_dir is not None:
            updates["data_dir"] = args.data_dir
        if args.controller:
            updates["controller"] = config.controller.model_copy(update={"enabled": True})
        config = config.model_copy(update=updates)
        agent = Agent(config)
    except (ConfigError, StoreLocked, SecretFileError) as exc:
        log.error("%s", exc)
        print(f"trackside agent: {exc}", file=sys.stderr)
        return 2
    asyncio.run(agent.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
