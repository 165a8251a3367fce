"""How a replayed answer is compared with the logged one."""

from __future__ import annotations

import json

from agent.replay import compare_outputs


def body(*rows: tuple[int, list[float]]) -> str:
    return json.dumps(
        {"sha256": "ab", "predictions": [{"label": lb, "probabilities": p} for lb, p in rows]}
    )


def test_identical_to_the_last_bit():
    c = compare_outputs(body((3, [0.1, 0.9])), body((3, [0.1, 0.9])), 1e-6)
    assert c.outcome == "identical" and c.max_abs_diff == 0.0
    assert c.original_labels == c.replay_labels == [3]


def test_batching_noise_is_within_tolerance_and_more_is_a_changed_output():
    near = compare_outputs(body((3, [0.1, 0.9])), body((3, [0.1 + 3e-7, 0.9 - 3e-7])), 1e-6)
    assert near.outcome == "within_tolerance" and near.max_abs_diff < 1e-6
    far = compare_outputs(body((3, [0.1, 0.9])), body((3, [0.2, 0.8])), 1e-6)
    assert far.outcome == "output_changed" and abs(far.max_abs_diff - 0.1) < 1e-12


def test_a_different_label_in_any_instance():
    c = compare_outputs(
        body((1, [0.6, 0.4]), (2, [0.3, 0.7])), body((1, [0.6, 0.4]), (1, [0.5, 0.5])), 1e-6
    )
    assert c.outcome == "label_changed"
    assert c.original_labels == [1, 2] and c.replay_labels == [1, 1]


def test_labels_without_probabilities_compare_on_labels():
    same = compare_outputs('{"predictions": [{"label": 4}]}', '{"predictions": [{"label": 4}]}', 0)
    assert same.outcome == "identical" and same.max_abs_diff is None


def test_missing_or_broken_answers_fail_with_a_reason():
    assert (
        compare_outputs(None, body((1, [1.0])), 1e-6).error == "the logged call has no predictions"
    )
    broken = compare_outputs(body((1, [1.0])), '{"status": 503, "error": "x"}', 1e-6)
    assert broken.outcome == "failed" and broken.error == "the replay has no predictions"
    assert compare_outputs("not json", body((1, [1.0])), 1e-6).outcome == "failed"
