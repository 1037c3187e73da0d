"""Dates, times and numbers typed or sent by people and programs, read the same way everywhere.

Every face reads such values through these functions, so no value that Python can parse
but the server cannot compute with (a date in year 9999 plus a week, a time in year 1)
reaches the domain: it is refused with `OutOfRange`, an InvalidInput (400) that says
which range is supported. Unreadable text gives None: the caller decides whether a
missing value is an error or means "the default".
"""

from __future__ import annotations

import datetime as dt

from server.errors import InvalidInput

EARLIEST = dt.datetime(1000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)  # exclusive
MAX_TEXT = 64  # longer "dates" and "numbers" are not read at all


class OutOfRange(InvalidInput):
    """A readable value the server cannot work with (outside the supported range)."""


def supported(moment: dt.date | dt.datetime) -> bool:
    """Whether a date or time lies in the supported years (EARLIEST..LATEST)."""
    return EARLIEST.year <= moment.year < LATEST.year


def require_supported(moment: dt.date | dt.datetime, what: str) -> None:
    if not supported(moment):
        raise OutOfRange(f"{what} {moment.isoformat()} is outside the supported years "
                         f"{EARLIEST.year}–{LATEST.year - 1}; use a date in that range.")


def parse_day(text: str | None, what: str = "The date") -> dt.date | None:
    """An ISO date (2031-03-03); None when empty or unreadable; OutOfRange when unsupported."""
    value = (text or "").strip()
    if not value or len(value) > MAX_TEXT:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    require_supported(day, what)
    return day


def parse_moment(text: str | None, what: str = "The time") -> dt.datetime | None:
    """An ISO date-time with an offset, in UTC; None when empty, unreadable or without an
    offset; OutOfRange when outside the supported years (in UTC and in its own zone)."""
    value = (text or "").strip()
    if not value or len(value) > MAX_TEXT:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    require_supported(moment, what)
    try:
        utc = moment.astimezone(dt.UTC)
    except OverflowError as exc:
        raise OutOfRange(f"{what} {value!r} is outside the supported years "
                         f"{EARLIEST.year}–{LATEST.year - 1}.") from exc
    require_supported(utc, what)
    return utc


def parse_int(text: str | None, low: int, high: int, what: str = "The number") -> int | None:
    """A whole number; None when empty or unreadable; OutOfRange outside [low, high]."""
    value = (text or "").strip()
    if not value or len(value) > MAX_TEXT:
        return None
    try:
        number = int(value, 10)
    except ValueError:
        return None
    if not low <= number <= high:
        raise OutOfRange(f"{what} must be between {low} and {high} (got {number}).")
    return number
