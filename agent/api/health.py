"""GET /health: the only route without a token (load balancers and scripts probe it)."""

from __future__ import annotations

from fastapi import APIRouter

from agent.api.context import Context
from agent.schemas.host import Health

router = APIRouter(tags=["health"])


def failing(collectors: dict[str, str]) -> list[str]:
    return sorted(name for name, state in collectors.items() if state.startswith("error"))


@router.get("/health")
def health(ctx: Context) -> Health:
    broken = failing(ctx.collectors)
    return Health(status="degraded" if broken else "ok", failing=broken)
