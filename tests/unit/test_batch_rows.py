"""A batch's input rows checked against the manifest's schema: a bad row is set aside with its
reason, every good row kept in order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from serve.batch_rows import check_rows
from serve.manifest import InputSchema

SCHEMA = InputSchema(tensor="X", features=["a", "b", "c"], dtype="float32", shape=[None, 3])


def test_good_columns_are_kept_in_order_as_the_schemas_dtype() -> None:
    table = pa.table({"a": [1.0, 2.0], "b": [3, 4], "c": [5.5, 6.5], "other": ["x", "y"]})
    checked = check_rows(table, SCHEMA)
    assert checked.reasons == [None, None]
    assert checked.rows.dtype == np.float32
    assert checked.rows.tolist() == [[1.0, 3.0, 5.5], [2.0, 4.0, 6.5]]


def test_each_bad_value_names_its_row_feature_and_why() -> None:
    table = pa.table(
        {
            "a": [1.0, float("nan"), 3.0, None, 5.0, 1e39],
            "b": [1.0, 2.0, float("inf"), 4.0, 5.0, 1.0],
            "c": [1.0, 2.0, 3.0, 4.0, 5.0, 1.0],
        }
    )
    checked = check_rows(table, SCHEMA)
    assert checked.reasons[0] is None
    assert checked.reasons[1] == "feature 'a': nan is not finite"
    assert checked.reasons[2] == "feature 'b': inf is not finite"
    assert checked.reasons[3] == "feature 'a' is missing"
    assert checked.reasons[4] is None
    assert checked.reasons[5] == "a value does not fit in float32"
    assert checked.rows.tolist() == [[1.0, 1.0, 1.0], [5.0, 5.0, 5.0]]


def test_text_is_parsed_and_words_refused_as_online() -> None:
    table = pa.table({"a": ["1", " 2.5", "abc", "", "nan"], "b": ["1"] * 5, "c": ["0"] * 5})
    checked = check_rows(table, SCHEMA)
    assert checked.reasons[:2] == [None, None]
    assert checked.reasons[2] == "feature 'a': 'abc' is not a number"
    assert checked.reasons[3] == "feature 'a' is missing"
    assert checked.reasons[4] == "feature 'a': nan is not finite"
    assert checked.rows[:, 0].tolist() == [1.0, 2.5]


def test_booleans_are_not_numbers() -> None:
    table = pa.table({"a": [True], "b": [1.0], "c": [1.0]})
    assert check_rows(table, SCHEMA).reasons == ["feature 'a': True is not a number"]


def test_a_list_column_of_the_wrong_length_or_kind_is_set_aside() -> None:
    table = pa.table(
        {"features": [[1.0, 2.0, 3.0], [1.0, 2.0], None, [1.0, float("nan"), 3.0], [4.0, 5, 6]]}
    )
    checked = check_rows(table, SCHEMA)
    assert checked.reasons[0] is None
    assert checked.reasons[1] == "has 2 values, the model expects 3 (a…c)"
    assert checked.reasons[2] == "'features' is missing"
    assert checked.reasons[3] == "feature 'b': nan is not finite"
    assert checked.reasons[4] is None
    assert checked.rows.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    strings = pa.table({"features": [["1", "x", "3"]]})
    assert check_rows(strings, SCHEMA).reasons == ["feature 'b': 'x' is not a number"]


def test_a_file_without_the_features_sets_every_row_aside_with_what_is_missing() -> None:
    checked = check_rows(pa.table({"a": [1.0, 2.0], "z": [0, 0]}), SCHEMA)
    assert checked.rows.shape == (0, 3)
    assert (
        checked.reasons
        == ["the file has no column 'features' and lacks feature columns ['b', 'c']"] * 2
    )


def test_whole_numbers_for_an_integer_model() -> None:
    schema = InputSchema(tensor="X", features=["a"], dtype="int64", shape=[None, 1])
    checked = check_rows(pa.table({"a": [1.0, 1.5, 3.0]}), schema)
    assert checked.reasons == [None, "the model takes whole numbers only", None]
    assert checked.rows.dtype == np.int64 and checked.rows[:, 0].tolist() == [1, 3]


def test_a_row_is_set_aside_for_its_first_bad_feature_in_the_schemas_order() -> None:
    # `a` is a plain float column (checked all at once), `c` text: the reason is still a's.
    table = pa.table({"a": [float("nan"), 1.0], "b": [1.0, 2.0], "c": ["x", "y"]})
    assert check_rows(table, SCHEMA).reasons == [
        "feature 'a': nan is not finite",
        "feature 'c': 'y' is not a number",
    ]
