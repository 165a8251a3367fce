"""Fleet: every host, its CPU, memory, GPUs, and recent history, sortable and filterable.

A host's rows are rebuilt only when its snapshot changed, and the table draws only the rows
on screen (console/widgets/fleet_table.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.markup import escape
from textual.widgets import Footer, Header, Static

from console.poller import HostSnapshot
from console.screens.base import ConsoleScreen, FilterInput
from console.state import ConsoleState
from console.widgets.fleet_table import FleetTable, LazyCells, Row
from console.widgets.text import gib, num, pct, sparkline

SORT_KEYS = ("host", "cpu", "mem", "gpu")
COLUMNS = [  # key, label, width
    ("host", "HOST", 24),
    ("state", "STATE", 16),
    ("poll", "POLL ms", 7),
    ("cpu", "CPU", 6),
    ("cpu_hist", "CPU history", 20),
    ("mem", "MEM", 6),
    ("mem_hist", "MEM history", 12),
    ("load", "LOAD", 6),
    ("gpu", "GPU", 6),
    ("gmem", "GPU MEM", 11),
    ("temp", "TEMP", 5),
    ("power", "POWER", 6),
    ("procs", "MODEL VERSIONS ON GPU", 26),
    ("throttle", "ERRORS / THROTTLE", 40),
    ("gpu_hist", "GPU history", 20),
]
# The narrower the terminal, the more history goes, so what a GPU runs and its errors (XID,
# ECC) stay on screen.
DROP_BELOW = [
    (200, {"poll", "cpu_hist", "mem_hist"}),
    (140, {"load", "gpu_hist"}),
]


def host_state(s: HostSnapshot) -> Text:
    if s.connected:
        return Text("up", style="green")
    if s.retry_in_s:
        return Text(f"down, retry {s.retry_in_s:.0f}s", style="red")
    return Text("connecting", style="yellow")


def host_label(s: HostSnapshot) -> str:
    """The connection name, and the host's own hostname when it says something more (a
    fleet of `localhost` tunnels is told apart by what each agent calls its host)."""
    own = s.info.hostname if s.info else None
    return s.name if not own or own == s.name else f"{s.name} ({own})"


def host_cells(s: HostSnapshot) -> dict[str, Any]:
    h = s.host
    gpu_status = s.info.gpu_status if s.info else ""
    return {
        "host": host_label(s),
        "state": host_state(s),
        "poll": num(s.poll_ms, "{:.0f}"),
        "cpu": pct(h.get("cpu_pct")),
        "cpu_hist": sparkline(s.cpu_history),
        "mem": pct(h.get("mem_pct")),
        "mem_hist": sparkline(s.mem_history, width=12),
        "load": num(h.get("load1"), "{:.2f}"),
        "gpu": "none" if gpu_status.startswith("no GPU") else "",
        "throttle": Text(s.error or "", style="red") if not s.connected else "",
    }


def gpu_users(processes: list[dict[str, Any]] | None) -> str:
    """`digits/v2 1.0G, 1 other`: the GPU memory of each model version's replicas (the agent
    names a process when it is a replica), and how many other processes use the GPU."""
    if not processes:
        return ""
    by_version: dict[str, int] = {}
    others = 0
    for p in processes:
        if p.get("model"):
            key = f"{p['model']}/{p['version']}"
            by_version[key] = by_version.get(key, 0) + int(p.get("used_mem") or 0)
        else:
            others += 1
    parts = [f"{k} {gib(v)}" for k, v in sorted(by_version.items())]
    if others:
        parts.append(f"{others} other")
    return ", ".join(parts)


def gpu_errors(g: dict[str, Any]) -> str:
    """XID events, uncorrected ECC errors and remapped rows: what says a GPU is failing."""
    out = []
    if g.get("xid_errors"):
        out.append(f"XID {g.get('last_xid')} x{g['xid_errors']}")
    if g.get("ecc_uncorrected"):
        out.append(f"ECC {g['ecc_uncorrected']}")
    if g.get("remapped_rows"):
        out.append(f"remapped {g['remapped_rows']}")
    return " ".join(out)


def gpu_cells(s: HostSnapshot, g: dict[str, Any]) -> dict[str, Any]:
    throttle = ",".join(g.get("throttle_reasons") or [])
    errors = gpu_errors(g)
    # One style per cell (the table draws a cell's base style): red when the GPU errs.
    problems = Text(f"{errors} {throttle}".strip(), style="red" if errors else "yellow")
    return {
        "host": f" └ gpu{g['gpu_index']}",
        "state": (g.get("name") or "")[:16],
        "gpu": pct(g.get("util_gpu")),
        "gmem": f"{gib(g.get('mem_used'))}/{gib(g.get('mem_total'))}",
        "temp": num(g.get("temp_c"), "{:.0f}C"),
        "power": num(g.get("power_w"), "{:.0f}W"),
        "gpu_hist": sparkline(s.gpu_history.get(g["uuid"], [])),
        "procs": gpu_users(g.get("processes")),
        "throttle": problems,
    }


class FleetScreen(ConsoleScreen):
    screen_name = "fleet"
    main = "#hosts"
    DEFAULT_CSS = """
    FleetScreen #summary { height: 1; background: $boost; }
    FleetScreen #hosts { height: 1fr; scrollbar-size: 1 1; }
    """

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.sort_by = "host"
        self.keys: list[str] = []
        self._by_host: dict[str, tuple[HostSnapshot, list[str], list[Row]]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="summary")
        yield FilterInput("filter hosts (Enter applies, Esc clears)")
        yield FleetTable(id="hosts")
        yield Footer()

    def on_mount(self) -> None:
        self._set_columns(self.app.size.width)
        self.focus_main()

    def _set_columns(self, width: int) -> None:
        dropped = set().union(*(keys for below, keys in DROP_BELOW if width < below))
        keys = [k for k, _, _ in COLUMNS if k not in dropped]
        if keys == self.keys:
            return
        self.query_one("#hosts", FleetTable).set_columns([c for c in COLUMNS if c[0] in keys])
        self.keys = keys

    def on_resize(self, event: events.Resize) -> None:
        before = self.keys
        self._set_columns(event.size.width)
        if self.keys != before:
            self.redraw()

    def on_fleet_table_header_selected(self, event: FleetTable.HeaderSelected) -> None:
        if event.key in SORT_KEYS:
            self.sort_by = event.key
            self.redraw()

    def rows(self) -> list[Row]:
        """(row key, cells in the order of the visible columns)."""
        snaps = [s for s in self.state.hosts.values() if self.matches(host_label(s))]
        order = {
            "host": lambda s: s.name,
            "cpu": lambda s: -(s.host.get("cpu_pct") or 0),
            "mem": lambda s: -(s.host.get("mem_pct") or 0),
            "gpu": lambda s: -max((g.get("util_gpu") or 0 for g in s.gpus), default=0),
        }[self.sort_by]
        out = []
        for s in sorted(snaps, key=order):
            out += self._host_rows(s)
        return out

    def _host_rows(self, s: HostSnapshot) -> list[Row]:
        """A host's rows, rebuilt only when its snapshot (a new object per poll) changed,
        and their cells only when drawn."""
        cached = self._by_host.get(s.name)
        if cached is not None and cached[0] is s and cached[1] == self.keys:
            return cached[2]
        keys = list(self.keys)

        def pick(cells: dict[str, Any]) -> list[Any]:
            return [cells.get(k, "") for k in keys]

        def gpu_row(g: dict[str, Any]) -> list[Any]:
            return pick(gpu_cells(s, g))

        rows: list[Row] = [(s.name, LazyCells(lambda: pick(host_cells(s))))]
        for g in s.gpus:
            rows.append((f"{s.name}/{g['uuid']}", LazyCells(partial(gpu_row, g))))
        self._by_host[s.name] = (s, keys, rows)
        return rows

    def show(self) -> None:
        hosts = self.state.hosts
        up = sum(s.connected for s in hosts.values())
        gpus = sum(len(s.gpus) for s in hosts.values())
        self.query_one("#summary", Static).update(
            f" {up}/{len(hosts)} hosts connected · {gpus} GPUs · sorted by {self.sort_by}"
            + (f" · filter '{escape(self.filter_text)}'" if self.filter_text else ""),
            layout=False,  # one line, always: no need to lay the screen out again
        )
        self.query_one("#hosts", FleetTable).set_rows(self.rows())
