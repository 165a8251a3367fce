"""Batch scoring: 1,000,000 digits rows through the batch job (a Ray job on a local Ray cluster:
Ray Data reading and checking the rows, an actor pool scoring, Parquet written) against a plain
ONNX Runtime loop in one process on the same file (read, score, write), side by side in one
run. Prints where the job's time goes and one RESULT line.

    python -m scripts.bench.batch [--rows N] [--model v2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agent.batch_jobs import inputs_sha256
from agent.serve_api import ServeAPI
from agent.summaries import bins_from_reference
from scripts.train_demo_models import FEATURES, split, train_and_register
from serve.batch_contract import (
    OUTCOME_FILE,
    PROGRESS_FILE,
    SPEC_FILE,
    BatchOutcome,
    BatchSpec,
    InputFile,
    read_json,
    write_atomically,
)
from serve.local_cluster import LocalCluster
from serve.model_store import ModelStore
from serve.onnx_model import OnnxModel

BLOCK = 32768


def write_input(path: Path, rows: int) -> None:
    x_train, x_test, _, _ = split()
    x = np.concatenate([x_train, x_test]).astype(np.float64)
    data = x[np.arange(rows) % len(x)]
    table = pa.table({name: data[:, j] for j, name in enumerate(FEATURES)})
    pq.write_table(table, path, row_group_size=65_536)


def plain_loop(store: ModelStore, model: str, version: str, source: Path, out: Path) -> float:
    """What a team would write by hand: read, score, write; seconds for the whole file."""
    started = time.perf_counter()
    loaded = store.load(model, version)
    onnx = OnnxModel(loaded.data, loaded.manifest)
    features = loaded.manifest.input.features
    writer = None
    for batch in pq.ParquetFile(source).iter_batches(batch_size=BLOCK, columns=features):
        x = np.column_stack([batch.column(i).to_numpy() for i in range(len(features))])
        prediction = onnx.predict(x.astype(np.float32))
        assert prediction.probabilities is not None
        k = prediction.probabilities.shape[1]
        table = pa.table(
            {
                "label": pa.array(prediction.labels),
                "probabilities": pa.FixedSizeListArray.from_arrays(
                    pa.array(prediction.probabilities.reshape(-1)), k
                ),
            }
        )
        writer = writer or pq.ParquetWriter(out, table.schema, compression="zstd")
        writer.write_table(table)
    if writer is not None:
        writer.close()
    return time.perf_counter() - started


def spec_for(
    store: ModelStore, model: str, version: str, source: Path, work: Path, actors: int
) -> BatchSpec:
    manifest = store.manifest(model, version)
    reference = store.reference_path(model, version)
    assert reference is not None
    bins = bins_from_reference(model, version, list(manifest.input.features), str(reference))
    inputs = [InputFile(path=str(source), name=source.name, rows=pq.read_metadata(source).num_rows)]
    return BatchSpec(
        job_id=f"bench-{os.getpid()}-{time.time_ns()}",
        input_sha256=inputs_sha256(inputs),
        model=model,
        version=version,
        sha256=manifest.sha256,
        store=str(store.root),
        inputs=inputs,
        format="parquet",
        output=str(work / "job-out"),
        staging=str(work / ".job-out.staging"),
        actors=actors,
        num_cpus=0.25,
        num_gpus=0.0,
        batch_size=BLOCK,
        block_rows=BLOCK,
        drift_edges=[b.edges.tolist() for b in bins.bins],
    )


async def run_job(
    cluster: LocalCluster, spec: BatchSpec, folder: Path
) -> tuple[float, float, list]:
    """Submitted through the dashboard's Jobs API as the controller does; seconds from the
    submit to the driver's outcome, and the progress seen (elapsed, rows scored)."""
    folder.mkdir(parents=True)
    write_atomically(folder / SPEC_FILE, spec)
    entry = shlex.join([sys.executable, "-m", "serve.batch_job", str(folder / SPEC_FILE)])
    timeline = []
    async with ServeAPI(cluster.dashboard_url) as api:
        started, submitted = time.perf_counter(), time.time()
        await api.submit_job(spec.job_id, entry, {"trackside": "bench"}, {})
        while not (folder / OUTCOME_FILE).exists():
            progress = read_json(folder / PROGRESS_FILE)
            if progress:
                timeline.append((time.perf_counter() - started, progress["scored"]))
            job = await api.job(spec.job_id)
            if job is not None and job.status in ("FAILED", "STOPPED"):
                raise SystemExit(f"the job {job.status}: {await api.job_logs(spec.job_id)}")
            await asyncio.sleep(0.25)
        return time.perf_counter() - started, submitted, timeline


def steady_rate(timeline: list, total: int) -> float | None:
    """Rows per second while the pool ran, between 10% and 90% of the rows scored."""
    points = [(t, n) for t, n in timeline if 0.1 * total <= n <= 0.9 * total]
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--model", default="v2", help="digits version (v2: a random forest)")
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = ModelStore(tmp / "models")
        train_and_register(store, tmp)
        source = tmp / "digits.parquet"
        write_input(source, args.rows)
        cluster = LocalCluster(num_cpus=os.cpu_count() or 2, log_file=tmp / "ray.log")
        cluster.start()
        try:
            plain_s = plain_loop(store, "digits", args.model, source, tmp / "plain.parquet")
            spec = spec_for(store, "digits", args.model, source, tmp, args.actors)
            job_s, submitted, timeline = asyncio.run(run_job(cluster, spec, tmp / "job"))
            plain_again_s = plain_loop(store, "digits", args.model, source, tmp / "plain2.parquet")
        finally:
            cluster.stop()
        outcome = BatchOutcome.model_validate(json.loads((tmp / "job" / OUTCOME_FILE).read_text()))
    assert outcome.state == "succeeded" and outcome.scored == args.rows, outcome
    best_plain_s = min(plain_s, plain_again_s)  # before and after the job: the faster
    plain = args.rows / best_plain_s
    job = args.rows / job_s
    steady = steady_rate(timeline, args.rows)
    p, t = outcome.phases, outcome.timeline
    assert t is not None and t.first_scored_s is not None and t.finished_s is not None
    queued = t.started_at - submitted
    first = queued + t.first_scored_s
    print(f"batch scoring, {args.rows:,} digits rows, digits/{args.model}, {args.actors} actors")
    print(f"{'':34}{'seconds':>10}{'rows/s':>12}")
    print(f"{'plain ONNX loop (read+score+write)':34}{best_plain_s:>10.2f}{plain:>12,.0f}")
    print(f"{'batch job, submit to outcome':34}{job_s:>10.2f}{job:>12,.0f}")
    print(f"{'  of it before the first row scored':34}{first:>10.2f}")
    print(
        f"    the driver starting {queued:.2f}s, connecting {t.connected_s or 0:.2f}s,"
        f" first rows read at {t.first_read_s or 0:.2f}s, first scored at {t.first_scored_s:.2f}s"
        f" (after the driver started), all written at {t.finished_s:.2f}s"
    )
    if steady:
        print(f"{'  while the pool runs (10%..90%)':34}{'':>10}{steady:>12,.0f}")
    print("time in the job's tasks (summed over tasks, they overlap):")
    print(f"  validate {p.validate_s:.2f}s  score {p.score_s:.2f}s  write {p.write_s:.2f}s")
    print(
        f"RESULT batch rows={args.rows} model={args.model} actors={args.actors}"
        f" plain_rows_s={plain:.0f} job_rows_s={job:.0f} job_vs_plain={job / plain:.3f}"
        f" steady_rows_s={steady or 0:.0f} steady_vs_plain={(steady or 0) / plain:.3f}"
        f" startup_s={first:.2f} driver_start_s={queued:.2f} validate_s={p.validate_s:.2f}"
        f" score_s={p.score_s:.2f} write_s={p.write_s:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
