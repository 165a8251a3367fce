"""The routing table of one model: the contract between whoever moves traffic and the router."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve.names import check_version

DEFAULT_STICKY_HEADER = "x-trackside-key"


class ShadowTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: str
    fraction: float = Field(ge=0.0, le=1.0)


def check_sticky_header(value: str) -> str:
    if not value or value.lower() != value:
        raise ValueError("sticky_header must be a non-empty lower-case header name")
    return value


class TrafficSplit(BaseModel):
    """Where a model's traffic goes: `weights` are integer percentages summing to 100, a
    `shadow` version gets a copy of a fraction of calls, `fallback` answers when a version
    fails. What an operator (or a rollout) sets."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    weights: dict[str, int]
    shadow: ShadowTarget | None = None
    fallback: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TrafficSplit:
        if not self.weights:
            raise ValueError("weights must name at least one version")
        for version, weight in self.weights.items():
            check_version(version)
            if weight < 0 or weight > 100:
                raise ValueError(f"weight of {version} is {weight}; weights are 0..100")
        total = sum(self.weights.values())
        if total != 100:
            raise ValueError(f"weights sum to {total}, not 100: {self.weights}")
        if self.shadow is not None:
            check_version(self.shadow.version)
        if self.fallback is not None:
            check_version(self.fallback)
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
    sticky_header: str = DEFAULT_STICKY_HEADER

    @field_validator("sticky_header")
    @classmethod
    def _header(cls, value: str) -> str:
        return check_sticky_header(value)

    def summary(self) -> str:
        return f"#{self.route_version} {super().summary()}"
