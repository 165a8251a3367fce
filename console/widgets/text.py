"""Small text renderings for table cells: sparklines, percentages, sizes."""

from __future__ import annotations

from rich.text import Text

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], lo: float = 0.0, hi: float = 100.0, width: int = 20) -> str:
    scale = len(BARS) / max(hi - lo, 1e-9)
    top = len(BARS) - 1
    return "".join(BARS[min(max(int((v - lo) * scale), 0), top)] for v in values[-width:])


def plain(value: object) -> Text:
    """Text from outside (clients, agents, Serve) for a table cell: shown as it is, never
    read as markup (a request id "[/]" would otherwise raise, "[b]" would style)."""
    return Text(str(value))


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:5.1f}%"


def num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value / (1 << 30):.1f}G"
