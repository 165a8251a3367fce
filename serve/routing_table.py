"""The routing table of one model: the contract between whoever moves traffic and the router."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve.names import check_version


class ShadowTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: str
    fraction: float = Field(ge=0.0, le=1.0)


class RoutingTable(BaseModel):
    """`weights` are integer percentages summing to 100. `route_version` grows with each change
    so every response can say which table served it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    route_version: int = Field(ge=0)
    weights: dict[str, int]
    shadow: ShadowTarget | None = None
    sticky_header: str = "x-trackside-key"
    fallback: str | None = None

    @model_validator(mode="after")
    def _check(self) -> RoutingTable:
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
        if not self.sticky_header or self.sticky_header.lower() != self.sticky_header:
            raise ValueError("sticky_header must be a non-empty lower-case header name")
        return self

    def versions(self) -> set[str]:
        """Every version the table can send a request to."""
        out = {v for v, w in self.weights.items() if w > 0}
        if self.shadow is not None and self.shadow.fraction > 0:
            out.add(self.shadow.version)
        if self.fallback is not None:
            out.add(self.fallback)
        return out
