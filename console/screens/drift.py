"""Drift: per-feature drift of a version's traffic against its reference sample (test,
effect size, corrected p-value, drifted or not), the selected feature's histogram, reference
against current, and drift over time. The data comes from the controller agent's /v1/drift;
an agent without it is named and the screen's actions stay greyed out."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import DriftHistogram, DriftPoint, DriftReport, FeatureDrift
from console.screens.availability import unavailable
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.text import num, plain, sparkline

WINDOWS_S = (900, 3600, 6 * 3600, 24 * 3600)
BUCKETS = 12
BAR = 24  # histogram bar width
EIGHTHS = " ▏▎▍▌▋▊▉█"


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
    CSS_PATH = "drift.tcss"
    path = "/v1/drift"

    def __init__(self) -> None:
        super().__init__(name="drift")
        self.model: str | None = None
        self.version: str | None = None
        self.window_s = 3600
        self.feature: str | None = None
        self.report: DriftReport | None = None
        self.timeline: list[DriftPoint] = []
        self.histogram: DriftHistogram | None = None
        self.error: str | None = None
        self.loading = False
        self._shown: DriftReport | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="drift-title")
        yield Static("", id="drift-note")
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
            self.app.load_drift()  # type: ignore[attr-defined]

    # -- what to look at ----------------------------------------------------------------------
    def choose(self, state: ConsoleState) -> bool:
        """Pick the model and version (the stable one) if none is chosen; True if changed."""
        models = state.models()
        if not models:
            return False
        names = [m.model for m in models]
        if self.model in names:
            return False
        m = models[0]
        self.model, self.version, self.feature = m.model, m.stable, None
        return True

    def next_version(self, state: ConsoleState) -> None:
        m = next((m for m in state.models() if m.model == self.model), None)
        if m is None:
            return
        versions = [v.version for v in m.versions]
        at = versions.index(self.version) if self.version in versions else -1
        self.version = versions[(at + 1) % len(versions)]
        self.report, self.histogram, self.timeline, self.feature = None, None, [], None

    def next_window(self) -> None:
        at = WINDOWS_S.index(self.window_s) if self.window_s in WINDOWS_S else 0
        self.window_s = WINDOWS_S[(at + 1) % len(WINDOWS_S)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        feature = event.row_key.value if event.row_key else None
        if feature and feature != self.feature:
            self.feature = feature
            self.app.load_drift_histogram()  # type: ignore[attr-defined]

    # -- drawing ------------------------------------------------------------------------------
    def show(self, state: ConsoleState) -> None:
        title = self.query_one("#drift-title", Static)
        note = self.query_one("#drift-note", Static)
        reason = unavailable(state, self.path, "drift reports")
        if reason is None and not state.models():
            reason = "no model is deployed on the controller yet"
        if reason:
            title.update(" Drift")
            note.update(reason)
            return
        r = self.report
        head = f" [b]{self.model} {self.version}[/b] · last {window_text(self.window_s)}"
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
        if r is not None and r is not self._shown:
            self._fill(r)
        self.query_one("#histogram", Static).update(
            histogram_text(self.histogram) if self.histogram else ""
        )
        self.query_one("#timeline", Static).update(timeline_text(self.timeline))

    def _fill(self, r: DriftReport) -> None:
        self._shown = r
        table = self.query_one("#features", DataTable)
        table.clear()
        rows = [*r.features, *([r.prediction] if r.prediction else [])]
        rows.sort(key=lambda f: (not f.drifted, -(f.psi or f.js or 0), f.feature))
        for f in rows:
            table.add_row(
                plain(f.feature),
                f.test,
                num(f.statistic, "{:.3f}"),
                num(f.p_adjusted, "{:.2g}"),
                effect(f),
                "[red]yes[/]" if f.drifted else ("-" if f.p_value is None else "no"),
                key=f.feature,
            )
        if self.feature in table.rows:  # keep the operator's row across reloads
            table.move_cursor(row=table.get_row_index(self.feature), animate=False)
