"""Checks a request's rows against a manifest's input schema before the model sees them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from serve.manifest import InputSchema

DEFAULT_MAX_ROWS = 1024


class InputError(ValueError):
    """Bad input: the caller's fault, answered with a 4xx and this message."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _row_values(row: Any, index: int, schema: InputSchema) -> list[Any]:
    if isinstance(row, dict):
        missing = [f for f in schema.features if f not in row]
        extra = sorted(set(row) - set(schema.features))
        if missing or extra:
            raise InputError(
                f"instance {index}: missing features {missing[:5]}"
                f"{'…' if len(missing) > 5 else ''}, unknown features {extra[:5]}"
            )
        return [row[f] for f in schema.features]
    if isinstance(row, list):
        if len(row) != len(schema.features):
            raise InputError(
                f"instance {index} has {len(row)} values, the model expects"
                f" {len(schema.features)} ({schema.features[0]}…{schema.features[-1]})"
            )
        return row
    raise InputError(
        f"instance {index} is a {type(row).__name__}: send a list of"
        f" {len(schema.features)} numbers or an object keyed by feature name"
    )


def parse_instances(
    payload: Any, schema: InputSchema, max_rows: int = DEFAULT_MAX_ROWS
) -> np.ndarray:
    """Turn `{"instances": [[...], ...]}` into a 2-D array of the schema's dtype.

    Every value must be a finite JSON number (booleans and strings are refused: lax
    coercion would hide a client bug behind a confident prediction).
    """
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InputError('body must be a JSON object {"instances": [[...], ...]}')
    unknown = sorted(set(payload) - {"instances"})
    if unknown:
        raise InputError(f"unknown fields in body: {unknown}")
    rows = payload["instances"]
    if not isinstance(rows, list) or not rows:
        raise InputError('"instances" must be a non-empty list of rows')
    if len(rows) > max_rows:
        raise InputError(f"{len(rows)} instances in one request; at most {max_rows}", 413)
    values: list[list[Any]] = [_row_values(row, i, schema) for i, row in enumerate(rows)]
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(
                    f"instance {i}, feature {schema.features[j]!r}: {v!r} is not a number"
                )
            if isinstance(v, float) and not math.isfinite(v):
                raise InputError(f"instance {i}, feature {schema.features[j]!r}: {v} is not finite")
    array = np.asarray(values, dtype=np.float64)
    if schema.dtype == "int64":
        if not np.all(array == np.round(array)):
            raise InputError("the model takes whole numbers only")
        return array.astype(np.int64)
    with np.errstate(over="ignore"):
        out = array.astype(schema.dtype)
    if not np.all(np.isfinite(out)):
        raise InputError(f"a value does not fit in {schema.dtype}")
    return out
