"""Typed reads of iCalendar properties: `icalendar` types `component[name]` as the union of
every property type, so the tests read DTSTART or SEQUENCE through these."""

from __future__ import annotations

import datetime as dt

import icalendar
from icalendar.prop import vDDDTypes, vInt


def prop_datetime(component: icalendar.cal.Component, name: str) -> dt.datetime:
    """The date-time value of a DTSTART-like property (fails the test on a DATE or a missing one)."""
    value = component[name]
    assert isinstance(value, vDDDTypes), (name, type(value))
    assert isinstance(value.dt, dt.datetime), (name, value.dt)
    return value.dt


def prop_int(component: icalendar.cal.Component, name: str) -> int:
    """The value of an INTEGER property such as SEQUENCE."""
    value = component[name]
    assert isinstance(value, vInt), (name, type(value))
    return int(value)
