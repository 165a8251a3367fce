"""What agents answer the controller about their own request log (the /v1/fleet family), and
how a fleet answer says which hosts it lacks.

Counts travel as columns of numbers packed in base64 (little-endian numpy arrays): a 24 h
drift summary is ~20k numbers per host, and a thousand hosts' worth must parse in well
under a second.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from agent.schemas.common import StrictBody
from serve.names import ModelName


class Packed(BaseModel):
    """One numpy array: its dtype and its bytes, base64."""

    dtype: str
    data: str

    @classmethod
    def of(cls, array: Any) -> Packed:
        import numpy as np

        a = np.ascontiguousarray(array)
        if a.dtype.kind in "OUS":
            raise TypeError("only numeric arrays are packed")
        little = a.astype(a.dtype.newbyteorder("<"))
        return cls(dtype=little.dtype.str, data=base64.b64encode(little.tobytes()).decode())

    def array(self) -> Any:
        import numpy as np

        return np.frombuffer(base64.b64decode(self.data), dtype=np.dtype(self.dtype))


class Columns(BaseModel):
    """A table of numbers, column by column."""

    columns: dict[str, Packed] = Field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Columns:
        return cls(columns={k: Packed.of(v) for k, v in data.items()})

    def arrays(self) -> dict[str, Any]:
        return {k: v.array() for k, v in self.columns.items()}


class HostCounts(BaseModel):
    """Calls per model version on one host in a window (its share of the traffic)."""

    host: str
    calls: dict[str, int] = Field(default_factory=dict, description="version -> calls")


class LabelCount(BaseModel):
    bucket: int
    label: str
    n: int


class ConfidenceCount(BaseModel):
    bucket: int
    bin: int
    n: int


class LatencyColumns(BaseModel):
    """Per (bucket, version): calls, errors, fallbacks; per (bucket, version, bin): latency counts.
    Versions are indexes into `versions`."""

    versions: list[str]
    calls: Columns
    latency: Columns


class PairTotals(BaseModel):
    pairs: int
    disagreements: int


class OriginalRow(BaseModel):
    request_id: str
    version: str | None
    sha256: str | None
    input: str | None
    output: str | None
    ts: datetime | None = None


class OriginalsRequest(StrictBody):
    model: ModelName
    request_ids: list[str] = Field(min_length=1, max_length=1000)
