"""Exact time range of a simple stored event, read from its text without parsing iCalendar.

"Simple": one VEVENT, DTSTART and DTEND as UTC or IANA-zoned date-times, no
recurrence. Anything else returns None and Radicale filters the object itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROPERTY = re.compile(r"^(DTSTART|DTEND)((?:;[^:\r\n]*)?):([0-9]{8}T[0-9]{6})(Z?)\r?$",
                      re.MULTILINE)
NOT_SIMPLE = re.compile(r"^(?:RRULE|RDATE|EXDATE|RECURRENCE-ID|DURATION)[;:]", re.MULTILINE)
TZID = re.compile(r";TZID=\"?([^\";:]+)\"?")
FOLD = re.compile(r"\r?\n[ \t]")
MAX_KEPT = 20_000  # exact ranges kept by etag (~6 MB at most)
_UNKNOWN = object()
_RANGES: dict[str, object] = {}


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _moment(params: str, value: str, utc: str) -> dt.datetime | None:
    try:  # the pattern gave 8 digits, T, 6 digits
        naive = dt.datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]),
                            int(value[9:11]), int(value[11:13]), int(value[13:15]))
    except ValueError:
        return None
    rest = TZID.sub("", params, count=1).upper().replace(";VALUE=DATE-TIME", "")
    if rest:
        return None  # other parameters (VALUE=DATE, ...): not simple
    zone_match = TZID.search(params)
    if utc:
        return None if zone_match else naive.replace(tzinfo=dt.UTC)
    if zone_match is None:
        return None  # floating time
    zone = _zone(zone_match.group(1).strip())
    if zone is None:
        return None
    moment = naive.replace(tzinfo=zone)
    if moment.utcoffset() != moment.replace(fold=1).utcoffset():
        return None  # in a daylight-saving gap or overlap: readers differ, let Radicale decide
    return moment


def exact_range_of(etag: str, text: str) -> tuple[int, int] | None:
    """exact_range of a stored text, kept per etag (a digest of the text)."""
    found = _RANGES.get(etag, _UNKNOWN)
    if found is _UNKNOWN:
        if len(_RANGES) >= MAX_KEPT:
            _RANGES.clear()
        found = _RANGES[etag] = exact_range(text)
    return found  # type: ignore[return-value]  # not _UNKNOWN here


def exact_range(text: str) -> tuple[int, int] | None:
    """(start, end) POSIX timestamps of a simple event, else None."""
    begin = text.find("BEGIN:VEVENT")
    if begin == -1 or text.find("BEGIN:VEVENT", begin + 1) != -1:
        return None
    end = text.find("END:VEVENT", begin)
    if end == -1:
        return None
    block = FOLD.sub("", text[begin:end])
    if NOT_SIMPLE.search(block):
        return None
    found: dict[str, dt.datetime] = {}
    for name, params, value, utc in PROPERTY.findall(block):
        if name in found:
            return None
        moment = _moment(params, value, utc)
        if moment is None:
            return None
        found[name] = moment
    start, finish = found.get("DTSTART"), found.get("DTEND")
    if start is None or finish is None or finish <= start:
        return None
    return math.floor(start.timestamp()), math.ceil(finish.timestamp())
