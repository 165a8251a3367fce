"""GET /health: the only route without a token (load balancers and scripts probe it)."""

from __future__ import annotations

from fastapi import APIRouter

from agent.schemas.host import Health

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> Health:
    return Health()
