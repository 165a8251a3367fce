"""Drift and Rollout: built against the agent's API; until an agent offers the endpoints,
they say so plainly and their actions stay disabled."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer, Header, Static

from console.screens.base import ConsoleScreen
from console.state import ConsoleState


class FeatureScreen(ConsoleScreen):
    path = ""
    title_text = ""
    what = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"[b]{self.title_text}[/b]", id="title")
        yield Static("", id="body")
        yield Footer()

    def offered(self, state: ConsoleState) -> bool:
        ctl = state.controller()
        return bool(ctl and ctl.offers(self.path))

    def show(self, state: ConsoleState) -> None:
        body = self.query_one("#body", Static)
        if state.controller() is None:
            body.update("no controller agent connected")
        elif not self.offered(state):
            body.update(
                f"The agent does not offer {self.what} yet (no {self.path} in its API).\n"
                "This screen and its actions come alive when the agent is upgraded."
            )
        else:
            body.update(f"{self.what}: the agent offers {self.path}.")


class DriftScreen(FeatureScreen):
    screen_name = "drift"
    path = "/v1/drift"
    title_text = "Drift"
    what = "drift reports (per-feature tests, effect sizes, p-values, histograms)"

    def __init__(self) -> None:
        super().__init__(name="drift")


class RolloutScreen(FeatureScreen):
    screen_name = "rollout"
    path = "/v1/rollouts"
    title_text = "Rollout"
    what = "progressive rollouts (steps, judgements, pause/resume/abort)"

    def __init__(self) -> None:
        super().__init__(name="rollout")
