"""Screens for features that arrive with agent upgrades: until the controller agent offers
the endpoint, they say so plainly and their actions stay disabled."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer, Header, Static

from console.screens.base import ConsoleScreen
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


class FeatureScreen(ConsoleScreen):
    path = ""
    title_text = ""
    what = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"[b]{self.title_text}[/b]", id="title")
        yield Static("", id="body")
        yield Footer()

    def show(self, state: ConsoleState) -> None:
        reason = unavailable(state, self.path, self.what)
        self.query_one("#body", Static).update(reason or f"{self.what}: the agent offers them.")


class RolloutScreen(FeatureScreen):
    screen_name = "rollout"
    path = "/v1/rollouts"
    title_text = "Rollout"
    what = "progressive rollouts (steps, judgements, pause/resume/abort)"

    def __init__(self) -> None:
        super().__init__(name="rollout")
