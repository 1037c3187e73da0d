"""Occurrences of stored calendar items (recurring ones expanded, capped), and busy time.

The cost of an expansion is bounded by the window and the cap (see `expand`).

Expanding a recurrence is the costly part, so expansions are cached per process by
(etag, first day): the etag is a hash of the text, so a changed item never hits again.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import icalendar
import recurring_ical_events

from server import recurrence
from server.errors import InvalidInput
from server.ical import as_utc

MAX_OCCURRENCES = 1000
CACHED_DAYS = 400
CHUNK = dt.timedelta(days=1)  # the first chunk of an expansion; sparse chunks double
DENSE_CHUNK = 64  # occurrences in a chunk from which it stops growing


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
    summary: str = ""
    tentative: bool = False  # STATUS:TENTATIVE


@dataclass(frozen=True)
class Expansion:
    occurrences: tuple[Occurrence, ...]
    zoned: bool  # every occurrence starts at a zoned time (no floating or all-day times)


def _occurrence(event: icalendar.cal.Component) -> Occurrence | None:
    begin = event.get("dtstart")
    if begin is None:
        return None
    is_datetime = isinstance(begin.dt, dt.datetime)
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
    summary = str(event.get("summary", ""))[:200]
    tentative = str(event.get("status", "")).upper() == "TENTATIVE"
    return Occurrence(starts_at, ends_at, str(event.get("uid", "")), busy, summary, tentative)


def occurrence_of(event: icalendar.cal.Component) -> Occurrence | None:
    """The times and state of one component as it stands (no recurrence applied)."""
    return _occurrence(event)


def _masters(calendar: icalendar.Calendar) -> list[icalendar.cal.Component]:
    return [c for c in calendar.subcomponents
            if c.name in ("VEVENT", "VTODO", "VJOURNAL") and c.get("recurrence-id") is None]


def _flatten_dense(calendar: icalendar.Calendar, start: dt.datetime, end: dt.datetime) -> None:
    """A series stored before the recurrence policy that repeats within the hour: busy
    for the whole window from its start (walking it would cost more than any answer is worth)."""
    for component in _masters(calendar):
        try:
            recurrence.check_component(component)
        except ValueError:
            continue  # a broken property: the expansion skips the series
        except InvalidInput:
            begin = component.get("dtstart")
            if component.get("rrule") is None or begin is None:
                continue
            first = max(as_utc(begin.dt), start)
            for name in ("rrule", "exrule", "rdate", "exdate", "dtstart", "dtend", "duration", "due"):
                component.pop(name, None)
            component.add("dtstart", first)
            component.add("dtend", max(end, first + dt.timedelta(seconds=1)))


def expand(text: str, start: dt.datetime, end: dt.datetime, cap: int = MAX_OCCURRENCES) -> Expansion:
    """Every occurrence of one stored object that meets [start, end), at most `cap`.

    The window is walked in chunks (growing while they are sparse); before each chunk
    every rule is moved forward to it (`recurrence.shift_to`), so the work is bounded
    by the chunk's occurrences, never by how long ago a series began.
    """
    calendar = icalendar.Calendar.from_ical(text)
    _flatten_dense(calendar, start, end)
    masters = _masters(calendar)
    found: dict[tuple[str, dt.datetime, dt.datetime], Occurrence] = {}
    zoned = True
    span = CHUNK
    cursor = start
    while cursor < end and len(found) < cap:
        stop = min(end, cursor + span)
        for component in masters:
            recurrence.shift_to(component, cursor)
        query = recurring_ical_events.of(calendar, skip_bad_series=True)
        events = query.between(cursor, stop)
        for event in events:
            occurrence = _occurrence(event)
            if occurrence is None:
                continue
            begin = event.get("dtstart").dt
            zoned = zoned and isinstance(begin, dt.datetime) and begin.tzinfo is not None
            found.setdefault((occurrence.uid, occurrence.starts_at, occurrence.ends_at), occurrence)
        if len(events) < DENSE_CHUNK:
            span *= 2
        cursor = stop
    ordered = sorted(found.values(), key=lambda o: (o.starts_at, o.ends_at))[:cap]
    return Expansion(tuple(ordered), zoned)


def busy_blocks(text: str, start: dt.datetime, end: dt.datetime,
                cap: int = MAX_OCCURRENCES) -> Iterator[BusyBlock]:
    """Opaque, non-cancelled occurrences of one stored object that meet [start, end)."""
    for occurrence in expand(text, start, end, cap).occurrences:
        if occurrence.busy and occurrence.ends_at > occurrence.starts_at:
            yield BusyBlock(occurrence.starts_at, occurrence.ends_at, occurrence.uid)


def occurrences_size(occurrences: tuple[Occurrence, ...]) -> int:
    """Bytes of memory a tuple of occurrences takes (the tuple, occurrences, times and texts)."""
    total = sys.getsizeof(occurrences)
    for o in occurrences:
        total += (sys.getsizeof(o) + sys.getsizeof(vars(o)) + sys.getsizeof(o.starts_at)
                  + sys.getsizeof(o.ends_at) + sys.getsizeof(o.uid) + sys.getsizeof(o.summary))
    return total


def memory_size(expansion: Expansion) -> int:
    """Bytes of memory an expansion takes (its tuple, occurrences, times and texts)."""
    return sys.getsizeof(expansion) + occurrences_size(expansion.occurrences)


ENTRY_OVERHEAD = 200  # an OrderedDict slot and its link, the (expansion, size) pair, a day


class ExpansionCache:
    """Expansions over [day, day + CACHED_DAYS) by (etag, day); a range is answered by
    any cached expansion of the same item that starts before it and reaches its end.
    Bounded in bytes of memory (`memory_size`); the least recently used go first."""

    def __init__(self, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._entries: OrderedDict[tuple[str, dt.date], tuple[Expansion, int]] = OrderedDict()
        self._days: dict[str, set[dt.date]] = {}
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes held now."""
        return self._bytes

    def covers(self, start: dt.datetime, end: dt.datetime) -> bool:
        """A bounded range this cache can answer (open-ended searches are not)."""
        return (start.year >= 1970 and start < end
                and end <= self.first_moment(start.date()) + dt.timedelta(days=CACHED_DAYS))

    @staticmethod
    def first_moment(day: dt.date) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)

    def _reaches(self, day: dt.date, found: Expansion, end: dt.datetime) -> bool:
        """Whether the expansion from `day` holds every occurrence before `end`."""
        if end > self.first_moment(day) + dt.timedelta(days=CACHED_DAYS):
            return False
        return len(found.occurrences) < MAX_OCCURRENCES or found.occurrences[-1].starts_at >= end

    def get(self, etag: str, text: str, day: dt.date) -> Expansion:
        key = (etag, day)
        with self._lock:
            held = self._entries.get(key)
            if held is not None:
                self._entries.move_to_end(key)
                return held[0]
        start = self.first_moment(day)
        found = expand(text, start, start + dt.timedelta(days=CACHED_DAYS))
        size = memory_size(found) + sys.getsizeof(key) + ENTRY_OVERHEAD
        if size > self._max_bytes:
            return found
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (found, size)
                self._bytes += size
                self._days.setdefault(etag, set()).add(day)
            while self._bytes > self._max_bytes:
                (old_etag, old_day), (_, old_size) = self._entries.popitem(last=False)
                self._bytes -= old_size
                days = self._days.get(old_etag)
                if days is not None:
                    days.discard(old_day)
                    if not days:
                        del self._days[old_etag]
        return found

    def between(self, etag: str, text: str, start: dt.datetime, end: dt.datetime) -> Expansion:
        """Occurrences meeting [start, end) (and maybe more around it)."""
        if not self.covers(start, end):
            return expand(text, start, end)
        with self._lock:
            for day in sorted(self._days.get(etag, ()), reverse=True):
                held = self._entries.get((etag, day))
                if day <= start.date() and held is not None and self._reaches(day, held[0], end):
                    self._entries.move_to_end((etag, day))
                    return held[0]
        found = self.get(etag, text, start.date())
        return found if self._reaches(start.date(), found, end) else expand(text, start, end)


EXPANSIONS = ExpansionCache()
