"""Audit: every action with who, when, and the routing table before → after."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.markup import escape
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import AuditEntry
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.text import plain


def brief(table: Any) -> str:
    if not isinstance(table, dict):
        return "-"
    weights = " ".join(f"{v}={w}" for v, w in sorted(table.get("weights", {}).items()))
    shadow = table.get("shadow")
    extra = f" shadow {shadow['version']}:{shadow['fraction']:g}" if shadow else ""
    return f"#{table.get('route_version')} {weights}{extra}"


class AuditScreen(ConsoleScreen):
    screen_name = "audit"

    def __init__(self) -> None:
        super().__init__(name="audit")
        self.entries: list[AuditEntry] = []
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(" every action on the controller, newest first", id="note")
        yield DataTable(id="audit", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#audit", DataTable)
        for label in (
            "ID",
            "WHEN (UTC)",
            "WHO",
            "ACTION",
            "MODEL",
            "RESULT",
            "BEFORE",
            "AFTER",
            "ERROR",
        ):
            table.add_column(label)

    def show(self, state: ConsoleState) -> None:
        table = self.query_one("#audit", DataTable)
        table.clear()
        if self.error:
            self.query_one("#note", Static).update(f" [red]{escape(self.error)}[/]")
        for e in self.entries:
            table.add_row(
                str(e.id),
                e.ts.strftime("%Y-%m-%d %H:%M:%S"),
                plain(e.who or "-"),
                plain(e.action),
                plain(e.model or "-"),
                plain(e.result),
                plain(brief(e.before)),
                plain(brief(e.after)),
                plain((e.error or "")[:80]),
            )
