"""What recurrences fieldcal accepts, and how an expansion is kept to the queried window.

Policy (enforced when an object is stored, see `check`):

- times (DTSTART, DTEND, DUE, RECURRENCE-ID, RDATE, EXDATE, UNTIL) lie in the supported
  years (`server.inputs`: 1000 to 2999);
- a rule repeats at most hourly: FREQ=SECONDLY and FREQ=MINUTELY are refused, and so are
  BYMINUTE or BYSECOND with more than one value (they repeat within an hour);
- at most MAX_COUNT occurrences when a rule has COUNT; one RRULE per component, no EXRULE;
- a recurring component has a DTSTART (or, for a task, a DUE) to count from.

Expansion (`shift_to`) never walks a rule from a distant DTSTART: a rule without COUNT
is moved forward in whole periods to just before the window, so the cost of a query
depends on the window, not on when the series began.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import cast

import icalendar

from server.errors import InvalidInput
from server.inputs import require_supported

MAX_COUNT = 10_000
SUB_HOURLY = frozenset({"SECONDLY", "MINUTELY"})
FIXED_PERIODS = {
    "SECONDLY": dt.timedelta(seconds=1),
    "MINUTELY": dt.timedelta(minutes=1),
    "HOURLY": dt.timedelta(hours=1),
    "DAILY": dt.timedelta(days=1),
    "WEEKLY": dt.timedelta(days=7),
}
MONTHS = {"MONTHLY": 1, "YEARLY": 12}
TIME_PROPERTIES = ("dtstart", "dtend", "due", "recurrence-id")
LIST_PROPERTIES = ("rdate", "exdate")


def _as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _moments(value: object) -> Iterator[dt.date | dt.datetime]:
    """The date or date-time values of a DTSTART-like, RDATE or EXDATE property."""
    for prop in _as_list(value):
        values = getattr(prop, "dts", None)
        if values is None:
            inner = getattr(prop, "dt", None)
            values = [] if inner is None else [prop]
        for item in values:
            inner = item.dt
            if isinstance(inner, tuple):  # a PERIOD: (start, end or duration)
                inner = inner[0]
            if isinstance(inner, dt.date):
                yield inner


def _checked_time(name: str, moment: dt.date | dt.datetime) -> None:
    require_supported(moment, name.upper())


def _rule_values(rule: icalendar.prop.vRecur, key: str) -> list:
    return list(_as_list(rule.get(key)))


def check_component(component: icalendar.cal.Component) -> None:
    """Refuse what the policy above does not accept, with a reason a person can act on."""
    name = component.name
    for prop in TIME_PROPERTIES:
        for moment in _moments(component.get(prop)):
            _checked_time(prop, moment)
    for prop in LIST_PROPERTIES:
        for moment in _moments(component.get(prop)):
            _checked_time(prop, moment)
    if component.get("exrule") is not None:
        raise InvalidInput(f"EXRULE in a {name} is not supported (RFC 5545 deprecates it); "
                           "list the excluded dates with EXDATE instead.")
    rules = _as_list(component.get("rrule"))
    if not rules:
        return
    if len(rules) > 1:
        raise InvalidInput(f"A {name} may carry one RRULE; combine the rules or add RDATEs.")
    if component.get("dtstart") is None and component.get("due") is None:
        raise InvalidInput(f"A repeating {name} needs a DTSTART (a task: DTSTART or DUE): "
                           "the RRULE counts its occurrences from it.")
    rule = rules[0]
    freq = str((_rule_values(rule, "FREQ") or [""])[0]).upper()
    if freq in SUB_HOURLY or len(_rule_values(rule, "BYMINUTE")) > 1 \
            or len(_rule_values(rule, "BYSECOND")) > 1:
        raise InvalidInput(
            f"The RRULE of this {name} repeats more often than once an hour "
            f"(FREQ={freq or '?'}); fieldcal stores events that repeat at most hourly."
        )
    if freq not in FIXED_PERIODS and freq not in MONTHS:
        raise InvalidInput(f"The RRULE of this {name} has no valid FREQ (got {freq or 'none'!r}).")
    counts = _rule_values(rule, "COUNT")
    if counts and int(counts[0]) > MAX_COUNT:
        raise InvalidInput(f"The RRULE of this {name} asks for {counts[0]} occurrences; "
                           f"at most {MAX_COUNT} are stored. Use UNTIL or a smaller COUNT.")
    for until in _rule_values(rule, "UNTIL"):
        if isinstance(until, dt.date):
            _checked_time("until", until)


def check(components: Iterable[icalendar.cal.Component]) -> None:
    for component in components:
        check_component(component)


# --------------------------------------------------------------------------- expansion


def _wall(value: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return dt.datetime(value.year, value.month, value.day)


def _target_wall(target: dt.datetime, start: dt.date | dt.datetime) -> dt.datetime:
    zone = start.tzinfo if isinstance(start, dt.datetime) else None
    if zone is None:
        return target.astimezone(dt.UTC).replace(tzinfo=None)
    return target.astimezone(zone).replace(tzinfo=None)


def _replace(component: icalendar.cal.Component, name: str, value: dt.date | dt.datetime) -> None:
    params = dict(component[name].params) if name in component else {}
    del component[name]
    if params:
        component.add(name, value, parameters=cast("dict[str, str]", params))
    else:
        component.add(name, value)


def _explicit_defaults(rule: icalendar.prop.vRecur, freq: str, start: dt.date | dt.datetime) -> None:
    """Write the BY* values a rule takes from its DTSTART, so moving DTSTART keeps them."""
    if not any(rule.get(k) for k in ("BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY")):
        if freq == "YEARLY" and not rule.get("BYMONTH"):
            rule["BYMONTH"] = [start.month]
        rule["BYMONTHDAY"] = [start.day]
    if isinstance(start, dt.datetime):
        for key, value in (("BYHOUR", start.hour), ("BYMINUTE", start.minute),
                           ("BYSECOND", start.second)):
            if not rule.get(key):
                rule[key] = [value]


def shift_to(component: icalendar.cal.Component, target: dt.datetime) -> None:
    """Move a COUNT-less rule's DTSTART forward in whole periods to shortly before `target`.

    The occurrences from `target` on stay the same; the moved DTSTART (always an instant
    that ends before `target`) may show up as an occurrence, but outside the window.
    """
    rules = _as_list(component.get("rrule"))
    start_prop = component.get("dtstart")
    if len(rules) != 1 or start_prop is None or component.get("exrule") is not None:
        return
    rule = rules[0]
    if rule.get("COUNT"):
        return
    freq = str((_rule_values(rule, "FREQ") or [""])[0]).upper()
    interval = int((_rule_values(rule, "INTERVAL") or [1])[0]) or 1
    start = start_prop.dt
    end_name = "dtend" if component.get("dtend") is not None else (
        "due" if component.get("due") is not None else None)
    end = component.get(end_name).dt if end_name else None
    length = dt.timedelta(0)
    if end is not None and type(end) is type(start):
        length = max(_wall(end) - _wall(start), dt.timedelta(0))
    elif component.get("duration") is not None:
        length = max(component.get("duration").dt, dt.timedelta(0))
    wall = _wall(start)
    goal = _target_wall(target, start) - length - dt.timedelta(days=2)
    if freq in FIXED_PERIODS:
        period = FIXED_PERIODS[freq] * interval
        goal -= period
        if goal <= wall:
            return
        moved = wall + ((goal - wall) // period) * period
    elif freq in MONTHS:
        step = MONTHS[freq] * interval
        months = (goal.year - wall.year) * 12 + goal.month - wall.month - 1
        steps = months // step
        if steps <= 0:
            return
        index = wall.year * 12 + wall.month - 1 + steps * step
        moved = dt.datetime(index // 12, index % 12 + 1, 1)
        _explicit_defaults(rule, freq, start)
    else:
        return
    if isinstance(start, dt.datetime):
        new_start: dt.date | dt.datetime = moved.replace(tzinfo=start.tzinfo)
    else:
        new_start = moved.date()
    if end_name is not None and end is not None and type(end) is type(start):
        if isinstance(end, dt.datetime):
            new_end: dt.date | dt.datetime = (moved + length).replace(tzinfo=end.tzinfo)
        else:
            new_end = (moved + length).date()
        _replace(component, end_name, new_end)
    _replace(component, "dtstart", new_start)
