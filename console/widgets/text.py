"""Small text renderings for table cells: sparklines, percentages, sizes."""

from __future__ import annotations

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], lo: float = 0.0, hi: float = 100.0, width: int = 20) -> str:
    scale = len(BARS) / max(hi - lo, 1e-9)
    top = len(BARS) - 1
    return "".join(BARS[min(max(int((v - lo) * scale), 0), top)] for v in values[-width:])


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:5.1f}%"


def num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value / (1 << 30):.1f}G"
