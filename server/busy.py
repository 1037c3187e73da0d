"""Occurrences of stored calendar items (recurring ones expanded, capped), and busy time.

Expanding a recurrence is the costly part, so expansions are cached per process by
(etag, first day): the etag is a hash of the text, so a changed item never hits again.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import icalendar
import recurring_ical_events

from server.ical import as_utc

MAX_OCCURRENCES = 1000
CACHED_DAYS = 400


@dataclass(frozen=True, order=True)
class BusyBlock:
    starts_at: dt.datetime
    ends_at: dt.datetime
    uid: str


@dataclass(frozen=True)
class Occurrence:
    starts_at: dt.datetime
    ends_at: dt.datetime
    uid: str
    busy: bool  # opaque and not cancelled


@dataclass(frozen=True)
class Expansion:
    occurrences: tuple[Occurrence, ...]
    zoned: bool  # every occurrence starts at a zoned time (no floating or all-day times)


def expand(text: str, start: dt.datetime, end: dt.datetime, cap: int = MAX_OCCURRENCES) -> Expansion:
    """Every occurrence of one stored object that meets [start, end)."""
    calendar = icalendar.Calendar.from_ical(text)
    query = recurring_ical_events.of(calendar, skip_bad_series=True)
    found = []
    zoned = True
    for event in itertools.islice(query.between(start, end), cap):
        begin = event.get("dtstart")
        if begin is None:
            continue
        is_datetime = isinstance(begin.dt, dt.datetime)
        zoned = zoned and is_datetime and begin.dt.tzinfo is not None
        starts_at = as_utc(begin.dt)
        finish = event.get("dtend")
        if finish is not None:
            ends_at = as_utc(finish.dt)
        elif event.get("duration") is not None:
            ends_at = starts_at + event.get("duration").dt
        else:
            ends_at = starts_at + (dt.timedelta(0) if is_datetime else dt.timedelta(days=1))
        busy = (str(event.get("transp", "OPAQUE")).upper() != "TRANSPARENT"
                and str(event.get("status", "")).upper() != "CANCELLED")
        found.append(Occurrence(starts_at, ends_at, str(event.get("uid", "")), busy))
    return Expansion(tuple(found), zoned)


def busy_blocks(text: str, start: dt.datetime, end: dt.datetime,
                cap: int = MAX_OCCURRENCES) -> Iterator[BusyBlock]:
    """Opaque, non-cancelled occurrences of one stored object that meet [start, end)."""
    for occurrence in expand(text, start, end, cap).occurrences:
        if occurrence.busy and occurrence.ends_at > occurrence.starts_at:
            yield BusyBlock(occurrence.starts_at, occurrence.ends_at, occurrence.uid)


class ExpansionCache:
    """Expansions over [day, day + CACHED_DAYS) by (etag, day)."""

    def __init__(self, size: int = 4096) -> None:
        self._entries: OrderedDict[tuple[str, dt.date], Expansion] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def covers(self, start: dt.datetime, end: dt.datetime) -> bool:
        """A bounded range this cache can answer (open-ended searches are not)."""
        return (start.year >= 1970 and start < end
                and end <= self.first_moment(start.date()) + dt.timedelta(days=CACHED_DAYS))

    @staticmethod
    def first_moment(day: dt.date) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)

    def get(self, etag: str, text: str, day: dt.date) -> Expansion:
        key = (etag, day)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        start = self.first_moment(day)
        found = expand(text, start, start + dt.timedelta(days=CACHED_DAYS))
        with self._lock:
            self._entries[key] = found
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return found


EXPANSIONS = ExpansionCache()
