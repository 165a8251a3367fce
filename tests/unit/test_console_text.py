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


def test_a_gpu_row_names_the_model_versions_on_it_and_its_errors():
    from console.screens.fleet import gpu_errors, gpu_users

    procs = [
        {"pid": 1, "used_mem": 1 << 30, "model": "digits", "version": "v2", "replica": "a"},
        {"pid": 2, "used_mem": 1 << 29, "model": "digits", "version": "v2", "replica": "b"},
        {"pid": 3, "used_mem": 1 << 20},
    ]
    assert gpu_users(procs) == "digits/v2 1.5G, 1 other"
    assert gpu_users(None) == ""
    assert gpu_errors({"xid_errors": 3, "last_xid": 79, "ecc_uncorrected": 2}) == "XID 79 x3 ECC 2"
    assert gpu_errors({"xid_errors": 0, "remapped_rows": 1}) == "remapped 1"


def test_the_accuracy_trend_shows_a_fall_and_blanks_what_is_unknown():
    from datetime import UTC, datetime

    from agent.schemas.feedback import AccuracyPoint, VersionAccuracy
    from console.screens.models import accuracy_trend

    t = datetime(2026, 12, 1, tzinfo=UTC)
    points = [
        AccuracyPoint(start=t, labelled=50, accuracy=0.97),
        AccuracyPoint(start=t, labelled=0),  # nothing known in these 5 minutes
        AccuracyPoint(start=t, labelled=0, estimated=0.90),  # only the estimate yet
        AccuracyPoint(start=t, labelled=40, accuracy=0.40),
    ]
    v = VersionAccuracy(version="v1", labelled=90, calls=100, coverage=0.9, points=points)
    trend = accuracy_trend(v)
    assert len(trend) == 4 and trend[1] == " "
    assert trend[0] == "█" and trend[3] == "▁"  # the hour's high, and the fall
    assert trend[0] >= trend[2] > trend[3]  # block characters rise with the value
    assert accuracy_trend(None) == "-"
    assert accuracy_trend(v.model_copy(update={"points": points[1:2]})) == "-"
