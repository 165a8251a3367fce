"""Cell renderings of the console: sparklines, percentages and sizes."""

from console.widgets.text import gib, num, pct, sparkline


def test_sparkline_maps_the_range_onto_eight_bars_and_clamps():
    assert sparkline([0, 12.5, 25, 37.5, 50, 62.5, 75, 87.5, 100]) == "▁▂▃▄▅▆▇██"
    assert sparkline([-5, 250]) == "▁█"  # out of range: clamped, never an IndexError
    assert sparkline([]) == ""


def test_sparkline_keeps_the_most_recent_values():
    assert sparkline([100] * 5 + [0] * 20, width=20) == "▁" * 20
    assert sparkline([0, 5, 10], lo=0, hi=10, width=2) == "▅█"


def test_numbers_show_a_dash_when_missing():
    assert pct(None) == num(None) == gib(None) == "-"
    assert pct(7.25) == "  7.2%"
    assert gib(3 << 30) == "3.0G"
