"""Ground truth joined to logged predictions on a real DuckDB file (the calls go through the
spool and the agent's ingest): exact accuracy per version, unknown ids counted and named,
a second truth replacing the first, coverage against the calls, regressors' error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from agent.errors import NotFound
from agent.feedback import FeedbackBook
from agent.ingest import ingest_once
from agent.local_log import LocalRequestLog
from agent.schemas.feedback import FeedbackBody
from agent.store import Store
from serve.spool import SpoolWriter
from tests.records import make_record

T0 = datetime.now(UTC) - timedelta(minutes=30)


def answer(label) -> str:
    return json.dumps({"predictions": [{"label": label, "probabilities": [0.5, 0.5]}]})


@pytest.fixture
def book(tmp_path):
    store = Store(tmp_path / "agent.duckdb")
    writer = SpoolWriter(tmp_path / "spool", "test")
    for i in range(40):  # v1 says 1 for even calls, 2 for odd; v2 always 1
        version = "v1" if i < 30 else "v2"
        label = 1 if version == "v2" or i % 2 == 0 else 2
        ts = T0 + timedelta(seconds=i)
        writer.append(
            make_record(i, request_id=f"c-{i}", version=version, ts=ts, output=answer(label))
        )
    writer.append(  # a shadow copy with the same id never takes the truth
        make_record(99, request_id="c-0", role="shadow", version="v2", ts=T0, output=answer(7))
    )
    writer.flush()
    ingest_once(store, tmp_path / "spool")
    yield FeedbackBook(store, LocalRequestLog(store), {"digits"})
    store.close()


BODY = TypeAdapter(FeedbackBody)


def body(records) -> FeedbackBody:
    return BODY.validate_python({"model": "digits", "records": records})


def test_the_truth_gives_the_exact_accuracy_per_version(book):
    # The truth is 1 for every call: v1 is right on its 15 even calls of 30, v2 on all 10.
    records = [{"request_id": f"c-{i}", "label": 1} for i in range(40)]
    result = book.add(body([*records, {"request_id": "never-logged", "label": 1}]))
    assert (result.received, result.joined, result.unknown) == (41, 40, 1)
    assert result.unknown_ids == ["never-logged"]
    report = book.accuracy("digits", T0 - timedelta(minutes=1), datetime.now(UTC), buckets=3)
    by = {v.version: v for v in report.versions}
    assert by["v1"].labelled == 30 and by["v1"].accuracy == pytest.approx(0.5)
    assert by["v1"].low < 0.5 < by["v1"].high
    assert by["v2"].labelled == 10 and by["v2"].accuracy == 1.0
    assert by["v1"].calls == 30 and by["v1"].coverage == 1.0  # every call has its truth
    assert by["v1"].median_delay_s > 0
    assert sum(p.labelled for p in by["v1"].points) == 30


def test_a_second_truth_replaces_the_first_and_one_record_alone_is_accepted(book):
    book.add(body([{"request_id": "c-1", "label": 1}]))  # v1 said 2: wrong
    again = book.add(BODY.validate_python({"model": "digits", "request_id": "c-1", "label": 2}))
    assert again.joined == 1 and again.replaced == 1
    report = book.accuracy("digits", T0 - timedelta(minutes=1), datetime.now(UTC), buckets=1)
    v1, v2 = report.versions  # v2 has calls and no truth: listed, with its coverage 0
    assert v2.labelled == 0 and v2.calls == 10 and v2.accuracy is None
    assert v1.labelled == 1 and v1.accuracy == 1.0
    assert v1.coverage == pytest.approx(1 / 30)


def test_a_regressors_truth_gives_its_mean_absolute_error(book):
    result = book.add(
        body([{"request_id": "c-0", "value": 1.5}, {"request_id": "c-1", "value": 1.0}])
    )
    assert result.joined == 2
    v1, _ = book.accuracy("digits", T0 - timedelta(minutes=1), datetime.now(UTC), 1).versions
    assert v1.mae == pytest.approx((0.5 + 1.0) / 2) and v1.accuracy is None


def test_bad_feedback_is_refused_with_the_reason(book):
    with pytest.raises(NotFound):
        book.add(BODY.validate_python({"model": "other", "request_id": "c-1", "label": 1}))
    for bad in (
        {"model": "digits", "request_id": "c-1"},  # no truth
        {"model": "digits", "request_id": "c-1", "label": 1, "value": 1.0},  # two
        {"model": "digits"},
        {"model": "digits", "records": [{"request_id": "x", "label": 1}], "request_id": "x"},
        {"model": "digits", "records": [{"request_id": "x", "label": True}]},  # not a class
    ):
        with pytest.raises(ValidationError):
            BODY.validate_python(bad)


def test_the_estimate_from_confidence_comes_before_the_labels(tmp_path, demo_store):
    """CBPE: every call answered with probabilities (0.5, 0.5) sits in the calibration's
    lowest bin, so the expected accuracy is that bin's held-out accuracy."""
    store = Store(tmp_path / "agent.duckdb")
    writer = SpoolWriter(tmp_path / "spool", "test")
    for i in range(20):
        ts = T0 + timedelta(seconds=i)
        writer.append(make_record(i, request_id=f"e-{i}", version="v1", ts=ts, output=answer(1)))
    writer.flush()
    ingest_once(store, tmp_path / "spool")
    book = FeedbackBook(store, LocalRequestLog(store), {"digits"}, demo_store)
    calibration = demo_store.manifest("digits", "v1").calibration
    assert calibration is not None and len(calibration.accuracy) == len(calibration.edges) + 1
    lowest = calibration.accuracy[sum(e <= 0.5 for e in calibration.edges)]
    since = T0 - timedelta(minutes=1)
    (v1,) = book.accuracy("digits", since, datetime.now(UTC), buckets=2).versions
    assert v1.labelled == 0 and v1.accuracy is None  # no truth yet
    assert v1.estimated == pytest.approx(lowest) and v1.estimated_calls == 20
    assert any(p.estimated == pytest.approx(lowest) for p in v1.points)
    book.add(BODY.validate_python({"model": "digits", "request_id": "e-0", "label": 1}))
    (v1,) = book.accuracy("digits", since, datetime.now(UTC), buckets=2).versions
    assert v1.accuracy == 1.0 and v1.estimate_error == pytest.approx(lowest - 1.0)
    store.close()
