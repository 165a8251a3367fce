"""Models: each model's versions with weights, shadow, replicas, autoscaling, live latency,
and Serve's problems (e.g. "unschedulable: needs GPU"). Actions act on the selected row."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import LatencyPoint, ModelStatus
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.text import num


def latency_by_version(points: list[LatencyPoint], model: str) -> dict[str, LatencyPoint]:
    """The newest point per version of `model`."""
    out: dict[str, LatencyPoint] = {}
    for p in sorted(points, key=lambda p: p.t):
        if p.model == model and p.version:
            out[p.version] = p
    return out


class ModelsScreen(ConsoleScreen):
    screen_name = "models"
    CSS_PATH = "models.tcss"

    def __init__(self) -> None:
        super().__init__(name="models")
        self.rows: dict[str, tuple[str, str]] = {}  # row key → (model, version)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="tables")
        yield DataTable(id="versions", zebra_stripes=True, cursor_type="row")
        yield Static("", id="result")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#versions", DataTable)
        for key, label in [
            ("model", "MODEL"),
            ("version", "VERSION"),
            ("weight", "WEIGHT"),
            ("shadow", "SHADOW"),
            ("role", "ROLE"),
            ("status", "STATUS"),
            ("replicas", "REPLICAS"),
            ("target", "TARGET"),
            ("p50", "p50 ms"),
            ("p99", "p99 ms"),
            ("rps", "RPS"),
            ("err", "ERR%"),
            ("problem", "PROBLEM"),
        ]:
            table.add_column(label, key=key)
        table.focus()

    def selected(self) -> tuple[str, str] | None:
        table = self.query_one("#versions", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(str(key))

    def show_result(self, text: str) -> None:
        self.query_one("#result", Static).update(text)

    def show(self, state: ConsoleState) -> None:
        table = self.query_one("#versions", DataTable)
        ctl = state.controller()
        header = self.query_one("#tables", Static)
        if ctl is None:
            header.update(" no controller agent connected: models come from the Ray head's agent")
            table.clear()
            return
        models: list[ModelStatus] = ctl.models or []
        header.update(
            "  ".join(
                f"[b]{m.model}[/b] route #{m.table.route_version} stable {m.stable}"
                f" router {m.router_status or '-'}"
                for m in models
            )
            or " no models deployed"
        )
        cursor = table.cursor_row
        table.clear()
        self.rows.clear()
        for m in models:
            lat = latency_by_version(ctl.latency, m.model)
            for v in m.versions:
                p = lat.get(v.version)
                role = ", ".join(
                    r for r, on in (("stable", v.is_stable), ("fallback", v.is_fallback)) if on
                )
                target = (v.autoscaling or {}).get("target_ongoing_requests")
                bounds = v.autoscaling or {}
                replicas = " ".join(f"{k.lower()}:{n}" for k, n in sorted(v.replicas.items()))
                key = f"{m.model}/{v.version}"
                self.rows[key] = (m.model, v.version)
                table.add_row(
                    m.model,
                    v.version,
                    f"{v.weight}%",
                    f"{v.shadow_fraction:g}" if v.shadow_fraction else "-",
                    role or "-",
                    v.app_status or "-",
                    replicas or "-",
                    f"{target:g} ({bounds.get('min_replicas')}-{bounds.get('max_replicas')})"
                    if target
                    else "-",
                    num(p.p50_ms if p else None, "{:.0f}"),
                    num(p.p99_ms if p else None, "{:.0f}"),
                    num(p.rps if p else None, "{:.1f}"),
                    num(p.error_rate * 100 if p else None, "{:.1f}"),
                    Text(v.problem, style="red") if v.problem else "",
                    key=key,
                )
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
