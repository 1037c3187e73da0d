"""Recurring items in CalDAV queries, at a cost bounded by the queried window.

Radicale walks a rule from its DTSTART when it filters or expands an item itself; the
parsed object it gets here (`recurrence_view`) has its rules moved to just before the
window, while clients still receive the stored text. Time ranges over recurring events
are answered from the window-bounded expansion of `server.busy` where possible.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import icalendar
import vobject

from server import recurrence
from server.busy import EXPANSIONS, Occurrence, expand
from server.errors import Forbidden

RECURRING = re.compile(r"^(?:RRULE|RDATE)[;:]", re.MULTILINE)
MAX_EXPANDED = 500  # occurrences of one event in an expanded REPORT


def is_recurring(text: str) -> bool:
    return RECURRING.search(text) is not None


def recurrence_view(text: str, window_start: dt.datetime) -> Any:
    """A vobject reading of `text` whose COUNT-less rules begin shortly before the window."""
    calendar = icalendar.Calendar.from_ical(text)
    for component in calendar.subcomponents:
        if component.name in ("VEVENT", "VTODO", "VJOURNAL") and component.get("recurrence-id") is None:
            recurrence.shift_to(component, window_start)
    return vobject.readOne(calendar.to_ical().decode("utf-8"))


def earliest(*moments: dt.datetime | None) -> dt.datetime | None:
    """The earliest of the known start bounds of a query (time range, expand range)."""
    known = [m for m in moments if m is not None]
    return min(known) if known else None


def check_expansion_size(href: str, text: str, start: dt.datetime, end: dt.datetime) -> None:
    """Refuse (CALDAV:max-instances, RFC 4791) to expand one event into too many occurrences."""
    found = expand(text, start, end, cap=MAX_EXPANDED + 1).occurrences
    if len(found) > MAX_EXPANDED:
        raise Forbidden(
            f"The event {href!r} repeats more than {MAX_EXPANDED} times between "
            f"{start:%Y-%m-%d} and {end:%Y-%m-%d}; ask to expand a shorter time range "
            "(or ask without <C:expand> and expand on the device).")


def _meets(occurrence: Occurrence, start: dt.datetime, end: dt.datetime) -> bool:
    return ((occurrence.starts_at < end and occurrence.ends_at > start)
            or (occurrence.starts_at == occurrence.ends_at and start <= occurrence.starts_at < end))


def meets_range(etag: str, text: str, start: dt.datetime, end: dt.datetime) -> bool | None:
    """Whether a recurring event has an occurrence in [start, end); None: let Radicale decide
    (floating or all-day times, which Radicale reads its own way)."""
    expansion = EXPANSIONS.between(etag, text, start, end)
    if not expansion.zoned:
        return None
    return any(_meets(o, start, end) for o in expansion.occurrences)
