"""Production must match development: a deployed version's answers to the reference rows
against the ones stored at registration (the version's route is a stand-in here; the real
one is in tests/integration/test_controller.py), and the rule that keeps traffic off a
mismatch."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest

from agent.answer_check import check_answers
from agent.controller_rules import AnswerCheck, ModelState, promote, set_traffic
from agent.errors import Conflict
from serve.manifest import ExpectedAnswers
from serve.routing_table import RoutingTable, ShadowTarget, TrafficSplit

EXPECTED = ExpectedAnswers(
    instances=[[0.0, 1.0], [1.0, 0.0]],
    predictions=[
        {"label": 1, "probabilities": [0.25, 0.75]},
        {"label": 0, "probabilities": [0.875, 0.125]},
    ],
    runtime="onnxruntime 1.0 CPUExecutionProvider",
)


def answering(predictions: list[dict] | None, status: int = 200) -> httpx.MockTransport:
    def reply(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content) == {"instances": EXPECTED.instances}
        if predictions is None:
            return httpx.Response(status, json={"error": "boom"})
        return httpx.Response(status, json={"predictions": predictions, "sha256": "ab"})

    return httpx.MockTransport(reply)


def run(transport: httpx.MockTransport | None, expected=EXPECTED) -> AnswerCheck:
    return asyncio.run(check_answers("http://serve.test/models/m/versions/v2", expected, transport))


def test_the_same_answers_pass():
    check = run(answering(EXPECTED.predictions))
    assert check.ok is True and "2 reference rows answered as at registration" in check.message


def test_a_tiny_difference_in_the_low_bits_passes():
    near = [{"label": 1, "probabilities": [0.25 + 1e-7, 0.75 - 1e-7]}, EXPECTED.predictions[1]]
    assert run(answering(near)).ok is True


def test_a_different_label_is_a_mismatch_in_plain_words():
    other = [{"label": 0, "probabilities": [0.6, 0.4]}, EXPECTED.predictions[1]]
    check = run(answering(other))
    assert check.ok is False
    assert "1 of 2 labels differ" in check.message and "onnxruntime 1.0" in check.message


def test_probabilities_beyond_the_tolerance_are_a_mismatch():
    moved = [{"label": 1, "probabilities": [0.3, 0.7]}, EXPECTED.predictions[1]]
    check = run(answering(moved))
    assert check.ok is False and "probabilities differ by up to 0.05" in check.message


def test_an_error_answer_is_a_mismatch_and_no_answer_is_not_checked():
    assert run(answering(None, status=500)).ok is False
    assert run(None).ok is None  # nothing listens on serve.test: not checked, said so
    assert run(answering(EXPECTED.predictions), expected=None).message.startswith(
        "registered without expected answers"
    )


def state_with(check: AnswerCheck) -> ModelState:
    return ModelState(
        model="digits",
        versions=["v1", "v2"],
        table=RoutingTable(route_version=3, weights={"v1": 100}),
        stable="v1",
        checks={"v2": check},
    )


def test_no_traffic_live_or_shadow_and_no_promotion_for_a_mismatch():
    bad = state_with(AnswerCheck(ok=False, message="1 of 16 labels differ", at=datetime.now(UTC)))
    for split in (
        TrafficSplit(weights={"v1": 90, "v2": 10}),
        TrafficSplit(weights={"v1": 100}, shadow=ShadowTarget(version="v2", fraction=0.5)),
    ):
        with pytest.raises(Conflict) as info:
            set_traffic(bad, split, None, 4)
        assert "does not answer as it did at registration (1 of 16 labels differ)" in str(
            info.value.message
        )
    with pytest.raises(Conflict):
        promote(bad, "v2", 4)
    good = state_with(AnswerCheck(ok=True, message="ok", at=datetime.now(UTC)))
    assert set_traffic(good, TrafficSplit(weights={"v1": 90, "v2": 10}), None, 4).state


def test_registration_stores_the_answers_of_the_reference_rows(demo_store):
    import numpy as np

    from serve.onnx_model import OnnxModel, predictions_json

    manifest = demo_store.manifest("digits", "v1")
    expected = manifest.expected
    assert expected is not None and len(expected.instances) == 16
    assert len(expected.predictions) == 16 and "CPUExecutionProvider" in expected.runtime
    # What the Serve replica's own code answers for those rows, exactly.
    loaded = demo_store.load("digits", "v1")
    model = OnnxModel(loaded.data, manifest)
    p = model.predict(np.asarray(expected.instances, dtype=np.float32))
    again = predictions_json(p.labels, p.probabilities)
    assert [a["label"] for a in again] == [e["label"] for e in expected.predictions]
    worst = max(
        abs(x - y)
        for a, e in zip(again, expected.predictions, strict=True)
        for x, y in zip(a["probabilities"], e["probabilities"], strict=True)
    )
    assert worst <= expected.tolerance
