"""What every console screen shares: a name, and `show(app_state)` to redraw from data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from console.state import ConsoleState


class ConsoleScreen(Screen):
    screen_name = ""

    def show(self, state: ConsoleState) -> None:
        """Redraw from the latest snapshots (called by the app on every update)."""
