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


@dataclass(frozen=True)
class CheckedRows:
    """`rows` holds the good rows (in order) as the model takes them; `reasons[i]` is None for
    a good input row i, else why row i was set aside."""

    rows: np.ndarray
    reasons: list[str | None]

    @property
    def good(self) -> np.ndarray:
        return np.array([r is None for r in self.reasons], dtype=bool)


def _numbers(column: pa.ChunkedArray | pa.Array, name: str) -> tuple[np.ndarray, list[str | None]]:
    """A column as float64, with the reason each value is not a finite number (None: it is)."""
    kind = column.type
    reasons: list[str | None] = [None] * len(column)
    if pa.types.is_boolean(kind):
        return np.full(len(column), np.nan), [
            f"feature {name!r}: {v} is not a number" for v in column.to_pylist()
        ]
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        nulls = column.is_null().to_numpy(zero_copy_only=False)
    else:  # strings (CSV is read as text), or anything else: parse each value
        series = column.to_pandas()
        nulls = series.isna().to_numpy() | (series.astype("string").str.strip() == "").to_numpy()
        parsed = pd.to_numeric(series.where(~nulls), errors="coerce")
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
        text = series.astype("string").str.strip().str.lower()
        spelled_nan = text.isin(["nan", "+nan", "-nan"]).to_numpy()
        for i in np.flatnonzero(~nulls & np.isnan(values) & ~spelled_nan):
            reasons[i] = f"feature {name!r}: {series.iloc[i]!r} is not a number"
    for i in np.flatnonzero(nulls):
        reasons[i] = f"feature {name!r} is missing"
    for i in np.flatnonzero(~nulls & ~np.isfinite(values)):
        if reasons[i] is None:
            reasons[i] = f"feature {name!r}: {values[i]} is not finite"
    return values, reasons


def _columns_layout(table: pa.Table, schema: InputSchema) -> tuple[np.ndarray, list[str | None]]:
    values = np.empty((table.num_rows, len(schema.features)), dtype=np.float64)
    reasons: list[str | None] = [None] * table.num_rows
    for j, name in enumerate(schema.features):
        values[:, j], mine = _numbers(table.column(name), name)
        reasons = [r if r is not None else m for r, m in zip(reasons, mine, strict=True)]
    return values, reasons


def _list_layout(table: pa.Table, schema: InputSchema) -> tuple[np.ndarray, list[str | None]]:
    width = len(schema.features)
    values = np.full((table.num_rows, width), np.nan)
    reasons: list[str | None] = [None] * table.num_rows
    column = table.column(LIST_COLUMN).combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        why = f"column {LIST_COLUMN!r} is {column.type}, not a list of {width} numbers"
        return values, [why] * table.num_rows
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    for i in range(table.num_rows):
        if nulls[i]:
            reasons[i] = f"{LIST_COLUMN!r} is missing"
        elif lengths[i] != width:
            reasons[i] = (
                f"has {int(lengths[i])} values, the model expects {width}"
                f" ({schema.features[0]}…{schema.features[-1]})"
            )
    fits = np.flatnonzero(~nulls & (lengths == width))
    if len(fits):
        flat, flat_reasons = _numbers(column.take(pa.array(fits)).flatten(), LIST_COLUMN)
        values[fits] = flat.reshape(len(fits), width)
        for k, row in enumerate(fits.tolist()):
            mine = flat_reasons[k * width : (k + 1) * width]
            at = next((j for j, r in enumerate(mine) if r), None)
            if at is not None:
                reasons[row] = str(mine[at]).replace(
                    repr(LIST_COLUMN), repr(schema.features[at]), 1
                )
    return values, reasons


def _as_dtype(values: np.ndarray, reasons: list[str | None], schema: InputSchema) -> np.ndarray:
    """The schema's dtype; a value it cannot hold exactly enough sets its row aside."""
    ok = np.isfinite(values)
    if schema.dtype == "int64":
        whole = np.all(~ok | (values == np.round(values)), axis=1)
        for i in np.flatnonzero(~whole):
            reasons[i] = reasons[i] or "the model takes whole numbers only"
        return np.where(ok, values, 0).astype(np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.where(ok, values, 0).astype(schema.dtype)
    for i in np.flatnonzero(~np.all(np.isfinite(out), axis=1)):
        reasons[i] = reasons[i] or f"a value does not fit in {schema.dtype}"
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
            np.empty((0, len(schema.features)), dtype=schema.dtype), [why] * table.num_rows
        )
    array = _as_dtype(values, reasons, schema)
    good = np.array([r is None for r in reasons], dtype=bool)
    return CheckedRows(array[good], reasons)
