"""Audit: every action with who, when, and the routing table before → after; `/` filters,
`:audit MODEL` shows one model's, and `:audit MODEL TIME` jumps to an instant: what had
happened by then, and the routing table that was serving the model at that moment."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.markup import escape
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import AgentError, AuditEntry, RoutingHistory
from console.screens.base import ConsoleScreen, FilterInput
from console.state import ConsoleState
from console.widgets.text import plain


class AuditLoaded(Message):
    def __init__(
        self, entries: list[AuditEntry], error: str | None, at: RoutingHistory | None = None
    ) -> None:
        super().__init__()
        self.entries = entries
        self.error = error
        self.at = at


class AuditScreen(ConsoleScreen):
    screen_name = "audit"
    main = "#audit"
    DEFAULT_CSS = "AuditScreen #audit { height: 1fr; } AuditScreen #note { height: auto; }"

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.entries: list[AuditEntry] = []
        self.error: str | None = None
        self.model: str | None = None
        self.at: str | None = None  # an instant the command line asked for (RFC 3339)
        self.history: RoutingHistory | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(" every action on the controller, newest first", id="note")
        yield FilterInput()
        yield DataTable(id="audit", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#audit", DataTable).add_columns(
            "ID", "WHEN (UTC)", "WHO", "ACTION", "MODEL", "RESULT", "BEFORE", "AFTER", "ERROR"
        )

    def select(self, *args: str) -> None:
        self.model = args[0] if args else None
        self.at = args[1] if len(args) > 1 else None

    def load(self) -> None:
        self.load_audit()

    @work(exclusive=True, group="audit")
    async def load_audit(self) -> None:
        client = self.controller
        if client is None:
            self.post_message(AuditLoaded([], "no controller agent connected"))
            return
        try:
            entries = await client.audit(limit=200, until=self.at, model=self.model)
            history = None
            if self.at and self.model and self.state.offers("/v1/routing/history"):
                history = await client.routing_history(self.model, at=self.at, limit=1)
        except AgentError as exc:
            self.post_message(AuditLoaded([], exc.message))
            return
        self.post_message(AuditLoaded(entries, None, history))

    def on_audit_loaded(self, message: AuditLoaded) -> None:
        self.entries, self.error, self.history = message.entries, message.error, message.at
        self.show()

    def show(self) -> None:
        table = self.query_one("#audit", DataTable)
        table.clear()
        note = " every action on the controller, newest first"
        if self.model:
            note += f" · model {escape(self.model)}"
        if self.at:
            note += f" · up to {escape(self.at)}"
            now = self.history.in_force if self.history else None
            if now is not None:
                note += (
                    f"\n serving then: {escape(now.table.summary())} (route #{now.route_version},"
                    f" since {now.since:%Y-%m-%d %H:%M:%S}, by {escape(now.who or '-')})"
                )
        self.query_one("#note", Static).update(
            f" [red]{escape(self.error)}[/]" if self.error else note
        )
        for e in self.entries:
            if self.model and e.model != self.model:
                continue
            before = e.before.summary() if e.before else "-"
            after = e.after.summary() if e.after else "-"
            cells = [e.who or "-", e.action, e.model or "-", e.result, before, after]
            if not self.matches(*cells, e.error):
                continue
            table.add_row(
                str(e.id),
                e.ts.strftime("%Y-%m-%d %H:%M:%S"),
                *(plain(c) for c in cells),
                plain((e.error or "")[:80]),
            )
