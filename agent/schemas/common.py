"""What every API family's bodies share: UTC timestamps, strict request bodies, the error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

AGENT_VERSION = "0.2.0"


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# DuckDB keeps naive UTC timestamps; the API always says they are UTC (RFC 3339).
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class StrictBody(BaseModel):
    """A request body. Strict: `[false]` is not a number and a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    """Every 4xx/5xx: what failed and what to do, in one sentence."""

    detail: str
