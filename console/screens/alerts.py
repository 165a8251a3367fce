"""Alerts: each rule's alert that fires or is pending, per model version, with its measure
against the threshold, and the latest changes (fired, resolved, cleared). From the controller's
/v1/alerts, polled with the host (they also feed the header's banner); `/` filters."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Header, Static

from console.screens.availability import unavailable
from console.screens.base import ConsoleScreen, FilterInput
from console.widgets.text import num, plain

STATE_STYLE = {"firing": "bold red", "pending": "yellow"}
CHANGE_STYLE = {"firing": "red", "resolved": "green", "pending": "yellow", "cleared": "dim"}


class AlertsScreen(ConsoleScreen):
    screen_name = "alerts"
    main = "#now"
    path = "/v1/alerts"
    DEFAULT_CSS = """
    AlertsScreen #now { height: auto; max-height: 50%; }
    AlertsScreen #history { height: 1fr; }
    AlertsScreen #alerts-note { height: auto; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="alerts-note")
        yield FilterInput("filter alerts (Enter applies, Esc clears)")
        yield DataTable(id="now", zebra_stripes=True, cursor_type="row")
        yield Static(" [b]history[/b], newest first")
        yield DataTable(id="history", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#now", DataTable).add_columns(
            "STATE", "RULE", "VERSION OR HOST", "VALUE", "THRESHOLD", "SINCE (UTC)"
        )
        self.query_one("#history", DataTable).add_columns("WHEN (UTC)", "CHANGE", "ALERT")

    def show(self) -> None:
        note = self.query_one("#alerts-note", Static)
        reason = unavailable(self.state, self.path, "alerts")
        now = self.query_one("#now", DataTable)
        history = self.query_one("#history", DataTable)
        now.clear()
        history.clear()
        page = self.state.alerts()
        if reason or page is None:
            note.update(reason or "waiting for the controller's alerts")
            return
        note.update(
            f" {len(page.firing)} firing, {len(page.pending)} pending · rules are [[alerts]] in"
            " each model's TOML, and [[controller.alerts]] in the controller's agent.toml"
        )
        for a in [*page.firing, *page.pending]:
            cells = (a.rule, a.subject)
            if not self.matches(a.state, *cells):
                continue
            now.add_row(
                f"[{STATE_STYLE[a.state]}]{a.state}[/]",
                *(plain(c) for c in cells),
                num(a.value, "{:.4g}"),
                f"{a.threshold:g}",
                a.since.strftime("%Y-%m-%d %H:%M:%S"),
            )
        for e in page.history:
            if not self.matches(e.change, e.rule, e.subject, e.message):
                continue
            history.add_row(
                e.ts.strftime("%Y-%m-%d %H:%M:%S"),
                f"[{CHANGE_STYLE[e.change]}]{e.change}[/]",
                plain(e.message),
            )
