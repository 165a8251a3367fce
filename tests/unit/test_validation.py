import numpy as np
import pytest

from serve.manifest import InputSchema
from serve.validation import InputError, parse_instances

SCHEMA = InputSchema(tensor="X", features=["a", "b", "c"], dtype="float32", shape=[None, 3])


def test_rows_as_lists_and_objects():
    out = parse_instances({"instances": [[1, 2, 3], {"c": 3, "b": 2.5, "a": 1}]}, SCHEMA)
    assert out.dtype == np.float32
    assert out.tolist() == [[1, 2, 3], [1, 2.5, 3]]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "JSON object"),
        ([], "JSON object"),
        ({"rows": []}, "JSON object"),
        ({"instances": []}, "non-empty"),
        ({"instances": [[1, 2]]}, "has 2 values"),
        ({"instances": [[1, 2, "x"]]}, "is not a number"),
        ({"instances": [[1, 2, True]]}, "is not a number"),
        ({"instances": [[1, 2, float("nan")]]}, "not finite"),
        ({"instances": [[1, 2, float("inf")]]}, "not finite"),
        ({"instances": [[1, 2, 1e300]]}, "does not fit"),
        ({"instances": [{"a": 1, "b": 2}]}, "missing features"),
        ({"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]}, "unknown features"),
        ({"instances": [[1, 2, 3]], "extra": 1}, "unknown fields"),
        ({"instances": ["abc"]}, "is a str"),
    ],
)
def test_bad_input_is_refused_with_a_reason(payload, reason):
    with pytest.raises(InputError, match=reason) as info:
        parse_instances(payload, SCHEMA)
    assert 400 <= info.value.status < 500


def test_too_many_rows_is_413():
    with pytest.raises(InputError) as info:
        parse_instances({"instances": [[1, 2, 3]] * 5}, SCHEMA, max_rows=4)
    assert info.value.status == 413
