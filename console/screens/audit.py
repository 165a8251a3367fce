"""Audit: every action with who, when, and the routing table before → after; `/` filters,
`:audit MODEL` shows one model's."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.markup import escape
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import AgentError, AuditEntry
from console.screens.base import ConsoleScreen, FilterInput
from console.state import ConsoleState
from console.widgets.text import plain


class AuditLoaded(Message):
    def __init__(self, entries: list[AuditEntry], error: str | None) -> None:
        super().__init__()
        self.entries = entries
        self.error = error


class AuditScreen(ConsoleScreen):
    screen_name = "audit"
    main = "#audit"
    DEFAULT_CSS = "AuditScreen #audit { height: 1fr; }"

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.entries: list[AuditEntry] = []
        self.error: str | None = None
        self.model: str | None = None

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

    def load(self) -> None:
        self.load_audit()

    @work(exclusive=True, group="audit")
    async def load_audit(self) -> None:
        client = self.controller
        if client is None:
            self.post_message(AuditLoaded([], "no controller agent connected"))
            return
        try:
            entries = await client.audit(limit=200)
        except AgentError as exc:
            self.post_message(AuditLoaded([], exc.message))
            return
        self.post_message(AuditLoaded(entries, None))

    def on_audit_loaded(self, message: AuditLoaded) -> None:
        self.entries, self.error = message.entries, message.error
        self.show()

    def show(self) -> None:
        table = self.query_one("#audit", DataTable)
        table.clear()
        note = " every action on the controller, newest first"
        if self.model:
            note += f" · model {escape(self.model)}"
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
