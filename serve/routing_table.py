"""The routing table of one model: the contract between whoever moves traffic and the router."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from serve.json_number import INTEGRAL
from serve.names import VersionName

DEFAULT_STICKY_HEADER = "x-trackside-key"
# An HTTP header name (RFC 9110 token), lower-case as ASGI hands headers to the router.
HEADER_PATTERN = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]{1,64}")


def check_sticky_header(value: Any) -> Any:
    if not isinstance(value, str) or not HEADER_PATTERN.fullmatch(value):
        raise ValueError(
            f"sticky_header {value!r} is not a lower-case HTTP header name (letters, digits,"
            " '-' and the like; at most 64)"
        )
    return value


StickyHeader = Annotated[
    str, Field(pattern=f"^{HEADER_PATTERN.pattern}$"), BeforeValidator(check_sticky_header)
]
Weight = Annotated[int, Field(ge=0, le=100), INTEGRAL]
# Every key a version name: patternProperties (from VersionName) and nothing else.
ONLY_VERSION_KEYS: dict[str, Any] = {"additionalProperties": False}


class ShadowTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: VersionName
    fraction: float = Field(ge=0.0, le=1.0)


class TrafficSplit(BaseModel):
    """Where a model's traffic goes: `weights` are integer percentages summing to 100, a
    `shadow` version gets a copy of a fraction of calls, `fallback` answers when a version
    fails. What an operator (or a rollout) sets."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    weights: dict[VersionName, Weight] = Field(
        min_length=1,
        json_schema_extra=ONLY_VERSION_KEYS,
        description="percent of calls per version, 0..100 each, adding up to 100",
    )
    shadow: ShadowTarget | None = None
    fallback: VersionName | None = None

    @model_validator(mode="after")
    def _check(self) -> TrafficSplit:
        total = sum(self.weights.values())
        if total != 100:
            raise ValueError(f"weights sum to {total}, not 100: {self.weights}")
        return self

    def versions(self) -> set[str]:
        """Every version the split can send a request to."""
        out = {v for v, w in self.weights.items() if w > 0}
        if self.shadow is not None and self.shadow.fraction > 0:
            out.add(self.shadow.version)
        if self.fallback is not None:
            out.add(self.fallback)
        return out

    def summary(self) -> str:
        """One line for people: `v1=90 v2=10 shadow=v2:0.1 fallback=v1`."""
        text = " ".join(f"{v}={w}" for v, w in sorted(self.weights.items()))
        if self.shadow is not None:
            text += f" shadow={self.shadow.version}:{self.shadow.fraction:g}"
        if self.fallback is not None:
            text += f" fallback={self.fallback}"
        return text


class RoutingTable(TrafficSplit):
    """The split in force, numbered: `route_version` grows with each change (and is never
    reused), so every response can say which table served it."""

    route_version: int = Field(ge=0)
    sticky_header: StickyHeader = DEFAULT_STICKY_HEADER

    def summary(self) -> str:
        return f"#{self.route_version} {super().summary()}"
