"""Integers as JSON Schema reads them: `2.0` is the integer 2 (as in every JSON Schema
validator a client may check its body with), while `"2"`, `true` and `2.5` are not."""

from __future__ import annotations

from typing import Any

from pydantic import BeforeValidator


def _integral(value: Any) -> Any:
    # Strict validation follows and refuses everything but an int; bool is an int to Python.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# After the constraints: `Annotated[int, Field(ge=0), INTEGRAL]`. Before them, pydantic
# writes `ge` into the JSON Schema instead of `minimum`.
INTEGRAL = BeforeValidator(_integral)
