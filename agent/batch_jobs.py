"""Batch jobs on the controller: start one (a version's artifact checked, the input listed,
counted and hashed, the spec written, a Ray job submitted), follow it, cancel it, compare two,
and run the `[[batch]]` schedules of the models' configs (agent/batch_rules.py decides).

The driver (serve/batch_job.py) runs on the head node as a Ray job; it reports through files
in the job's folder (serve/batch_contract.py), which the tick reads into the job's row of
DuckDB's `batch_jobs` table. Every start, refusal, cancel and end is in the audit table.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import itertools
import json
import logging
import os
import shlex
import shutil
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent import batch_rules as rules
from agent.controller import Controller
from agent.errors import ApiError, Conflict, Invalid, NotFound
from agent.schemas.batch import FINISHED, BatchDiff, BatchDrift, BatchJob, BatchStart
from agent.schemas.drift import DriftThresholds
from agent.serve_api import ServeAPIError
from agent.store import Store, naive_utc
from agent.summaries import bins_from_reference
from serve.batch_contract import (
    JOB_FILE,
    OUTCOME_FILE,
    PREDICTIONS_DIR,
    PROGRESS_FILE,
    SPEC_FILE,
    BatchOutcome,
    BatchProgress,
    BatchSpec,
    InputFile,
    InputFormat,
    read_json,
    write_atomically,
)
from serve.cron import Cron
from serve.model_config import BatchSchedule
from serve.model_store import IntegrityError, StoreError
from serve.serve_config import plan_version

log = logging.getLogger("trackside.batch")
EXTENSIONS: dict[str, InputFormat] = {".parquet": "parquet", ".csv": "csv"}
# Rows per block read and per batch scored: 8192 cost Ray a fifth of the pool's rate on this
# machine (scripts/bench/batch.py).
BLOCK_ROWS = 32768
BATCH_ROWS = 32768
_HASH_CHUNK = 1 << 22


# -- the input ------------------------------------------------------------------------------------
SCHEDULE_RETRY = timedelta(minutes=1)
MAX_LISTED = 100_000  # entries of a folder walked to find the input files


def inside(path: Path, roots: list[Path]) -> bool:
    """Whether `path`, links resolved, is one of `roots` or under one."""
    real = Path(os.path.realpath(path))
    return any(real == root or root in real.parents for root in roots)


def _walk(root: Path) -> list[Path]:
    """The .parquet/.csv files under a folder, hidden and `_` names skipped (as Ray does), and
    never a batch job's own output (a folder holding its _job.json)."""
    found, seen = [], 0
    for folder, dirs, names in os.walk(root):
        if JOB_FILE in names:
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        seen += len(dirs) + len(names)
        if seen > MAX_LISTED:
            raise Invalid(f"input {root} holds over {MAX_LISTED:,} entries: give a glob instead")
        for name in names:
            if not name.startswith((".", "_")) and Path(name).suffix.lower() in EXTENSIONS:
                found.append(Path(folder) / name)
    return sorted(found)


GLOB_CHARS = "*?["


def fixed_part(pattern: str) -> Path:
    """The folder a glob starts from: its path up to the first part with a wildcard."""
    parts = Path(pattern).parts
    head = list(itertools.takewhile(lambda p: not any(c in p for c in GLOB_CHARS), parts))
    return Path(*head) if head else Path("/")


def list_inputs(pattern: str, roots: list[Path]) -> tuple[list[Path], Path]:
    """The files a job reads (links resolved), sorted, and the root their names are relative
    to: a file, every .parquet/.csv file under a folder, or a glob (one level per `*`, as a
    shell's; no `**`; names relative to the glob's fixed folder, so they do not change with
    what it matches). Nothing outside the configured roots is even looked at."""
    path = Path(pattern)
    if not path.is_absolute():
        raise Invalid(f"input {pattern!r} must be an absolute path on the head node")
    if "**" in pattern:
        raise Invalid("input: `**` is not taken; name the levels (/data/*/part-*.parquet)")
    is_glob = any(ch in pattern for ch in GLOB_CHARS)
    start = fixed_part(pattern) if is_glob else path
    if not inside(start if is_glob else path, roots):
        raise Invalid(
            f"input {pattern!r} is outside the folders batch jobs may read"
            f" ([controller] batch_roots: {[str(r) for r in roots]})"
        )
    if is_glob:
        root = Path(os.path.realpath(start))
        files = sorted(Path(os.path.realpath(p)) for p in glob.glob(pattern) if Path(p).is_file())
        files = [f for f in files if not any((d / JOB_FILE).exists() for d in f.parents)]
    elif path.is_dir():
        root = Path(os.path.realpath(path))
        files = [Path(os.path.realpath(f)) for f in _walk(path)]
    elif path.is_file():
        files = [Path(os.path.realpath(path))]
        root = files[0].parent
    else:
        raise Invalid(f"input {pattern!r}: no such file or folder on the controller's host")
    if any(not inside(f, roots) for f in files):  # a link that leads out
        raise Invalid(f"input {pattern!r} links to files outside the folders batch jobs may read")
    if any(root not in f.parents for f in files):
        raise Invalid(f"input {pattern!r} links to files outside its own folder {root}")
    if not files:
        raise Invalid(f"input {pattern!r} holds no .parquet or .csv file")
    return files, root


def input_format(files: list[Path], asked: InputFormat | None) -> InputFormat:
    if asked is not None:
        return asked
    kinds = {EXTENSIONS.get(f.suffix.lower()) for f in files}
    if None in kinds or len(kinds) != 1:
        raise Invalid(
            "the input mixes formats or has files that are neither .parquet nor .csv: give"
            " format, or one kind of file"
        )
    (kind,) = kinds
    assert kind is not None
    return kind


def count_rows(path: Path, fmt: InputFormat) -> int:
    """Data rows (for progress and the ETA): Parquet's footer says; a CSV's lines less its
    header (a quoted field with a newline in it counts twice: an estimate)."""
    import pyarrow.parquet as pq

    if fmt == "parquet":
        try:
            return int(pq.read_metadata(path).num_rows)
        except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
            raise Invalid(f"{path} is not a Parquet file: {exc}") from exc
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


def inputs_sha256(files: list[InputFile]) -> str:
    """One hash over every file's name and bytes, in order: the same input, the same hash."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with open(f.path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def _describe_inputs(
    pattern: str, asked: InputFormat | None, roots: list[Path]
) -> tuple[list[InputFile], InputFormat, str, Path]:
    files, root = list_inputs(pattern, roots)
    fmt = input_format(files, asked)
    inputs = [
        InputFile(path=str(f), name=f.relative_to(root).as_posix(), rows=count_rows(f, fmt))
        for f in files
    ]
    return inputs, fmt, inputs_sha256(inputs), root


# -- the record ------------------------------------------------------------------------------------
JSON_COLUMNS = ("phases", "timeline", "drift", "nodes")


def _row(job: BatchJob) -> dict[str, Any]:
    doc = job.model_dump(mode="json", exclude={"rows_per_s", "eta_s", "note"})
    for key in JSON_COLUMNS:
        doc[key] = json.dumps(doc[key]) if doc[key] is not None else None
    for key in ("started_at", "ended_at"):
        value = getattr(job, key)
        doc[key] = naive_utc(value) if value is not None else None
    return doc


def _job(row: dict[str, Any]) -> BatchJob:
    doc = dict(row)
    for key in JSON_COLUMNS:
        doc[key] = json.loads(doc[key]) if doc[key] else None
    return BatchJob.model_validate(doc)


@dataclass(frozen=True)
class JobTotals:
    model: str
    state: str
    jobs: int
    scored: int
    rejected: int


class BatchJobs:
    def __init__(
        self, store: Store, controller: Controller, folder: Path, roots: list[Path]
    ) -> None:
        self.store = store
        self.ctl = controller
        self.folder = folder
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self._lock = asyncio.Lock()  # one submit, cancel or refresh at a time
        self._retry_at: dict[str, datetime] = {}  # a schedule whose start Ray did not answer

    # -- reads -----------------------------------------------------------------------------
    def get(self, job_id: str) -> BatchJob:
        rows = self.store.query("SELECT * FROM batch_jobs WHERE id = ?", [job_id])
        if not rows:
            raise NotFound(f"no batch job {job_id!r}")
        return self._live(_job(rows[0]))

    def all(self, model: str | None = None, limit: int = 100) -> list[BatchJob]:
        rows = self.store.query(
            "SELECT * FROM batch_jobs WHERE $model IS NULL OR model = $model"
            " ORDER BY started_at DESC, id DESC LIMIT $limit",
            {"model": model, "limit": limit},
        )
        return [self._live(_job(r)) for r in rows]

    def totals(self) -> list[JobTotals]:
        """Jobs and rows per model and state (a running job's rows as last saved)."""
        rows = self.store.query(
            "SELECT model, state, count(*) AS jobs, coalesce(sum(scored), 0) AS scored,"
            " coalesce(sum(rejected), 0) AS rejected FROM batch_jobs GROUP BY ALL"
        )
        return [
            JobTotals(
                **{k: r[k] for k in ("model", "state")},
                jobs=int(r["jobs"]),
                scored=int(r["scored"]),
                rejected=int(r["rejected"]),
            )
            for r in rows
        ]

    def _live(self, job: BatchJob) -> BatchJob:
        """A running job's rate and ETA, from its latest progress, and a note if it has not
        read a row for long."""
        if job.state != "running":
            return job
        raw = read_json(self._dir(job.id) / PROGRESS_FILE)
        try:
            p = BatchProgress.model_validate(raw) if raw else BatchProgress(total=job.total)
        except ValidationError:  # a progress file from another version of the driver
            p = BatchProgress(read=job.read, scored=job.scored, rejected=job.rejected)
        rate, eta = rules.eta_s(p.read, job.total, p.elapsed_s)
        waited = (datetime.now(UTC) - job.started_at).total_seconds()
        return job.model_copy(
            update={
                "read": p.read,
                "scored": p.scored,
                "rejected": p.rejected,
                "rows_per_s": rate,
                "eta_s": eta,
                "note": rules.stalled(p.read, waited),
            }
        )

    def _dir(self, job_id: str) -> Path:
        return self.folder / job_id

    def _save(self, job: BatchJob) -> None:
        row = _row(job)
        names = ", ".join(f'"{k}"' for k in row)
        marks = ", ".join("?" for _ in row)
        self.store.execute(
            f"INSERT OR REPLACE INTO batch_jobs ({names}) VALUES ({marks})", list(row.values())
        )

    def _audit(
        self,
        action: str,
        job: BatchJob | None,
        request: dict[str, Any],
        result: str,
        who: str,
        error: str | None = None,
    ) -> None:
        """The request, and the job as it then stood (its numbers, not its drift report)."""
        if job is not None:
            keep = {"id", "version", "sha256", "input_sha256", "output", "state", "total"}
            request = request | job.model_dump(mode="json", include=keep)
            request |= {"read": job.read, "scored": job.scored, "rejected": job.rejected}
        model = job.model if job else request.get("model")
        self.store.audit(who, action, model, request, None, None, result, error)

    # -- start -----------------------------------------------------------------------------
    async def start(self, body: BatchStart, who: str, schedule: str | None = None) -> BatchJob:
        request = body.model_dump(mode="json") | ({"schedule": schedule} if schedule else {})
        try:
            job, spec = await self._prepare(body, who, schedule)  # the slow part: no lock
            async with self._lock:
                taken = self.store.query(
                    "SELECT id FROM batch_jobs WHERE state = 'running' AND output = ?", [job.output]
                )
                if taken:
                    raise Conflict(f"job {taken[0]['id']} is writing {job.output} already")
                await self._submit(job, spec)
        except ApiError as exc:
            self._audit("batch_start", None, request, "refused", who, exc.message)
            raise
        self._audit("batch_start", job, request, "ok", who)
        return job

    async def _prepare(
        self, body: BatchStart, who: str, schedule: str | None
    ) -> tuple[BatchJob, BatchSpec]:
        if not self.roots:
            raise Conflict(
                "batch jobs are off on this controller: list the folders they may read and"
                " write in [controller] batch_roots of the agent's config"
            )
        config = self.ctl.models.get(body.model)
        if config is None:
            raise NotFound(f"unknown model {body.model!r}; known: {sorted(self.ctl.models)}")
        store = self.ctl.model_store
        manifests = store.list(body.model)
        stable = self.ctl.states().get(body.model)
        directions = {name: rule.higher_is_better for name, rule in config.blessing.items()}
        version = rules.resolve_version(
            body.version, stable.stable if stable else None, manifests, directions
        )
        try:
            # The artifact's bytes against its manifest, before any row is read.
            loaded = await asyncio.to_thread(store.load, body.model, version)
            reference = store.reference_path(body.model, version)
        except IntegrityError as exc:
            raise Conflict(f"refused: {exc}") from exc
        except StoreError as exc:
            raise Conflict(str(exc)) from exc
        output = Path(body.output)
        if not output.is_absolute():
            raise Invalid(f"output {body.output!r} must be an absolute path on the head node")
        output = Path(os.path.realpath(output))
        if not inside(output, self.roots):
            raise Invalid(
                f"output {output} is outside the folders batch jobs may write"
                f" ([controller] batch_roots: {[str(r) for r in self.roots]})"
            )
        if output.exists():
            raise Conflict(f"output {output} exists: a job writes a new folder, never over one")
        if not output.parent.is_dir():
            raise Invalid(f"output's parent {output.parent} is not a folder on the head node")
        inputs, fmt, digest, root = await asyncio.to_thread(
            _describe_inputs, body.input, body.format, self.roots
        )
        if not Path(body.input).is_file() and (output == root or root in output.parents):
            raise Invalid(
                f"output {output} is inside the input {root}: the next run of the same input"
                " would read these predictions; write it beside the input"
            )
        vb = None
        if reference is not None and reference.is_file():
            features = list(loaded.manifest.input.features)
            vb = await asyncio.to_thread(
                bins_from_reference, body.model, version, features, str(reference)
            )
        options = config.options(version)
        try:
            cluster = await self.ctl.api.cluster_resources()
        except ServeAPIError as exc:
            raise ApiError(502, f"Ray did not say what the cluster has: {exc}") from exc
        plan = plan_version(body.model, version, options, cluster)
        if plan.problem is not None:
            raise Conflict(f"{body.model}/{version} cannot run here: {plan.problem}")
        now = datetime.now(UTC)
        job_id = f"{body.model}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        spec = BatchSpec(
            job_id=job_id,
            input_sha256=digest,
            model=body.model,
            version=version,
            sha256=loaded.manifest.sha256,
            store=str(store.root),
            inputs=inputs,
            format=fmt,
            output=str(output),
            staging=str(output.parent / f".{output.name}.staging-{job_id}"),
            actors=options.num_replicas or options.autoscaling.max_replicas,
            num_cpus=options.num_cpus,
            num_gpus=plan.num_gpus,
            batch_size=BATCH_ROWS,
            block_rows=BLOCK_ROWS,
            drift_edges=[b.edges.tolist() for b in vb.bins] if vb else None,
        )
        job = BatchJob(
            id=job_id,
            model=body.model,
            selector=body.version,
            version=version,
            sha256=spec.sha256,
            input=body.input,
            input_sha256=digest,
            files=len(inputs),
            output=str(output),
            format=fmt,
            state="running",
            who=who,
            schedule=schedule,
            started_at=now,
            total=sum(f.rows for f in inputs),
        )
        return job, spec

    async def _submit(self, job: BatchJob, spec: BatchSpec) -> None:
        folder = self._dir(job.id)
        folder.mkdir(parents=True, mode=0o700)
        write_atomically(folder / SPEC_FILE, spec)
        self._save(job)  # the record first: a crash after the submit still finds the job
        entrypoint = shlex.join([sys.executable, "-m", "serve.batch_job", str(folder / SPEC_FILE)])
        try:
            await self.ctl.api.submit_job(
                job.id,
                entrypoint,
                metadata={"trackside": "batch", "model": job.model, "version": job.version},
                env={"TRACKSIDE_ORT_THREADS": os.environ.get("TRACKSIDE_ORT_THREADS", "1")},
            )
        except ServeAPIError as exc:
            # No answer is not a refusal: if Ray has the job, it runs, and the tick follows it.
            with contextlib.suppress(ServeAPIError):
                if await self.ctl.api.job(job.id) is not None:
                    return
            ended = datetime.now(UTC)
            self._save(
                job.model_copy(update={"state": "failed", "error": str(exc), "ended_at": ended})
            )
            raise ApiError(502, f"Ray refused the job: {exc}") from exc

    # -- follow ------------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Every running job brought up to date from Ray and the driver's files."""
        running = self.store.query("SELECT id FROM batch_jobs WHERE state = 'running'")
        for row in running:
            async with self._lock:
                job = _job(
                    self.store.query("SELECT * FROM batch_jobs WHERE id = ?", [row["id"]])[0]
                )
                if job.state != "running":
                    continue
                try:
                    await self._follow(job)
                except ServeAPIError as exc:  # Ray away for a moment: ask again next tick
                    log.warning("batch job %s: Ray did not answer: %s", job.id, exc)
                except Exception as exc:  # its files are unreadable: it cannot be followed
                    log.exception("batch job %s cannot be followed", job.id)
                    await self._finish(
                        job, "failed", None, f"the job's files are unreadable: {exc}"
                    )

    async def _follow(self, job: BatchJob, cancelled_by: str | None = None) -> None:
        ray_job = await self.ctl.api.job(job.id)
        raw = read_json(self._dir(job.id) / OUTCOME_FILE)
        outcome = BatchOutcome.model_validate(raw) if raw else None  # invalid: ValidationError
        if ray_job is None and outcome is None:
            state = "failed"
            error: str | None = "Ray does not know the job any more (was the head restarted?)"
        else:
            state = rules.state_of(
                ray_job.status if ray_job else "", outcome.state if outcome else None
            )
            error = outcome.error if outcome else (ray_job.message if ray_job else None)
        if state == "cancelled" and cancelled_by:
            error = f"cancelled by {cancelled_by}"
        if state == "running":
            live = self._live(job)
            if (live.read, live.scored, live.rejected) != (job.read, job.scored, job.rejected):
                self._save(
                    live.model_copy(update={"rows_per_s": None, "eta_s": None, "note": None})
                )
            return
        await self._finish(job, state, outcome, error)

    async def _finish(
        self, job: BatchJob, state: str, outcome: BatchOutcome | None, error: str | None
    ) -> None:
        ended = datetime.now(UTC)
        update: dict[str, Any] = {
            "state": state,
            "ended_at": ended,
            "duration_s": (ended - job.started_at).total_seconds(),
        }
        if outcome is not None:
            update |= {
                "phases": outcome.phases,
                "timeline": outcome.timeline,
                "provider": outcome.provider,
                "nodes": outcome.nodes,
                "duration_s": outcome.wall_s,
            }
            if state == "succeeded":  # a failed driver's counts are empty: keep the progress
                update |= {
                    "read": outcome.read,
                    "scored": outcome.scored,
                    "rejected": outcome.rejected,
                }
            if outcome.drift is not None:
                try:
                    update["drift"] = await asyncio.to_thread(self._drift, job, outcome)
                except (OSError, StoreError, ValueError) as exc:  # the reference went away
                    log.warning("batch job %s: no drift report: %s", job.id, exc)
        if state != "succeeded":
            update["error"] = error or ("cancelled" if state == "cancelled" else "the job failed")
            with contextlib.suppress(OSError, ValidationError):
                spec = BatchSpec.model_validate_json((self._dir(job.id) / SPEC_FILE).read_text())
                shutil.rmtree(spec.staging, ignore_errors=True)
        done = job.model_copy(update=update)
        self._save(done)
        result = "ok" if state == "succeeded" else state
        self._audit("batch_end", done, {"id": job.id}, result, "controller", done.error)
        log.info(
            "batch job %s %s: %d scored, %d rejected", job.id, state, done.scored, done.rejected
        )

    def _drift(self, job: BatchJob, outcome: BatchOutcome) -> BatchDrift | None:
        from agent.analysis.drift import bucket_results, drifted_first, feature_drift
        from agent.request_log import REFERENCE, counts_on_bins

        assert outcome.drift is not None
        manifest = self.ctl.model_store.manifest(job.model, job.version)
        features = list(manifest.input.features)
        reference = self.ctl.model_store.reference_path(job.model, job.version)
        if reference is None:
            return None
        vb = bins_from_reference(job.model, job.version, features, str(reference))
        dense = {
            "n": [c for f in outcome.drift.features for c in f.counts],
            "outer": [[f.below_sum, f.above_sum] for f in outcome.drift.features],
        }
        counts = counts_on_bins(vb, list(range(len(features))), 1, dense)
        labels = None
        if vb.reference_labels is not None:
            labels = {REFERENCE: vb.reference_labels, 0: outcome.drift.labels}
        results, prediction, rows = bucket_results(features, counts, labels, 0, DriftThresholds())
        drifted = [feature_drift(f) for f in results]
        return BatchDrift(
            reference_rows=max((f.reference_rows for f in drifted), default=0),
            current_rows=rows,
            drifted=drifted_first(drifted),
            features=drifted,
            prediction=feature_drift(prediction) if prediction else None,
        )

    # -- cancel ------------------------------------------------------------------------------
    async def cancel(self, job_id: str, who: str, wait_s: float = 20.0) -> BatchJob:
        """Ask Ray to stop the driver (its actors and tasks go with it) and wait until it has:
        a job is marked cancelled only once nothing of it runs."""
        request = {"id": job_id}
        try:
            async with self._lock:
                job = self.get(job_id)
                request["model"] = job.model
                if job.state in FINISHED:
                    raise Conflict(f"batch job {job_id} has {job.state} already")
                try:
                    await self.ctl.api.stop_job(job_id)
                    deadline = asyncio.get_running_loop().time() + wait_s
                    while asyncio.get_running_loop().time() < deadline:
                        ray_job = await self.ctl.api.job(job_id)
                        if ray_job is None or ray_job.status in ("STOPPED", "FAILED", "SUCCEEDED"):
                            break
                        await asyncio.sleep(0.5)
                    else:
                        raise ApiError(
                            502,
                            f"Ray was asked to stop {job_id} and has not yet; the job's state"
                            " follows when it does",
                        )
                except ServeAPIError as exc:
                    raise ApiError(502, f"Ray did not stop the job: {exc}") from exc
                await self._follow(job, cancelled_by=who)
                done = self.get(job_id)
                if done.state != "cancelled":
                    raise Conflict(f"batch job {job_id} {done.state} before it could be cancelled")
        except ApiError as exc:
            self._audit("batch_cancel", None, request, "refused", who, exc.message)
            raise
        self._audit("batch_cancel", done, {"id": job_id}, "ok", who)
        return done

    # -- compare ------------------------------------------------------------------------------
    def diff(self, a: str, b: str, examples: int = 10) -> BatchDiff:
        jobs = [self.get(a), self.get(b)]
        for job in jobs:
            if job.state != "succeeded":
                raise Conflict(f"batch job {job.id} has {job.state}: only finished jobs compare")
        sides = [sorted((Path(j.output) / PREDICTIONS_DIR).glob("*.parquet")) for j in jobs]
        with self.store.cursor() as cur:
            # Each side's files listed here (an output path is never read as a pattern), into
            # temporary tables of this cursor's own connection.
            for name, files in zip(("batch_a", "batch_b"), sides, strict=True):
                source = (
                    "SELECT row_id, label::VARCHAR AS label, probabilities::FLOAT[] AS p"
                    " FROM read_parquet(?, union_by_name = true)"
                )
                if not files:
                    source = (
                        "SELECT NULL::VARCHAR AS row_id, NULL::VARCHAR AS label,"
                        " NULL::FLOAT[] AS p WHERE false"
                    )
                elif not self._has_probabilities(cur, files):
                    source = source.replace("probabilities::FLOAT[]", "NULL::FLOAT[]")
                params = [[str(f) for f in files]] if files else []
                cur.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {source}", params)
            cur.execute(
                """
                CREATE OR REPLACE TEMP TABLE batch_pair AS
                SELECT a.row_id AS a_id, b.row_id AS b_id, a.label AS a_label, b.label AS b_label,
                    a.p AS a_p, b.p AS b_p, a.row_id IS NOT NULL AND b.row_id IS NOT NULL AS in_both
                FROM batch_a a FULL OUTER JOIN batch_b b USING (row_id)
                """
            )
            row = cur.execute(
                """
                SELECT count(a_id)::BIGINT, count(b_id)::BIGINT,
                    count(*) FILTER (in_both)::BIGINT,
                    count(*) FILTER (b_id IS NULL)::BIGINT,
                    count(*) FILTER (a_id IS NULL)::BIGINT,
                    count(*) FILTER (in_both AND a_label IS DISTINCT FROM b_label)::BIGINT,
                    count(*) FILTER (in_both AND a_p IS DISTINCT FROM b_p)::BIGINT,
                    max(list_max(list_transform(list_zip(a_p, b_p), lambda p: abs(p[1] - p[2]))))
                FROM batch_pair
                """
            ).fetchone()
            assert row is not None
            changed_ids = [
                r[0]
                for r in cur.execute(
                    "SELECT a_id FROM batch_pair WHERE in_both AND a_label IS DISTINCT FROM b_label"
                    " ORDER BY regexp_extract(a_id, '^(.*):', 1),"
                    " regexp_extract(a_id, ':([0-9]+)$', 1)::BIGINT LIMIT ?",
                    [examples],
                ).fetchall()
            ]
            cur.execute("DROP TABLE batch_pair; DROP TABLE batch_a; DROP TABLE batch_b")
        rows_a, rows_b, common, only_a, only_b, changed, p_changed, max_change = row
        return BatchDiff(
            a=a,
            b=b,
            rows_a=rows_a,
            rows_b=rows_b,
            common=common,
            only_a=only_a,
            only_b=only_b,
            labels_changed=changed,
            probabilities_changed=p_changed,
            max_probability_change=max_change,
            identical=only_a == 0 and only_b == 0 and changed == 0 and p_changed == 0,
            examples=changed_ids,
        )

    @staticmethod
    def _has_probabilities(cur: Any, files: list[Path]) -> bool:
        described = cur.execute("DESCRIBE SELECT * FROM read_parquet(?)", [[str(f) for f in files]])
        return "probabilities" in {r[0] for r in described.fetchall()}

    # -- schedules ---------------------------------------------------------------------------
    async def run_schedules(self, now: datetime | None = None) -> list[BatchJob]:
        """Start the jobs the `[[batch]]` schedules owe: the latest firing since each one's
        last run, once. A schedule seen for the first time owes nothing until it fires."""
        now = naive_utc(now or datetime.now(UTC))
        started = []
        for config in self.ctl.models.values():
            for entry in config.batch:
                job = await self._run_schedule(config.model, entry, now)
                if job is not None:
                    started.append(job)
        return started

    async def _run_schedule(
        self, model: str, entry: BatchSchedule, now: datetime
    ) -> BatchJob | None:
        key = f"batch_schedule:{model}:{entry.name}"
        if now < self._retry_at.get(key, now):
            return None
        last_text = self.store.get_state(key)
        if last_text is None:
            self.store.put_state(key, now.isoformat())
            return None
        slot = rules.due_slot(Cron.parse(entry.cron), datetime.fromisoformat(last_text), now)
        if slot is None:
            return None
        # Recorded before the job starts: a crash between the two skips a run, never repeats one.
        self.store.put_state(key, slot.isoformat())
        body = BatchStart(
            model=model,
            version=entry.version,
            input=entry.input,
            output=str(Path(entry.output) / f"{slot:%Y%m%dT%H%MZ}"),
            format=entry.format,
        )
        try:
            return await self.start(body, who=f"schedule {entry.name}", schedule=entry.name)
        except ApiError as exc:
            log.warning("batch %s/%s for %s refused: %s", model, entry.name, slot, exc.message)
            if exc.status >= 500:  # Ray did not answer: the run is still owed, ask again later
                self.store.put_state(key, last_text)
                self._retry_at[key] = now + SCHEDULE_RETRY
            return None

    async def tick(self) -> None:
        await self.refresh()
        await self.run_schedules()
