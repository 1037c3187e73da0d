"""Busy time of stored calendar items, recurring ones expanded (with a cap)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import icalendar
import recurring_ical_events

from server.ical import as_utc

MAX_OCCURRENCES = 1000


@dataclass(frozen=True, order=True)
class BusyBlock:
    starts_at: dt.datetime
    ends_at: dt.datetime
    uid: str


def busy_blocks(
    text: str, start: dt.datetime, end: dt.datetime, cap: int = MAX_OCCURRENCES
) -> Iterator[BusyBlock]:
    """Opaque, non-cancelled occurrences of one stored object that meet [start, end)."""
    calendar = icalendar.Calendar.from_ical(text)
    query = recurring_ical_events.of(calendar, skip_bad_series=True)
    for event in itertools.islice(query.between(start, end), cap):
        if str(event.get("transp", "OPAQUE")).upper() == "TRANSPARENT":
            continue
        if str(event.get("status", "")).upper() == "CANCELLED":
            continue
        begin = event.get("dtstart")
        if begin is None:
            continue
        finish = event.get("dtend")
        starts_at = as_utc(begin.dt)
        if finish is not None:
            ends_at = as_utc(finish.dt)
        elif event.get("duration") is not None:
            ends_at = starts_at + event.get("duration").dt
        else:
            is_date = not isinstance(begin.dt, dt.datetime)
            ends_at = starts_at + (dt.timedelta(days=1) if is_date else dt.timedelta(0))
        if ends_at > starts_at:
            yield BusyBlock(starts_at, ends_at, str(event.get("uid", "")))
