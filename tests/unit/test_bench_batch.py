"""The batch benchmark's own pieces, so that `make bench` does not break unseen: its input,
its plain loop and the job spec it submits (the job itself is tests/integration's)."""

from __future__ import annotations

import pyarrow.parquet as pq

from scripts.bench.batch import plain_loop, spec_for, write_input


def test_the_bench_writes_its_input_scores_it_plainly_and_builds_a_valid_spec(demo_store, tmp_path):
    source = tmp_path / "digits.parquet"
    write_input(source, 5000)
    assert pq.read_metadata(source).num_rows == 5000
    seconds = plain_loop(demo_store, "digits", "v2", source, tmp_path / "plain.parquet")
    assert seconds > 0 and pq.read_metadata(tmp_path / "plain.parquet").num_rows == 5000
    spec = spec_for(demo_store, "digits", "v2", source, tmp_path, actors=2)
    assert spec.inputs[0].rows == 5000 and len(spec.input_sha256) == 64
    assert spec.sha256 == demo_store.manifest("digits", "v2").sha256
