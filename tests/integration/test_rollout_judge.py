"""The rollout's judge on a real DuckDB file: request records (primaries, fallbacks and the
shadow pairs) go through the spool and the agent's ingest, then the judge reads them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from agent.ingest import ingest_once
from agent.local_log import LocalRequestLog
from agent.rollout_judge import judge_rollout
from agent.rollout_machine import start
from agent.store import Store
from serve.model_config import RolloutPolicy
from serve.spool import SpoolWriter
from tests.records import make_record

T0 = datetime.now(UTC) - timedelta(minutes=10)
POLICY = RolloutPolicy(steps=[50, 100], gates={"min_requests": 50, "min_pairs": 20})


def answer(label: int) -> str:
    return json.dumps({"predictions": [{"label": label, "probabilities": [0.5, 0.5]}]})


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "agent.duckdb")
    yield s
    s.close()


def log(store, tmp_path, records) -> None:
    writer = SpoolWriter(tmp_path / "spool", "test")
    for r in records:
        writer.append(r)
    writer.flush()
    ingest_once(store, tmp_path / "spool")


def traffic(
    n: int,
    canary_fails: int = 0,
    disagree: int = 0,
    canary_ms: float = 10.0,
    client_id: str | None = None,
):
    """n calls each way, a second apart; the first `canary_fails` canary calls were answered
    by the fallback (stable), and `disagree` of the canary's shadow pairs differ. With
    `client_id`, every call carries that one client-chosen request id."""
    out = []
    for i in range(n):
        ts = T0 + timedelta(seconds=i)
        rid = client_id or f"s-{i}"
        out.append(make_record(i, request_id=rid, ts=ts, version="v1", latency_ms=10.0 + i % 3))
        failed = i < canary_fails
        canary = make_record(
            i,
            request_id=client_id or f"c-{i}",
            ts=ts,
            version="v1" if failed else "v2",
            fallback_from="v2" if failed else None,
            latency_ms=canary_ms + i % 3,
            output=answer(1),
        )
        out.append(canary)
        if not failed:
            out.append(
                make_record(
                    i,
                    request_id=client_id or f"c-{i}",
                    ts=ts,
                    role="shadow",
                    version="v1",
                    primary_request_id=client_id or f"c-{i}",
                    pair_id=canary.call_id,  # the router pairs by its own call id
                    output=answer(2 if i < disagree else 1),
                )
            )
    return out


def judged(store, now: datetime):
    r, _ = start("digits", "v2", "v1", POLICY, T0, "test")
    return judge_rollout(LocalRequestLog(store), r, now)


def test_a_canary_like_stable_passes_every_metric(store, tmp_path):
    log(store, tmp_path, traffic(600))
    j = judged(store, T0 + timedelta(seconds=600))
    assert j.verdict in ("pass", "marginal")  # 600 calls cannot prove <0.5% errors
    by = {m.metric: m for m in j.metrics}
    assert by["latency"].verdict == "pass" and by["disagreement"].verdict == "pass"
    assert by["disagreement"].high < 0.02 and by["disagreement"].canary == 0
    assert by["error_rate"].canary == 0


def test_fallbacks_count_as_the_canarys_errors(store, tmp_path):
    log(store, tmp_path, traffic(300, canary_fails=60))
    j = judged(store, T0 + timedelta(seconds=300))
    by = {m.metric: m for m in j.metrics}
    assert j.verdict == "fail" and by["error_rate"].verdict == "fail"
    assert by["error_rate"].canary == pytest.approx(60 / 300)


def test_differing_labels_in_shadow_pairs_fail_disagreement(store, tmp_path):
    log(store, tmp_path, traffic(300, disagree=60))
    by = {m.metric: m for m in judged(store, T0 + timedelta(seconds=300)).metrics}
    assert by["disagreement"].verdict == "fail"
    assert by["disagreement"].canary == pytest.approx(60 / 300)


def test_a_slower_canary_fails_latency(store, tmp_path):
    log(store, tmp_path, traffic(300, canary_ms=30.0))
    by = {m.metric: m for m in judged(store, T0 + timedelta(seconds=300)).metrics}
    assert by["latency"].verdict == "fail" and by["latency"].canary > by["latency"].stable


def test_one_client_chosen_id_on_every_call_does_not_fool_the_pairing(store, tmp_path):
    # Review finding: pairs were matched on x-request-id, which any client sets. 200 calls
    # with one id made a canary that disagrees on 30% of labels pass; now pairs are the
    # router's own call ids, so every call counts and every pair is the right one.
    log(store, tmp_path, traffic(200, disagree=60, client_id="same-id"))
    by = {m.metric: m for m in judged(store, T0 + timedelta(seconds=300)).metrics}
    assert by["disagreement"].verdict == "fail"
    assert by["disagreement"].canary == pytest.approx(60 / 200)
    assert by["error_rate"].details["canary_n"] == 200  # one id, yet no call is dropped


def test_a_good_canary_with_repeated_client_ids_is_not_failed(store, tmp_path):
    log(store, tmp_path, traffic(600, client_id="retry-1"))
    by = {m.metric: m for m in judged(store, T0 + timedelta(seconds=600)).metrics}
    assert by["disagreement"].verdict == "pass" and by["disagreement"].canary == 0


def test_ground_truth_fails_a_canary_whose_answers_are_wrong(store, tmp_path):
    from agent.feedback import FeedbackBook
    from agent.schemas.feedback import FeedbackBatch

    records = []
    for i in range(300):
        ts = T0 + timedelta(seconds=i)
        records.append(make_record(i, request_id=f"s-{i}", ts=ts, version="v1", output=answer(1)))
        # The canary is wrong on a fifth of its answers; latency and errors are like stable's.
        label = 2 if i % 5 == 0 else 1
        records.append(
            make_record(i, request_id=f"c-{i}", ts=ts, version="v2", output=answer(label))
        )
    log(store, tmp_path, records)
    book = FeedbackBook(store, LocalRequestLog(store), {"digits"})
    r, _ = start("digits", "v2", "v1", POLICY, T0, "test")
    now = T0 + timedelta(seconds=300)
    without = judge_rollout(LocalRequestLog(store), r, now, feedback=book)
    assert "accuracy" not in {m.metric for m in without.metrics}  # no labels yet: not judged
    truth = [{"request_id": f"{arm}-{i}", "label": 1} for arm in "sc" for i in range(300)]
    assert book.add(FeedbackBatch(model="digits", records=truth)).joined == 600
    judged = judge_rollout(LocalRequestLog(store), r, now, feedback=book)
    by = {m.metric: m for m in judged.metrics}
    assert by["accuracy"].verdict == "fail" and judged.verdict == "fail"
    assert by["accuracy"].canary == pytest.approx(0.2) and by["accuracy"].stable == 0


def test_the_load_of_the_hour_is_not_taken_for_the_canarys_speed(store, tmp_path):
    """The host gets twice as slow halfway through, for both versions alike; most of stable's
    calls come before and most of the canary's after (as a rollout's steps move traffic).
    Judged on all calls at once the canary looks 60% slower; block by block it is not."""
    records = []
    for i in range(600):
        ts = T0 + timedelta(seconds=i)
        ms = (10.0 if i < 300 else 20.0) + i % 3
        early = i < 300
        if early or i % 4 == 0:
            records.append(make_record(i, request_id=f"s-{i}", ts=ts, version="v1", latency_ms=ms))
        if not early or i % 4 == 0:
            records.append(make_record(i, request_id=f"c-{i}", ts=ts, version="v2", latency_ms=ms))
    log(store, tmp_path, records)
    by = {m.metric: m for m in judged(store, T0 + timedelta(seconds=600)).metrics}
    assert by["latency"].verdict == "pass", by["latency"].note
    assert by["latency"].details["ratio"] == pytest.approx(1.0, abs=0.01)
    assert by["latency"].canary > 1.5 * by["latency"].stable  # the medians of all calls differ
    assert by["spread"].verdict != "fail" and by["tail"].verdict != "fail"


def test_the_judge_times_the_replicas_work_not_the_routers(store, tmp_path):
    """The router times a shadow copy from after it has answered the primary (measured: 20-27%
    longer than a primary on the same version): the judge compares the replica's own
    latency_ms, the same instrument for both, and leaves failed calls to the errors."""
    records = []
    for i in range(300):
        ts = T0 + timedelta(seconds=i)
        ms = 10.0 + i % 3
        records.append(
            make_record(i, request_id=f"s-{i}", ts=ts, version="v1", total_ms=ms, latency_ms=ms)
        )
        records.append(
            make_record(i, request_id=f"s-{i}", ts=ts, version="v2", role="shadow",
                        total_ms=1.3 * ms, latency_ms=ms)
        )  # fmt: skip
    failed = make_record(300, ts=T0, version="v2", status=500, latency_ms=None, total_ms=2000.0)
    log(store, tmp_path, [*records, failed])
    by = {m.metric: m for m in judged(store, T0 + timedelta(seconds=300)).metrics}
    assert by["latency"].details["ratio"] == pytest.approx(1.0, abs=0.01)
    assert by["latency"].verdict == "pass"
    assert by["error_rate"].canary == pytest.approx(1 / 301)  # every call, failed ones too
