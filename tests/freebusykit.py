"""Free-busy-query helpers: request bodies, both answers (ours and Radicale's own), periods."""

from __future__ import annotations

import datetime as dt
from typing import Any

import icalendar
from ical.calendar_stream import IcsCalendarStream
from test_radicale_plugin import load_wsgi
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from plugins.radicale.application import Application
from server.config import Settings
from server.web.guards import RadicaleEnviron, XmlGuard

Period = tuple[dt.datetime, dt.datetime, str]
CONTENT_TYPE = "text/calendar; charset=utf-8"
XML = {"Content-Type": "application/xml; charset=utf-8", "Depth": "1"}


class RadicaleOnly(Application):
    """Our plugins, with Radicale's own free-busy path (the fast path switched off)."""

    answer_freebusy = False


def radicale_client(settings: Settings) -> Client:
    """A client of /dav served by RadicaleOnly (Radicale expands the items itself)."""
    configuration = load_wsgi().radicale_configuration(settings)
    dav = RadicaleEnviron(RadicaleOnly(configuration))
    return Client(XmlGuard(DispatcherMiddleware(NotFound(), {"/dav": dav})))


def query(start: dt.datetime | None, end: dt.datetime | None, *, time_range: bool = True) -> str:
    bounds = "".join(f' {name}="{value:%Y%m%dT%H%M%SZ}"' for name, value in
                     (("start", start), ("end", end)) if value is not None)
    element = f"<C:time-range{bounds}/>" if time_range else ""
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav">{element}'
            "</C:free-busy-query>")


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def strict(body: bytes) -> icalendar.Calendar:
    """Both parsers accept the answer; the icalendar reading is returned."""
    text = body.decode("utf-8")
    IcsCalendarStream.calendar_from_ics(text)
    calendar = icalendar.Calendar.from_ical(text)
    assert [c.name for c in calendar.subcomponents] == ["VFREEBUSY"], text
    return calendar


def periods(body: bytes, *, busy_only: bool = True) -> list[Period]:
    """The FREEBUSY periods of an answer (Radicale's FBTYPE=FREE left out when busy_only)."""
    found: list[Period] = []
    for component in icalendar.Calendar.from_ical(body.decode("utf-8")).walk("VFREEBUSY"):
        values: Any = component.get("FREEBUSY", [])
        for prop in values if isinstance(values, list) else [values]:
            fbtype = str(prop.params.get("FBTYPE", "BUSY"))
            for start, finish in _periods_of(prop):
                end = finish if isinstance(finish, dt.datetime) else start + finish
                found.append((_utc(start), _utc(end), fbtype))
    return sorted(p for p in found if not (busy_only and p[2] == "FREE"))


def _periods_of(prop: Any) -> list[tuple[dt.datetime, Any]]:
    dts = getattr(prop, "dts", None)
    if dts is not None:
        return [d.dt for d in dts]
    return [prop.dt]


def merged(*groups: list[Period]) -> list[Period]:
    """What one answer over several calendars shows: per type, overlapping periods joined."""
    by_type: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
    for start, end, fbtype in (p for group in groups for p in group):
        by_type.setdefault(fbtype, []).append((start, end))
    out: list[Period] = []
    for fbtype, spans in by_type.items():
        spans.sort()
        current = list(spans[0])
        for start, end in spans[1:]:
            if start <= current[1]:
                current[1] = max(current[1], end)
            else:
                out.append((current[0], current[1], fbtype))
                current = [start, end]
        out.append((current[0], current[1], fbtype))
    return sorted(out)
