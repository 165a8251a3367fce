"""Fleet: every host, its CPU, memory, GPUs, and recent history, sortable and filterable.

Columns have fixed widths, and when the set of rows is unchanged only the cells whose value
changed are updated: rebuilding 64 hosts x 8 GPUs on every refresh cost ~0.7 s.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Header, Input, Static

from console.poller import HostSnapshot
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.text import gib, num, pct, sparkline

SORT_KEYS = ("host", "cpu", "mem", "gpu")
COLUMNS = [  # key, label, width
    ("host", "HOST", 14),
    ("state", "STATE", 16),
    ("poll", "POLL ms", 7),
    ("cpu", "CPU", 6),
    ("cpu_hist", "CPU history", 20),
    ("mem", "MEM", 6),
    ("load", "LOAD", 6),
    ("gpu", "GPU", 6),
    ("gmem", "GPU MEM", 11),
    ("temp", "TEMP", 5),
    ("power", "POWER", 6),
    ("gpu_hist", "GPU history", 20),
    ("throttle", "THROTTLE / ERROR", 40),
]
KEYS = [c[0] for c in COLUMNS]


def host_state(s: HostSnapshot) -> Text:
    if s.connected:
        return Text("up", style="green")
    if s.retry_in_s:
        return Text(f"down, retry {s.retry_in_s:.0f}s", style="red")
    return Text("connecting", style="yellow")


def host_cells(s: HostSnapshot) -> list:
    h = s.host
    gpu_status = s.info.gpu_status if s.info else ""
    return [
        s.name,
        host_state(s),
        num(s.poll_ms, "{:.0f}"),
        pct(h.get("cpu_pct")),
        sparkline(s.cpu_history),
        pct(h.get("mem_pct")),
        num(h.get("load1"), "{:.2f}"),
        "none" if gpu_status.startswith("no GPU") else "",
        "",
        "",
        "",
        "",
        Text(s.error or "", style="red") if not s.connected else "",
    ]


def gpu_cells(s: HostSnapshot, g: dict) -> list:
    throttle = ",".join(g.get("throttle_reasons") or [])
    return [
        f" └ gpu{g['gpu_index']}",
        (g.get("name") or "")[:16],
        "",
        "",
        "",
        "",
        "",
        pct(g.get("util_gpu")),
        f"{gib(g.get('mem_used'))}/{gib(g.get('mem_total'))}",
        num(g.get("temp_c"), "{:.0f}C"),
        num(g.get("power_w"), "{:.0f}W"),
        sparkline(s.gpu_history.get(g["uuid"], [])),
        Text(throttle, style="yellow") if throttle else "",
    ]


class FleetScreen(ConsoleScreen):
    screen_name = "fleet"
    CSS_PATH = "fleet.tcss"

    def __init__(self) -> None:
        super().__init__(name="fleet")
        self.sort_by = "host"
        self._row_keys: list[str] = []
        self._cells: dict[str, list] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="summary")
        yield Input(placeholder="filter hosts (Enter to apply, Esc to clear)", id="filter")
        yield DataTable(id="hosts", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#hosts", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        self.query_one("#filter", Input).display = False
        table.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.query_one("#hosts", DataTable).focus()

    def key_escape(self) -> None:
        field = self.query_one("#filter", Input)
        if field.display:
            field.value = ""
            field.display = False
            self.query_one("#hosts", DataTable).focus()
            self.app.state.filter = ""
            self.app.refresh_screen()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key in SORT_KEYS:
            self.sort_by = key
            self.app.refresh_screen()

    def rows(self, state: ConsoleState) -> list[tuple[str, list]]:
        snaps = [s for s in state.hosts.values() if state.filter.lower() in s.name.lower()]
        order = {
            "host": lambda s: s.name,
            "cpu": lambda s: -(s.host.get("cpu_pct") or 0),
            "mem": lambda s: -(s.host.get("mem_pct") or 0),
            "gpu": lambda s: -max((g.get("util_gpu") or 0 for g in s.gpus), default=0),
        }[self.sort_by]
        out = []
        for s in sorted(snaps, key=order):
            out.append((s.name, host_cells(s)))
            out += [(f"{s.name}/{g['uuid']}", gpu_cells(s, g)) for g in s.gpus]
        return out

    def show(self, state: ConsoleState) -> None:
        table = self.query_one("#hosts", DataTable)
        up = sum(s.connected for s in state.hosts.values())
        gpus = sum(len(s.gpus) for s in state.hosts.values())
        self.query_one("#summary", Static).update(
            f" {up}/{len(state.hosts)} hosts connected · {gpus} GPUs · sorted by {self.sort_by}"
            + (f" · filter '{state.filter}'" if state.filter else "")
        )
        rows = self.rows(state)
        keys = [k for k, _ in rows]
        if keys == self._row_keys:
            # Same rows in the same order: change only the cells whose value changed.
            for key, cells in rows:
                before = self._cells.get(key, [])
                for i, (column, value) in enumerate(zip(KEYS, cells, strict=True)):
                    if i >= len(before) or before[i] != value:
                        table.update_cell(key, column, value)
                self._cells[key] = cells
            return
        cursor = table.cursor_row
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        self._row_keys = keys
        self._cells = dict(rows)
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
