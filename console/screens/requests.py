"""Requests: the request log of every connected host, filters, a request's details, and
replay of the selected or listed calls with the reproducibility report."""

from __future__ import annotations

import json

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.markup import escape
from textual.widgets import DataTable, Footer, Header, Input, Static

from agent.client import ReplayReport, RequestRow
from console.screens.availability import unavailable
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.text import num, plain

REPLAY_PATH = "/v1/replay"


def parse_filter(text: str) -> dict[str, str]:
    """`model=digits version=v2 role=shadow status=503` → query parameters."""
    out = {}
    for part in text.split():
        key, sep, value = part.partition("=")
        if sep and key in ("model", "version", "role", "status", "since"):
            out[key] = value
    return out


def replay_text(r: ReplayReport) -> str:
    """The reproducibility report in a few lines: counts, then the first differences."""
    c = r.counts
    head = (
        f" [b]replay {r.id}[/b] {r.model} → {r.version}: {r.done}/{r.total} {r.state}"
        f" · identical {c.get('identical', 0)}"
        f" · within {r.tolerance:g} {c.get('within_tolerance', 0)}"
        f" · output changed {c.get('output_changed', 0)}"
        f" · [b]label changed {c.get('label_changed', 0)}[/b]"
        f" · failed {c.get('failed', 0)}"
        f" · same artifact {r.same_artifact}/{r.done}"
        + (f" · max |Δp| {r.max_abs_diff:.2g}" if r.max_abs_diff is not None else "")
        + (f"\n [red]{escape(r.error)}[/]" if r.error else "")
    )
    lines = [head]
    for item in [i for i in r.items if i.outcome != "identical"][:4]:
        what = (
            f"label {item.original_labels} → {item.replay_labels}"
            if item.outcome == "label_changed"
            else item.error or f"|Δp| {item.max_abs_diff:.2g}"
        )
        lines.append(
            f"   {escape(item.request_id[:28])} ({escape(str(item.original_version))}):"
            f" {item.outcome}, {escape(what)}"
        )
    return "\n".join(lines)


class RequestsScreen(ConsoleScreen):
    screen_name = "requests"
    CSS_PATH = "requests.tcss"

    def __init__(self) -> None:
        super().__init__(name="requests")
        self.rows: list[tuple[str, RequestRow]] = []
        self.error: str | None = None
        self.detail: list[RequestRow] | None = None
        self.filters: dict[str, str] = {}
        self.replay: ReplayReport | None = None
        self.replay_error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filters: model=digits version=v2 role=primary status=503", id="filters"
        )
        with Horizontal():
            yield DataTable(id="requests", zebra_stripes=True, cursor_type="row")
            yield Static("select a request", id="detail")
        yield Static("", id="replay-note")
        yield Static("", id="replay-report")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#requests", DataTable)
        for label in (
            "HOST",
            "WHEN (UTC)",
            "REQUEST",
            "VERSION",
            "ROLE",
            "STATUS",
            "TOTAL ms",
            "FALLBACK",
        ):
            table.add_column(label)
        table.focus()

    def selected(self) -> tuple[str, RequestRow] | None:
        index = self.query_one("#requests", DataTable).cursor_row
        return self.rows[index] if 0 <= index < len(self.rows) else None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.filters = parse_filter(event.value)
        self.app.load_requests(self.filters)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        index = event.cursor_row
        if 0 <= index < len(self.rows):
            host, row = self.rows[index]
            self.app.load_request_detail(host, row.request_id)

    def show(self, state: ConsoleState) -> None:
        table = self.query_one("#requests", DataTable)
        table.clear()
        for host, r in self.rows:
            table.add_row(
                plain(host),
                r.ts.strftime("%H:%M:%S.%f")[:-3],
                plain(r.request_id[:24]),
                plain(r.version or "-"),
                plain(r.role),
                str(r.status),
                num(r.total_ms, "{:.1f}"),
                plain(r.fallback_from or ""),
            )
        reason = unavailable(state, REPLAY_PATH, "replay")
        self.query_one("#replay-note", Static).update(
            f" replay is disabled: {reason}" if reason else ""
        )
        self.query_one("#replay-report", Static).update(
            f"[red]{escape(self.replay_error)}[/]"
            if self.replay_error
            else replay_text(self.replay)
            if self.replay
            else ""
        )
        detail = self.query_one("#detail", Static)
        if self.error:
            detail.update(f"[red]{escape(self.error)}[/]")
        elif self.detail:
            parts = []
            for r in self.detail:
                parts.append(
                    f"[b]{escape(r.role)}[/b] {escape(str(r.version))} status {r.status}"
                    f" sha256 {escape((r.sha256 or '')[:12])}\n"
                    f"latency {num(r.latency_ms)} ms, total {num(r.total_ms)} ms"
                    + (f"\nerror: {escape(r.error)}" if r.error else "")
                    + f"\ninput: {escape(json.dumps(r.input)[:300])}"
                    + f"\noutput: {escape(json.dumps(r.output)[:300])}"
                )
            detail.update("\n\n".join(parts))
