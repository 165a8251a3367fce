"""Five-field cron schedules (minute hour day month weekday) in UTC, for `[[batch]]` entries.
Pure: parse, and find the latest firing at or before a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7))


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"{name}: step {step_text!r} is not a positive whole number")
            step = int(step_text)
        if body == "*":
            start, stop = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            if not (a.isdigit() and b.isdigit()):
                raise ValueError(f"{name}: {body!r} is not a range like 1-5")
            start, stop = int(a), int(b)
        elif body.isdigit():
            start = stop = int(body)
            if step_text:
                stop = high
        else:
            raise ValueError(f"{name}: {part!r} is not a number, a range, a list or *")
        if not (low <= start <= stop <= high):
            raise ValueError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A five-field cron schedule (minute hour day month weekday), in UTC. Weekday 0 and 7
    are Sunday; as in Vixie cron, a restricted day and weekday match either."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(
                f"cron {text!r}: five fields (minute hour day month weekday), e.g. '30 0 * * *'"
            )
        sets = [_field(p, *spec) for p, spec in zip(parts, FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        # Vixie cron: a day or weekday field that starts with `*` (`*`, `*/2`) does not count
        # as restricted, so the other one decides alone.
        return cls(
            sets[0],
            sets[1],
            sets[2],
            sets[3],
            weekdays,
            parts[2].startswith("*"),
            parts[4].startswith("*"),
        )

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday

    def latest_at_or_before(self, now: datetime, horizon_days: int = 400) -> datetime | None:
        """The last time the schedule fired at or before `now` (naive UTC), within the horizon."""
        now = now.replace(second=0, microsecond=0)
        day = now.replace(hour=0, minute=0)
        for back in range(horizon_days + 1):
            d = day - timedelta(days=back)
            if not self._day_matches(d):
                continue
            for hour in sorted(self.hours, reverse=True):
                for minute in sorted(self.minutes, reverse=True):
                    at = d.replace(hour=hour, minute=minute)
                    if at <= now:
                        return at
        return None


def check_cron(text: str) -> str:
    Cron.parse(text)
    return text
