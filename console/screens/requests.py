"""Requests: the request log of every connected host, filters, a request's details, and
replay of the selected or listed calls with the reproducibility report. The screen loads the
log itself (every host at once) and follows a replay job until its report is final."""

from __future__ import annotations

import asyncio
import json

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.markup import escape
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Static

from agent.client import AgentError, ReplayReport, RequestDetail, RequestRow
from console.screens.availability import unavailable
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.modals import ReplayChoice, ReplayForm
from console.widgets.text import num, plain

REPLAY_PATH = "/v1/replay"


class RequestsLoaded(Message):
    def __init__(self, rows: list[tuple[str, RequestRow]], error: str | None) -> None:
        super().__init__()
        self.rows = rows
        self.error = error


class DetailLoaded(Message):
    def __init__(self, detail: RequestDetail | None, error: str | None) -> None:
        super().__init__()
        self.detail = detail
        self.error = error


class ReplayProgress(Message):
    def __init__(self, report: ReplayReport | None, error: str | None = None) -> None:
        super().__init__()
        self.report = report
        self.error = error


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
    main = "#requests"
    DEFAULT_CSS = """
    RequestsScreen #filters { height: 3; }
    RequestsScreen Horizontal { height: 1fr; }
    RequestsScreen #requests { width: 2fr; }
    RequestsScreen #detail { width: 1fr; border-left: solid $accent; padding: 0 1;
                             overflow-y: auto; }
    RequestsScreen #replay-note { height: auto; color: $warning; }
    RequestsScreen #replay-report { height: auto; max-height: 7; border-top: solid $accent; }
    """

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.rows: list[tuple[str, RequestRow]] = []
        self.error: str | None = None
        self.detail: RequestDetail | None = None
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

    def select(self, *args: str) -> None:
        names = ("model", "version")
        self.filters = dict(zip(names, args, strict=False))
        self.query_one("#filters", Input).value = " ".join(
            f"{k}={v}" for k, v in self.filters.items()
        )

    def selected(self) -> tuple[str, RequestRow] | None:
        index = self.query_one("#requests", DataTable).cursor_row
        return self.rows[index] if 0 <= index < len(self.rows) else None

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        self.load_requests(dict(self.filters))

    @work(exclusive=True, group="requests")
    async def load_requests(self, filters: dict[str, str]) -> None:
        """From the controller, which answers for the whole fleet; without one, from every
        connected host."""
        rows: list[tuple[str, RequestRow]] = []
        errors = []
        status = int(filters["status"]) if filters.get("status", "").isdigit() else None
        ctl = self.state.controller()
        asked = self.state.clients()
        if ctl is not None and (ctl_client := self.state.client(ctl.name)) is not None:
            asked = [(ctl.name, ctl_client)]
        for host, client in asked:
            try:
                page = await client.requests(
                    model=filters.get("model"),
                    version=filters.get("version"),
                    role=filters.get("role"),
                    status=status,
                    since=filters.get("since"),
                    limit=200,
                )
            except AgentError as exc:
                errors.append(f"{host}: {exc.message}")
                continue
            rows += [(host, r) for r in page.rows]
            errors += [f"{m.host} did not answer: {m.reason}" for m in page.coverage.missing]
        rows.sort(key=lambda hr: hr[1].ts, reverse=True)
        self.post_message(RequestsLoaded(rows[:200], "; ".join(errors) or None))

    def on_requests_loaded(self, message: RequestsLoaded) -> None:
        self.rows, self.error = message.rows, message.error
        self.show()

    @work(exclusive=True, group="request-detail")
    async def load_detail(self, host: str, request_id: str) -> None:
        client = self.controller or self.state.client(host)
        if client is None:
            return
        try:
            self.post_message(DetailLoaded(await client.request(request_id), None))
        except AgentError as exc:
            self.post_message(DetailLoaded(None, exc.message))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        self.detail, self.error = message.detail, message.error
        self.show()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filters":
            self.filters = parse_filter(event.value)
            self.load()
            self.focus_main()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        index = event.cursor_row
        if 0 <= index < len(self.rows):
            host, row = self.rows[index]
            self.load_detail(host, row.request_id)

    # -- replay -----------------------------------------------------------------------------
    def action_replay(self) -> None:
        selected = self.selected()
        if selected is None:
            self.notify("select a logged request to replay", severity="warning")
            return
        _, row = selected
        status = self.state.model(row.model)
        if status is None:
            self.notify(
                f"{row.model} is not deployed on the controller", severity="warning", markup=False
            )
            return
        listed = [
            r.request_id for _, r in self.rows if r.model == row.model and r.role == "primary"
        ]

        def done(choice: ReplayChoice | None) -> None:
            if choice is not None:
                self.run_replay(row.model, choice)

        versions = [v.version for v in status.versions]
        self.app.push_screen(
            ReplayForm(row.model, versions, row.version or "", row.request_id, listed), done
        )

    @work(exclusive=True, group="replay")
    async def run_replay(self, model: str, choice: ReplayChoice) -> None:
        """Start the job on the controller, then follow it until its report is final."""
        client = self.controller
        if client is None:
            self.post_message(ReplayProgress(None, "no controller agent connected"))
            return
        try:
            report = await client.replay(model, choice.version, choice.ids)
            self.post_message(ReplayProgress(report))
            while report.state == "running":
                await asyncio.sleep(0.5)
                report = await client.replay_report(report.id)
                self.post_message(ReplayProgress(report))
        except AgentError as exc:
            refused = f"replay of {model} against {choice.version} refused: {exc.message}"
            self.post_message(ReplayProgress(None, refused))

    def on_replay_progress(self, message: ReplayProgress) -> None:
        self.replay, self.replay_error = message.report, message.error
        self.show()

    # -- drawing ------------------------------------------------------------------------------
    def show(self) -> None:
        table = self.query_one("#requests", DataTable)
        table.clear()
        for host, r in self.rows:
            table.add_row(
                plain(r.host or host),  # the machine that served it
                r.ts.strftime("%H:%M:%S.%f")[:-3],
                plain(r.request_id[:24]),
                plain(r.version or "-"),
                plain(r.role),
                str(r.status),
                num(r.total_ms, "{:.1f}"),
                plain(r.fallback_from or ""),
            )
        reason = unavailable(self.state, REPLAY_PATH, "replay")
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
            for r in self.detail.rows:
                served_by = self.detail.tables.get(r.route_version or -1)
                parts.append(
                    f"[b]{escape(r.role)}[/b] {escape(str(r.version))} status {r.status}"
                    f" sha256 {escape((r.sha256 or '')[:12])}\n"
                    f"host {escape(str(r.host))} replica {escape(str(r.replica))}\n"
                    f"table {escape(served_by.summary() if served_by else f'#{r.route_version}')}\n"
                    f"latency {num(r.latency_ms)} ms, total {num(r.total_ms)} ms"
                    + (f"\nerror: {escape(r.error)}" if r.error else "")
                    + f"\ninput: {escape(json.dumps(r.input)[:300])}"
                    + f"\noutput: {escape(json.dumps(r.output)[:300])}"
                )
            detail.update("\n\n".join(parts))
