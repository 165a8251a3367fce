"""Features that arrive with agent upgrades: until the controller agent offers the endpoint,
its screen says so plainly (and the registry greys its actions out)."""

from __future__ import annotations

from console.state import ConsoleState


def unavailable(state: ConsoleState, path: str, what: str) -> str | None:
    """Why a screen built on `path` cannot show anything, or None when it can."""
    ctl = state.controller()
    if ctl is None:
        return "no controller agent connected"
    if not ctl.offers(path):
        return (
            f"The agent does not offer {what} yet (no {path} in its API).\n"
            "This screen and its actions come alive when the agent is upgraded."
        )
    return None
