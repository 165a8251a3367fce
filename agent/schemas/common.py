"""What every API family's bodies share: UTC timestamps, strict request bodies, the error."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

AGENT_VERSION = "0.2.0"


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# DuckDB keeps naive UTC timestamps; the API always says they are UTC (RFC 3339).
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?")


def _rfc3339(value: Any) -> Any:
    # pydantic would read "0.5" as seconds since 1970: a time in a URL is written out.
    if isinstance(value, str) and not _RFC3339.fullmatch(value.strip()):
        raise ValueError("a time is RFC 3339, e.g. 2026-12-01T10:00:00Z (no offset: UTC)")
    return value


def _naive_utc_in_range(value: datetime) -> datetime:
    try:
        utc = as_utc(value)
    except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError(f"{value.isoformat()} is outside {EARLIEST:%Y}..{LATEST:%Y}")
    return utc.replace(tzinfo=None)


# A time asked for (since, until): RFC 3339, 1970..2200, read as naive UTC like DuckDB's.
When = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_naive_utc_in_range)]


class StrictBody(BaseModel):
    """A request body. Strict: `[false]` is not a number and a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    """Every 4xx/5xx: what failed and what to do, in one sentence."""

    detail: str
