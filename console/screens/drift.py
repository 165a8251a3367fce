"""Drift: per-feature drift of a version's traffic against its reference sample (test,
effect size, corrected p-value, drifted or not), the selected feature's histogram, reference
against current, and drift over time. The data comes from the controller agent's /v1/drift;
an agent without it is named and the screen's actions stay greyed out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import AgentError, DriftHistogram, DriftPoint, DriftReport, FeatureDrift
from console.screens.availability import unavailable
from console.screens.base import ConsoleScreen, FilterInput
from console.state import ConsoleState
from console.widgets.text import num, plain, sparkline

WINDOWS_S = (900, 3600, 6 * 3600, 24 * 3600)
BUCKETS = 12
BAR = 24  # histogram bar width
EIGHTHS = " ▏▎▍▌▋▊▉█"


class DriftLoaded(Message):
    def __init__(
        self, report: DriftReport | None, timeline: list[DriftPoint], error: str | None
    ) -> None:
        super().__init__()
        self.report = report
        self.timeline = timeline
        self.error = error


class HistogramLoaded(Message):
    def __init__(self, histogram: DriftHistogram | None, error: str | None = None) -> None:
        super().__init__()
        self.histogram = histogram
        self.error = error


def window_text(seconds: int) -> str:
    return f"{seconds // 3600} h" if seconds >= 3600 else f"{seconds // 60} min"


def bar(fraction: float, width: int = BAR) -> str:
    """A horizontal bar in eighths of a cell."""
    eighths = round(max(0.0, min(fraction, 1.0)) * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[rest] if rest else "")).ljust(width)


def effect(f: FeatureDrift) -> str:
    if f.kind == "categorical":
        return f"JS {num(f.js, '{:.3f}')}"
    return f"PSI {num(f.psi, '{:.2f}')}  W/σ {num(f.wasserstein, '{:.2f}')}"


def histogram_text(h: DriftHistogram) -> str:
    top = max([*h.reference, *h.current, 1e-9])
    lines = [f"[b]{escape(h.feature)}[/b] · [blue]█[/] reference · [magenta]█[/] current"]
    for lo, hi, ref, cur in zip(h.edges, h.edges[1:], h.reference, h.current, strict=False):
        label = f"{lo:g}" if hi - lo == 1 and float(lo).is_integer() else f"{lo:.3g}–{hi:.3g}"
        lines.append(
            f"{label:>11} [blue]{bar(ref / top)}[/] {ref:>6.1%}\n"
            f"{'':>11} [magenta]{bar(cur / top)}[/] {cur:>6.1%}"
        )
    return "\n".join(lines)


def timeline_text(points: list[DriftPoint]) -> str:
    if not points:
        return ""
    span = points[0].end - points[0].start
    tested = max((p.tested for p in points), default=0) or 1
    psi = [p.max_psi or 0.0 for p in points]
    rows = sum(p.current_rows for p in points)
    return (
        f"[b]drift over time[/b] ({len(points)} × {window_text(int(span.total_seconds()))},"
        f" {rows} rows)\n"
        f"drifted features  {sparkline([p.drifted for p in points], 0, tested, BUCKETS)}"
        f"  now {points[-1].drifted}/{points[-1].tested}\n"
        f"max PSI           {sparkline(psi, 0, max(max(psi), 0.25), BUCKETS)}"
        f"  now {psi[-1]:.2f}\n"
        f"prediction JS     "
        f"{sparkline([p.prediction_js or 0.0 for p in points], 0, 1, BUCKETS)}"
    )


class DriftScreen(ConsoleScreen):
    screen_name = "drift"
    main = "#features"
    path = "/v1/drift"
    DEFAULT_CSS = """
    DriftScreen #drift-title { height: auto; background: $boost; }
    DriftScreen #drift-note { height: auto; color: $warning; }
    DriftScreen Horizontal { height: 1fr; }
    DriftScreen #features { width: 3fr; }
    DriftScreen #drift-side { width: 2fr; border-left: solid $accent; padding: 0 1; }
    DriftScreen #timeline { height: auto; margin-bottom: 1; }
    DriftScreen #histogram { height: auto; }
    """

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.model: str | None = None
        self.version: str | None = None
        self.window_s = 3600
        self.feature: str | None = None
        self.report: DriftReport | None = None
        self.timeline: list[DriftPoint] = []
        self.histogram: DriftHistogram | None = None
        self.error: str | None = None
        self.loading = False
        self._shown: tuple[DriftReport, str] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="drift-title")
        yield Static("", id="drift-note")
        yield FilterInput("filter features (Enter applies, Esc clears)")
        with Horizontal():
            yield DataTable(id="features", zebra_stripes=True, cursor_type="row")
            with VerticalScroll(id="drift-side"):
                yield Static("", id="timeline")
                yield Static("", id="histogram")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#features", DataTable)
        for key, label in [
            ("feature", "FEATURE"),
            ("test", "TEST"),
            ("stat", "STAT"),
            ("p", "P (BH)"),
            ("effect", "EFFECT"),
            ("drifted", "DRIFT"),
        ]:
            table.add_column(label, key=key)
        # Drift is a heavy query on the agent: every 30 s while this screen is up.
        self.set_interval(30, self._reload_if_current)

    def _reload_if_current(self) -> None:
        if self.is_current:
            self.load()

    # -- what to look at ----------------------------------------------------------------------
    def select(self, *args: str) -> None:
        """`:drift MODEL [VERSION]`."""
        if args:
            self.model, self.feature = args[0], None
            self.version = args[1] if len(args) > 1 else None
            self.report, self.histogram, self.timeline = None, None, []

    def choose(self) -> bool:
        """Pick the model and its stable version if none is chosen; True if changed."""
        models = self.state.models()
        if not models:
            return False
        chosen = next((m for m in models if m.model == self.model), None)
        if chosen is not None:
            if self.version is None:
                self.version = chosen.stable
            return False
        m = models[0]
        self.model, self.version, self.feature = m.model, m.stable, None
        return True

    def action_drift_version(self) -> None:
        m = self.state.model(self.model or "")
        if m is None:
            return
        versions = [v.version for v in m.versions]
        at = versions.index(self.version) if self.version in versions else -1
        self.version = versions[(at + 1) % len(versions)]
        self.report, self.histogram, self.timeline, self.feature = None, None, [], None
        self.load()

    def action_drift_window(self) -> None:
        at = WINDOWS_S.index(self.window_s) if self.window_s in WINDOWS_S else 0
        self.window_s = WINDOWS_S[(at + 1) % len(WINDOWS_S)]
        self.load()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        feature = event.row_key.value if event.row_key else None
        if feature and feature != self.feature:
            self.feature = feature
            self.load_histogram()

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        if self.controller is None or not self.state.offers(self.path):
            self.show()
            return
        self.choose()
        if self.model is None:
            return
        self.loading = True
        self.show()
        self.load_drift(self.model, self.version, self.window_s)

    @work(exclusive=True, group="drift")
    async def load_drift(self, model: str, version: str | None, window_s: int) -> None:
        client = self.controller
        if client is None:
            return
        until = datetime.now(UTC)
        since = until - timedelta(seconds=window_s)
        try:
            report, timeline = await asyncio.gather(
                client.drift(model, version=version, since=since, until=until),
                client.drift_timeline(
                    model, version=version, since=since, until=until, buckets=BUCKETS
                ),
            )
        except AgentError as exc:
            self.post_message(DriftLoaded(None, [], f"drift of {model} {version}: {exc.message}"))
            return
        self.post_message(DriftLoaded(report, timeline, None))

    def on_drift_loaded(self, message: DriftLoaded) -> None:
        self.loading = False
        self.error = message.error
        if message.report is not None:
            self.report, self.timeline = message.report, message.timeline
        self.show()
        if self.feature:
            self.load_histogram()

    def load_histogram(self) -> None:
        report = self.report
        inputs = {f.feature for f in report.features} if report else set()
        if report is None or self.feature not in inputs:
            self.histogram = None  # the predicted label has its test, not a histogram
            self.show()
            return
        self.fetch_histogram(report, self.feature)

    @work(exclusive=True, group="drift-histogram")
    async def fetch_histogram(self, report: DriftReport, feature: str) -> None:
        client = self.controller
        if client is None:
            return
        try:
            histogram = await client.drift_histogram(
                report.model,
                feature,
                version=report.version,
                since=report.since,
                until=report.until,
            )
        except AgentError as exc:
            self.post_message(HistogramLoaded(None, f"histogram of {feature}: {exc.message}"))
            return
        self.post_message(HistogramLoaded(histogram))

    def on_histogram_loaded(self, message: HistogramLoaded) -> None:
        self.histogram = message.histogram
        if message.error:
            self.error = message.error
        self.show()

    # -- drawing ------------------------------------------------------------------------------
    def show(self) -> None:
        title = self.query_one("#drift-title", Static)
        note = self.query_one("#drift-note", Static)
        reason = unavailable(self.state, self.path, "drift reports")
        if reason is None and not self.state.models():
            reason = "no model is deployed on the controller yet"
        if reason:
            title.update(" Drift")
            note.update(reason)
            return
        r = self.report
        head = (
            f" [b]{escape(str(self.model))} {escape(str(self.version))}[/b]"
            f" · last {window_text(self.window_s)}"
        )
        if r is not None:
            pred = r.prediction
            head += (
                f" · {r.current_rows} rows vs {r.reference_rows} reference"
                f" · [b]{len(r.drifted)}[/b] of {len(r.features) + (pred is not None)} drifted"
            )
            if pred is not None:
                head += f" · prediction {'[red]drifted[/]' if pred.drifted else 'steady'}"
        title.update(head + (" · loading…" if self.loading else ""))
        note.update(f"[red]{escape(self.error)}[/]" if self.error else "")
        if r is not None and self._shown != (r, self.filter_text):
            self._fill(r)
        self.query_one("#histogram", Static).update(
            histogram_text(self.histogram) if self.histogram else ""
        )
        self.query_one("#timeline", Static).update(timeline_text(self.timeline))

    def _fill(self, r: DriftReport) -> None:
        self._shown = (r, self.filter_text)
        table = self.query_one("#features", DataTable)
        table.clear()
        rows = [*r.features, *([r.prediction] if r.prediction else [])]
        rows.sort(key=lambda f: (not f.drifted, -(f.psi or f.js or 0), f.feature))
        for f in rows:
            if not self.matches(f.feature, "drifted" if f.drifted else ""):
                continue
            table.add_row(
                plain(f.feature),
                f.test,
                num(f.statistic, "{:.3f}"),
                num(f.p_adjusted, "{:.2g}"),
                effect(f),
                "[red]yes[/]" if f.drifted else ("-" if f.p_value is None else "no"),
                key=f.feature,
            )
        if self.feature is not None and self.feature in table.rows:  # keep the operator's row
            table.move_cursor(row=table.get_row_index(self.feature), animate=False)
