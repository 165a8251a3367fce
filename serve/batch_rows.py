"""A batch job's input rows checked against a manifest's input schema, row by row (no Ray).

The same rules as an online request (serve/validation.py): every feature a finite number of
the schema's dtype, booleans and strings refused. Online, one bad row refuses the request; in
a batch, a bad row is set aside with its reason and the rest are scored.

Two layouts are read: one column per feature, named as the manifest's features (what the
reference sample has), or one list column `features` holding each row's values in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from serve.manifest import InputSchema

LIST_COLUMN = "features"


# Why each bad row was set aside, by its index: sparse, as bad rows are few (a dense list of
# reasons merged feature by feature cost more than the model's scoring).
Reasons = dict[int, str]


@dataclass(frozen=True)
class CheckedRows:
    """`rows` holds the good rows (in order) as the model takes them; `reasons[i]` is None for
    a good input row i, else why row i was set aside."""

    rows: np.ndarray
    reasons: list[str | None]
    good: np.ndarray  # bool per input row


def _add(reasons: Reasons, indexes: np.ndarray, why: str | list[str]) -> None:
    """The first reason of a row stands."""
    for k, i in enumerate(indexes.tolist()):
        if i not in reasons:
            reasons[i] = why if isinstance(why, str) else why[k]


def _numbers(column: pa.ChunkedArray | pa.Array, name: str) -> tuple[np.ndarray, Reasons]:
    """A column as float64, with the reason of each value that is not a finite number."""
    kind = column.type
    reasons: Reasons = {}
    if pa.types.is_boolean(kind):
        texts = [f"feature {name!r}: {v} is not a number" for v in column.to_pylist()]
        return np.full(len(column), np.nan), dict(enumerate(texts))
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        nulls = column.is_null().to_numpy(zero_copy_only=False)
        _add(reasons, np.flatnonzero(nulls), f"feature {name!r} is missing")
    else:  # strings (CSV is read as text), or anything else: parse each value
        series = column.to_pandas()
        text = series.astype("string").str.strip()
        nulls = (series.isna() | (text == "")).to_numpy(dtype=bool, na_value=True)
        _add(reasons, np.flatnonzero(nulls), f"feature {name!r} is missing")
        values = pd.to_numeric(series.where(~nulls), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        spelled_nan = (
            text.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy(dtype=bool, na_value=False)
        )
        words = np.flatnonzero(~nulls & np.isnan(values) & ~spelled_nan)
        _add(
            reasons, words, [f"feature {name!r}: {series.iloc[i]!r} is not a number" for i in words]
        )
    odd = np.flatnonzero(~nulls & ~np.isfinite(values))
    _add(reasons, odd, [f"feature {name!r}: {values[i]} is not finite" for i in odd])
    return values, reasons


def _columns_layout(table: pa.Table, schema: InputSchema) -> tuple[np.ndarray, Reasons]:
    # Column-major: each feature's values land contiguous (a strided write per column cost
    # more than all the checks).
    values = np.empty((table.num_rows, len(schema.features)), dtype=np.float64, order="F")
    per_feature: list[Reasons] = []
    plain: list[int] = []  # numeric columns with no nulls: one finiteness check for them all
    for j, name in enumerate(schema.features):
        column = table.column(name)
        kind = column.type
        if column.null_count == 0 and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            values[:, j] = column.to_numpy()
            plain.append(j)
            per_feature.append({})
            continue
        values[:, j], mine = _numbers(column, name)
        per_feature.append(mine)
    odd = ~np.isfinite(values[:, plain])
    for i, k in zip(*np.nonzero(odd), strict=True):
        j = plain[k]
        per_feature[j][int(i)] = f"feature {schema.features[j]!r}: {values[i, j]} is not finite"
    reasons: Reasons = {}
    for mine in per_feature:  # the first bad feature of a row, in the schema's order
        for i, why in mine.items():
            reasons.setdefault(i, why)
    return values, reasons


def _list_layout(table: pa.Table, schema: InputSchema) -> tuple[np.ndarray, Reasons]:
    width = len(schema.features)
    values = np.full((table.num_rows, width), np.nan)
    column = table.column(LIST_COLUMN).combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        why = f"column {LIST_COLUMN!r} is {column.type}, not a list of {width} numbers"
        return values, dict.fromkeys(range(table.num_rows), why)
    reasons: Reasons = {}
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    _add(reasons, np.flatnonzero(nulls), f"{LIST_COLUMN!r} is missing")
    wrong = np.flatnonzero(~nulls & (lengths != width))
    span = f"({schema.features[0]}…{schema.features[-1]})"
    _add(
        reasons,
        wrong,
        [f"has {int(lengths[i])} values, the model expects {width} {span}" for i in wrong],
    )
    fits = np.flatnonzero(~nulls & (lengths == width))
    if len(fits):
        flat, flat_reasons = _numbers(column.take(pa.array(fits)).flatten(), LIST_COLUMN)
        values[fits] = flat.reshape(len(fits), width)
        for at in sorted(flat_reasons):  # the first bad value of each row
            row, feature = int(fits[at // width]), at % width
            why = flat_reasons[at].replace(repr(LIST_COLUMN), repr(schema.features[feature]), 1)
            reasons.setdefault(row, why)
    return values, reasons


def _as_dtype(values: np.ndarray, reasons: Reasons, schema: InputSchema) -> np.ndarray:
    """The schema's dtype; a value it cannot hold exactly enough sets its row aside."""
    ok = np.isfinite(values)
    if schema.dtype == "int64":
        whole = np.all(~ok | (values == np.round(values)), axis=1)
        _add(reasons, np.flatnonzero(~whole), "the model takes whole numbers only")
        return np.where(ok, values, 0).astype(np.int64, order="C")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.where(ok, values, 0).astype(schema.dtype, order="C")
    _add(
        reasons,
        np.flatnonzero(~np.all(np.isfinite(out), axis=1)),
        f"a value does not fit in {schema.dtype}",
    )
    return out


def check_rows(table: pa.Table, schema: InputSchema) -> CheckedRows:
    """Every row of `table` checked; the good ones as an array of the schema's dtype."""
    names = set(table.column_names)
    if all(f in names for f in schema.features):
        values, reasons = _columns_layout(table, schema)
    elif LIST_COLUMN in names:
        values, reasons = _list_layout(table, schema)
    else:
        missing = [f for f in schema.features if f not in names]
        why = (
            f"the file has no column {LIST_COLUMN!r} and lacks feature columns"
            f" {missing[:5]}{'…' if len(missing) > 5 else ''}"
        )
        return CheckedRows(
            np.empty((0, len(schema.features)), dtype=schema.dtype),
            [why] * table.num_rows,
            np.zeros(table.num_rows, dtype=bool),
        )
    array = _as_dtype(values, reasons, schema)
    good = np.ones(table.num_rows, dtype=bool)
    good[list(reasons)] = False
    listed: list[str | None] = [None] * table.num_rows
    for i, why in reasons.items():
        listed[i] = why
    return CheckedRows(array[good], listed, good)
