"""Weekly working hours as concrete UTC intervals, in each technician's own time zone."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from server.models import WorkingHours

Interval = tuple[dt.datetime, dt.datetime]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hhmm(text: str) -> dt.time:
    hours, minutes = text.split(":")
    if int(hours) == 24 and int(minutes) == 0:
        return dt.time(23, 59, 59, 999999)
    return dt.time(int(hours), int(minutes))


def local(day: dt.date, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, at, zone).astimezone(dt.UTC)


def working_intervals(hours: Iterable[WorkingHours], zone: ZoneInfo, start: dt.datetime,
                      end: dt.datetime) -> list[Interval]:
    """The technician's working time around [start, end), as UTC intervals, earliest first."""
    first = start.astimezone(zone).date() - dt.timedelta(days=1)
    last = end.astimezone(zone).date() + dt.timedelta(days=1)
    by_weekday: dict[int, list[WorkingHours]] = defaultdict(list)
    for row in hours:
        by_weekday[row.weekday].append(row)
    intervals = []
    day = first
    while day <= last:
        for row in by_weekday.get(day.weekday(), []):
            begin = local(day, parse_hhmm(row.starts), zone)
            finish = local(day, parse_hhmm(row.ends), zone)
            if finish > begin:
                intervals.append((begin, finish))
        day += dt.timedelta(days=1)
    return sorted(intervals)


def merged(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted intervals with touching or overlapping ones joined."""
    out: list[list[dt.datetime]] = []
    for begin, finish in sorted(intervals):
        if out and begin <= out[-1][1]:
            out[-1][1] = max(out[-1][1], finish)
        else:
            out.append([begin, finish])
    return [(a, b) for a, b in out]


def within(intervals: Iterable[Interval], start: dt.datetime, end: dt.datetime) -> bool:
    """True if [start, end] lies inside the working time (touching intervals count as one)."""
    return any(begin <= start and end <= finish for begin, finish in merged(intervals))
