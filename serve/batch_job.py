"""A batch job's driver, run on the Ray cluster as a Ray job: `python -m serve.batch_job SPEC`.

Ray Data reads the input files (one read task per file, in parallel across the cluster), an
actor pool scores them with the very artifact and ONNX Runtime code a Serve replica uses
(serve/onnx_model.py, loaded through the model store: sha256 checked), and a datasink writes
Parquet. Rows keep their order (`preserve_order`) and every block's file is named after its
first row, so a rerun of the same input and version writes the same bytes.

- Reading: Ray Data's file datasource with a reader of our own, because a row needs an id that
  is the same on every rerun (`file:row`, the row's place in its file), and neither Ray's
  Parquet nor its CSV reader says where a row was; the rows are checked against the manifest's
  schema there (serve/batch_rows.py), so a bad row is set aside with its reason in the read
  task and never stops the job.
- Progress goes to a small actor every task reports to; the driver writes it to
  progress.json each second. The counts that are final (rows, rejects, the drift counts of
  the good rows on the version's bins) come from the datasink's write results, so a retried
  task is not counted twice.
- The output is written to a staging folder renamed into place when every row is written.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import ray
from ray.data import ActorPoolStrategy, DataContext
from ray.data.block import Block, BlockMetadata
from ray.data.datasource import Datasink, Datasource, ReadTask
from ray.data.datasource.datasink import WriteResult

from serve.batch_contract import (
    JOB_FILE,
    OUTCOME_FILE,
    PREDICTIONS_DIR,
    PROGRESS_FILE,
    REJECTS_DIR,
    BatchOutcome,
    BatchProgress,
    BatchSpec,
    DriftCounts,
    FeatureCounts,
    PhaseSeconds,
    Timeline,
    write_atomically,
)
from serve.batch_rows import check_rows
from serve.manifest import InputSchema
from serve.model_store import ModelStore
from serve.onnx_model import OnnxModel
from serve.replica_facts import CUDA
from serve.value_bins import bin_index

# Parquet: explicit settings, so the bytes depend on the rows only.
WRITE_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3, "version": "2.6"}


@ray.remote(num_cpus=0)
class ProgressCounter:
    """Running totals every task adds to; the driver reads them once a second."""

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self.firsts: dict[str, float] = {}  # Unix time each total first rose
        self.provider: str | None = None
        self.nodes: set[str] = set()  # the address of each node an actor scored on

    def add(self, **amounts: float) -> None:
        now = time.time()
        for key, amount in amounts.items():
            if amount > 0:
                self.firsts.setdefault(key, now)
        self.totals.update(amounts)

    def ran_on(self, provider: str, node: str) -> None:
        self.provider = provider
        self.nodes.add(node)

    def node_addresses(self) -> list[str]:
        return sorted(self.nodes)

    def read(self) -> tuple[dict[str, float], str | None]:
        return dict(self.totals), self.provider

    def first_times(self) -> dict[str, float]:
        return dict(self.firsts)


@dataclass(frozen=True)
class Piece:
    """What one read task reads: a file's row groups (Parquet), or a whole CSV file."""

    file: int
    first_row: int
    rows: int
    row_groups: tuple[int, ...] | None


def pieces(spec: BatchSpec, rows_per_task: int) -> list[Piece]:
    """Parquet files split at row groups into pieces of about `rows_per_task` rows (a file is
    read in parallel as far as its row groups allow); a CSV file is one piece."""
    out: list[Piece] = []
    for i, f in enumerate(spec.inputs):
        if spec.format == "csv":
            out.append(Piece(i, 0, f.rows, None))
            continue
        meta = pq.read_metadata(f.path)
        groups: list[int] = []
        first = at = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            at += meta.row_group(g).num_rows
            if at - first >= rows_per_task:
                out.append(Piece(i, first, at - first, tuple(groups)))
                groups, first = [], at
        if groups:
            out.append(Piece(i, first, at - first, tuple(groups)))
    return out


class InputRows(Datasource):
    """The input's pieces read in order, checked, each row given `_file` (its file's index in
    the spec), `_row` (its place in the file), `_reason` (why it was set aside, or null) and
    `x` (its values as the model takes them)."""

    def __init__(self, spec: BatchSpec, schema: InputSchema, counter: Any) -> None:
        self._spec = spec
        self._input_schema = schema
        self._counter = counter
        self.pieces = pieces(spec, rows_per_task=max(spec.batch_size, spec.block_rows))

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        return [
            ReadTask(
                functools.partial(self._read, piece),
                BlockMetadata(
                    num_rows=piece.rows,
                    size_bytes=None,
                    input_files=(self._spec.inputs[piece.file].path,),
                    exec_stats=None,
                ),
            )
            for piece in self.pieces
        ]

    def _read(self, piece: Piece) -> Iterator[Block]:
        path = self._spec.inputs[piece.file].path
        if piece.row_groups is None:
            with open(path, "rb") as f:
                yield from self._csv(piece.file, f)
            return
        parquet = pq.ParquetFile(path)
        at = piece.first_row
        for batch in parquet.iter_batches(
            batch_size=self._spec.block_rows, row_groups=list(piece.row_groups)
        ):
            table = pa.Table.from_batches([batch])
            yield self._checked(piece.file, np.arange(at, at + table.num_rows), table)
            at += table.num_rows

    def _csv(self, index: int, f: Any) -> Iterator[Block]:
        """CSV, every feature read as text (a word in one row must not fail the file); a line
        with too few or too many fields is set aside with its line's place."""
        broken: dict[int, str] = {}

        def invalid(row: Any) -> str:
            # `number` is the line (1 = the header): data row number - 2 (unknown: numbered
            # below zero, never taken for a good row's place).
            at = row.number - 2 if row.number is not None else -1 - len(broken)
            broken[at] = f"has {row.actual_columns} fields, the header has {row.expected_columns}"
            return "skip"

        features = self._input_schema.features
        reader = pa_csv.open_csv(
            f,
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=1 << 22),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=invalid),
            # Only the features, all as text: another column's type guessed from the first
            # block (an id of digits, then a word) must not fail the file; a missing feature
            # reads as empty, and every row says so.
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in features},
                include_columns=features,
                include_missing_columns=True,
            ),
        )
        place = 0  # the next data row's place in the file, broken lines included
        done_broken: set[int] = set()
        for batch in reader:
            table = pa.Table.from_batches([batch])
            rows: list[int] = []
            while len(rows) < table.num_rows:
                if place not in broken:
                    rows.append(place)
                place += 1
            for start in range(0, table.num_rows, self._spec.block_rows):
                part = table.slice(start, self._spec.block_rows)
                yield self._checked(index, np.asarray(rows[start : start + part.num_rows]), part)
            pending = sorted(k for k in broken if k < place and k not in done_broken)
            if pending:
                yield self._broken(index, pending, broken)
                done_broken.update(pending)
        rest = sorted(k for k in broken if k not in done_broken)
        if rest:
            yield self._broken(index, rest, broken)

    def _empty_x(self, n: int) -> pa.Array:
        width = len(self._input_schema.features)
        flat = np.zeros(n * width, dtype=self._input_schema.dtype)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), width)

    def _broken(self, index: int, places: list[int], reasons: dict[int, str]) -> pa.Table:
        self._counter.add.remote(read=len(places), rejected=len(places))
        return _block(
            index, np.asarray(places), [reasons[p] for p in places], self._empty_x(len(places))
        )

    def _checked(self, index: int, rows: np.ndarray, table: pa.Table) -> pa.Table:
        started = time.perf_counter()
        checked = check_rows(table, self._input_schema)
        good = checked.good
        width = len(self._input_schema.features)
        values = np.zeros((table.num_rows, width), dtype=self._input_schema.dtype)
        values[good] = checked.rows
        x = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)
        self._counter.add.remote(
            read=table.num_rows,
            rejected=int((~good).sum()),
            validate_s=time.perf_counter() - started,
        )
        return _block(index, rows, checked.reasons, x)


def _block(index: int, rows: np.ndarray, reasons: list[str | None], x: pa.Array) -> pa.Table:
    return pa.table(
        {
            "_file": pa.array(np.full(len(rows), index, dtype=np.int32)),
            "_row": pa.array(rows.astype(np.int64)),
            "_reason": pa.array(reasons, type=pa.string()),
            "x": x,
        }
    )


class Scorer:
    """One actor of the pool: the version's artifact, verified, in the replica's runtime."""

    def __init__(self, spec: BatchSpec, counter: Any) -> None:
        loaded = ModelStore(spec.store).load(spec.model, spec.version)  # sha256 checked
        if loaded.manifest.sha256 != spec.sha256:
            raise RuntimeError(
                f"{spec.model}/{spec.version} is now sha256 {loaded.manifest.sha256}, the job"
                f" was started for {spec.sha256}: refusing to score with another artifact"
            )
        gpu = spec.num_gpus > 0 and bool(ray.get_gpu_ids())
        self.model = OnnxModel(loaded.data, loaded.manifest, gpu_assigned=gpu)
        if spec.num_gpus > 0 and self.model.provider != CUDA:
            # Nothing may run on the CPU in silence when a GPU was asked for.
            raise RuntimeError(
                f"{spec.model}/{spec.version} asked for a GPU but ONNX Runtime runs it on"
                f" {self.model.provider} (is this the onnxruntime-gpu build, and a GPU free?)"
            )
        counter.ran_on.remote(self.model.provider, ray.util.get_node_ip_address())
        self.spec = spec
        self.names = pa.array([f.name for f in spec.inputs], type=pa.string())
        self.width = len(loaded.manifest.input.features)
        self.counter = counter

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        good = pc.is_null(batch.column("_reason")).to_numpy(zero_copy_only=False)
        flat = batch.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        x = flat.reshape(-1, self.width)
        n = batch.num_rows
        label: np.ndarray = np.zeros(n, dtype=np.int64)
        probabilities = None
        if good.any():
            prediction = self.model.predict(np.ascontiguousarray(x[good]))
            # Set-aside rows get no label: a number's placeholder 0 (never written), and for a
            # model whose labels are text, None.
            kind = prediction.labels.dtype
            label = np.full(n, None, dtype=object) if kind.kind in "OUS" else np.zeros(n, kind)
            label[good] = prediction.labels
            if prediction.probabilities is not None:
                k = prediction.probabilities.shape[1]
                probabilities = np.zeros((n, k), dtype=np.float32)
                probabilities[good] = prediction.probabilities
        file_names = self.names.take(batch.column("_file"))
        row_id = pc.binary_join_element_wise(
            file_names, pc.cast(batch.column("_row"), pa.string()), ":"
        )
        out = {
            "_file": batch.column("_file"),
            "_row": batch.column("_row"),
            "_reason": batch.column("_reason"),
            "x": batch.column("x"),
            "row_id": row_id,
            "version": pa.array(np.full(n, self.spec.version, dtype=object), type=pa.string()),
            "sha256": pa.array(np.full(n, self.spec.sha256, dtype=object), type=pa.string()),
            "label": pa.array(label),
        }
        if probabilities is not None:
            out["probabilities"] = pa.FixedSizeListArray.from_arrays(
                pa.array(probabilities.reshape(-1)), probabilities.shape[1]
            )
        self.counter.add.remote(scored=int(good.sum()), score_s=time.perf_counter() - started)
        return pa.table(out)


DriftTotals = list[tuple[np.ndarray, float, float]]


def drift_counts(edges: list[np.ndarray], x: np.ndarray) -> DriftTotals:
    """Each feature counted on its drift bins, with the sums of the values below and above
    the reference's range (what the request log's summaries keep)."""
    out = []
    for j, e in enumerate(edges):
        v = x[:, j].astype(np.float64)
        where = bin_index(e, v)
        counts = np.bincount(where, minlength=len(e) + 2)
        out.append((counts, float(v[where == 0].sum()), float(v[where == len(e) + 1].sum())))
    return out


def _add_drift(a: DriftTotals | None, b: DriftTotals | None) -> DriftTotals | None:
    if a is None or b is None:
        return a if b is None else b
    return [(x[0] + y[0], x[1] + y[1], x[2] + y[2]) for x, y in zip(a, b, strict=True)]


def _write(table: pa.Table, path: Path) -> None:
    """Parquet with fixed settings; mode 0600 (predictions are data; a write task's umask is
    the cluster's)."""
    pq.write_table(table, path, **WRITE_OPTIONS)
    os.chmod(path, 0o600)


class PredictionSink(Datasink[dict[str, Any]]):
    """Writes each block's scored rows to predictions/ and its set-aside rows to rejects/,
    each file named after the block's first row; returns the block's counts."""

    def __init__(
        self, staging: Path, width: int, bins: list[np.ndarray] | None, counter: Any
    ) -> None:
        self.staging = staging
        self.width = width
        self.bins = bins
        self.counter = counter
        self.totals: dict[str, Any] = {}

    def on_write_start(self, schema: pa.Schema | None = None) -> None:
        (self.staging / PREDICTIONS_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.staging / REJECTS_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)

    def write(self, blocks: Iterable[Block], ctx: Any) -> dict[str, Any]:
        stats: dict[str, Any] = {"read": 0, "scored": 0, "rejected": 0, "labels": Counter()}
        drift: DriftTotals | None = None
        for block in blocks:
            table: pa.Table = block
            if table.num_rows == 0:
                continue
            started = time.perf_counter()
            name = f"part-{table['_file'][0].as_py():05d}-{table['_row'][0].as_py():010d}.parquet"
            good_mask = pc.is_null(table.column("_reason"))
            good = table.filter(good_mask)
            bad = table.filter(pc.invert(good_mask))
            columns = ["row_id", "version", "sha256", "label"]
            if "probabilities" in table.column_names:
                columns.append("probabilities")
            if good.num_rows:
                _write(good.select(columns), self.staging / PREDICTIONS_DIR / name)
                for item in pc.value_counts(good.column("label")).to_pylist():
                    stats["labels"][str(item["values"])] += item["counts"]
                if self.bins is not None:
                    x = good.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False)
                    drift = _add_drift(drift, drift_counts(self.bins, x.reshape(-1, self.width)))
            if bad.num_rows:
                rejects = bad.select(["row_id", "_reason"]).rename_columns(["row_id", "reason"])
                _write(rejects, self.staging / REJECTS_DIR / name)
            stats["read"] += table.num_rows
            stats["scored"] += good.num_rows
            stats["rejected"] += bad.num_rows
            self.counter.add.remote(written=table.num_rows, write_s=time.perf_counter() - started)
        stats["drift"] = drift
        return stats

    def on_write_complete(self, write_result: WriteResult[dict[str, Any]]) -> None:
        totals: dict[str, Any] = {"read": 0, "scored": 0, "rejected": 0, "labels": Counter()}
        drift = None
        for stats in write_result.write_returns:
            for key in ("read", "scored", "rejected"):
                totals[key] += stats[key]
            totals["labels"].update(stats["labels"])
            drift = _add_drift(drift, stats["drift"])
        totals["drift"] = drift
        self.totals = totals


def _report_progress(
    folder: Path, counter: Any, total: int, started: float, stop: threading.Event
) -> None:
    while not stop.wait(1.0):
        try:
            totals, _ = ray.get(counter.read.remote(), timeout=5)
        except Exception:  # the cluster is going away; the outcome says how it ended
            continue
        write_atomically(
            folder / PROGRESS_FILE,
            BatchProgress(
                read=int(totals.get("read", 0)),
                scored=int(totals.get("scored", 0)),
                rejected=int(totals.get("rejected", 0)),
                total=total,
                elapsed_s=time.monotonic() - started,
            ),
        )


def run(spec: BatchSpec, folder: Path, timeline: Timeline) -> BatchOutcome:
    started = time.monotonic()
    store = ModelStore(spec.store)
    loaded = store.load(spec.model, spec.version)  # refuses a changed artifact before a row
    if loaded.manifest.sha256 != spec.sha256:
        raise RuntimeError(f"{spec.model}/{spec.version} changed since the job was started")
    schema = loaded.manifest.input
    output, staging = Path(spec.output), Path(spec.staging)
    if output.exists():
        raise RuntimeError(f"output {output} exists already: a job never overwrites one")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)  # its parent was checked at the start: gone is an error
    context = DataContext.get_current()
    context.execution_options.preserve_order = True  # the same rows in the same files
    context.enable_progress_bars = False
    counter = ProgressCounter.remote()  # type: ignore[attr-defined]
    stop = threading.Event()
    total = sum(f.rows for f in spec.inputs)
    reporter = threading.Thread(
        target=_report_progress, args=(folder, counter, total, started, stop), daemon=True
    )
    reporter.start()
    try:
        bins = [np.asarray(e) for e in spec.drift_edges] if spec.drift_edges else None
        sink = PredictionSink(staging, len(schema.features), bins, counter)
        if total:
            source = InputRows(spec, schema, counter)
            # Read and write tasks ask for the actors' CPU share, not Ray's default of a whole
            # CPU: on a host whose replicas hold part of a core, a task asking for one never
            # starts, and the job would wait for ever.
            dataset = ray.data.read_datasource(
                source, override_num_blocks=len(source.pieces), num_cpus=spec.num_cpus
            )
            gpu = {"num_gpus": spec.num_gpus} if spec.num_gpus > 0 else {}
            scored = dataset.map_batches(
                Scorer,
                fn_constructor_kwargs={"spec": spec, "counter": counter},
                batch_size=spec.batch_size,
                batch_format="pyarrow",
                compute=ActorPoolStrategy(size=spec.actors),
                num_cpus=spec.num_cpus,
                # One actor per node before two on one: each host's CPUs (or GPUs) score.
                scheduling_strategy="SPREAD",
                **gpu,
            )
            scored.write_datasink(sink, ray_remote_args={"num_cpus": spec.num_cpus})
        else:
            sink.on_write_start()
    finally:
        stop.set()
        reporter.join(timeout=5)
    totals, provider = ray.get(counter.read.remote())
    firsts = ray.get(counter.first_times.remote())
    nodes = ray.get(counter.node_addresses.remote())

    def since(key: str) -> float | None:
        return firsts[key] - timeline.started_at if key in firsts else None

    timeline = timeline.model_copy(
        update={
            "first_read_s": since("read"),
            "first_scored_s": since("scored"),
            "finished_s": time.time() - timeline.started_at,
        }
    )
    result = sink.totals or {"read": 0, "scored": 0, "rejected": 0, "labels": {}, "drift": None}
    drift = None
    if result["drift"] is not None:
        drift = DriftCounts(
            features=[
                FeatureCounts(counts=[int(c) for c in counts], below_sum=low, above_sum=high)
                for counts, low, high in result["drift"]
            ],
            labels=dict(result["labels"]),
        )
    outcome = BatchOutcome(
        state="succeeded",
        read=result["read"],
        scored=result["scored"],
        rejected=result["rejected"],
        wall_s=time.monotonic() - started,
        phases=PhaseSeconds(
            validate_s=totals.get("validate_s", 0.0),
            score_s=totals.get("score_s", 0.0),
            write_s=totals.get("write_s", 0.0),
        ),
        drift=drift,
        provider=provider,
        nodes=nodes,
        timeline=timeline,
    )
    write_atomically(staging / JOB_FILE, spec)
    os.replace(staging, output)
    return outcome


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path = Path(argv[0])
    spec = BatchSpec.model_validate_json(spec_path.read_text())
    folder = spec_path.parent
    started = time.monotonic()
    os.umask(0o077)  # predictions are data: files 0600, folders 0700
    timeline = Timeline(started_at=psutil.Process().create_time())
    # A Ray job's driver is given RAY_ADDRESS; "auto" finds a running cluster and never starts
    # one (a stray local cluster would also leave a token in ~/.ray that turns on token auth
    # for every later `ray start` of this user).
    address = os.environ.get("RAY_ADDRESS", "auto")
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        timeline = timeline.model_copy(update={"connected_s": time.time() - timeline.started_at})
        outcome = run(spec, folder, timeline)
    except Exception as exc:  # the job's record says why; the traceback is in the job's log
        import traceback

        traceback.print_exc()
        outcome = BatchOutcome(
            state="failed", wall_s=time.monotonic() - started, timeline=timeline, error=_reason(exc)
        )
        shutil.rmtree(spec.staging, ignore_errors=True)
    write_atomically(folder / OUTCOME_FILE, outcome)
    print(outcome.model_dump_json())
    return 0 if outcome.state == "succeeded" else 1


CAUSE = re.compile(r"^\s*(?:ray\.exceptions\.)?\w*(?:Error|Exception)(?:\(\w+\))?: (.+)$")


def _reason(exc: BaseException) -> str:
    """The root cause in a line: Ray wraps a task's failure in layers of its own, the
    innermost `SomeError: message` last."""
    causes = [m.group(1) for line in str(exc).splitlines() if (m := CAUSE.match(line))]
    return (causes[-1] if causes else f"{type(exc).__name__}: {exc}")[:1000]


if __name__ == "__main__":
    sys.exit(main())
