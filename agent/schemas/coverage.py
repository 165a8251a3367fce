"""How a fleet-wide answer says which hosts it is made of, and which it lacks."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agent.schemas.common import UtcDatetime


class MissingHost(BaseModel):
    """A host that did not answer in time: who, why, and how much of the model's traffic it
    carried when it last answered (None: it never has)."""

    host: str
    reason: str
    last_share: float | None = None
    last_seen: UtcDatetime | None = None


class Coverage(BaseModel):
    """Which hosts a fleet-wide answer is made of."""

    answered: list[str] = Field(default_factory=list)
    missing: list[MissingHost] = Field(default_factory=list)

    @property
    def missing_share(self) -> float | None:
        """The share of the traffic the answer lacks (None: some missing host's is unknown)."""
        if any(m.last_share is None for m in self.missing):
            return None
        return sum(m.last_share or 0.0 for m in self.missing)
