"""The calendar-query bodies plugins.radicale.query_fast answers, read from the request.

Taken: `<C:calendar-query>` with exactly one `<D:prop>` and one `<C:filter>` and
nothing else; the properties are `D:getetag`, `D:getcontenttype` and
`C:calendar-data` (any order, repeats kept, no attributes, no children: no
partial retrieval, no expand); the filter is one `VCALENDAR` comp-filter holding
nothing or one `VEVENT`, `VTODO` or `VJOURNAL` comp-filter, which holds nothing or
one `<C:time-range>` with a valid start and/or end. Everything else is None.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from radicale.item import filter as radicale_filter

DAV = "{DAV:}"
CALDAV = "{urn:ietf:params:xml:ns:caldav}"
GETETAG = f"{DAV}getetag"
GETCONTENTTYPE = f"{DAV}getcontenttype"
CALENDAR_DATA = f"{CALDAV}calendar-data"
ANSWERED_PROPS = frozenset({GETETAG, GETCONTENTTYPE, CALENDAR_DATA})
COMPONENTS = frozenset({"VEVENT", "VTODO", "VJOURNAL"})
QueryKey = tuple[str, dt.datetime | None, dt.datetime | None]


@dataclass(frozen=True)
class Query:
    root: ET.Element
    props: tuple[str, ...]
    filter: ET.Element  # the <C:filter>, as Radicale's storage and test_filter take it
    key: QueryKey  # (component or "", start, end): what the filter decides on


def _blank(element: ET.Element) -> bool:
    return not (element.text or "").strip()


def _props(prop: ET.Element) -> tuple[str, ...] | None:
    tags = tuple(p.tag for p in prop)
    if not tags or any(t not in ANSWERED_PROPS for t in tags):
        return None
    if any(p.attrib or len(p) or not _blank(p) for p in prop):
        return None
    return tags


def _time_range(element: ET.Element) -> tuple[dt.datetime | None, dt.datetime | None] | None:
    if element.tag != f"{CALDAV}time-range" or len(element) or not _blank(element):
        return None
    if not element.attrib or set(element.attrib) - {"start", "end"}:
        return None
    try:
        start, end = radicale_filter.parse_time_range(element)
    except ValueError:
        return None
    return (start if element.get("start") else None), (end if element.get("end") else None)


def _filter_key(filter_: ET.Element) -> QueryKey | None:
    if filter_.attrib or len(filter_) != 1:
        return None
    calendar = filter_[0]
    if calendar.tag != f"{CALDAV}comp-filter" or calendar.attrib != {"name": "VCALENDAR"}:
        return None
    if len(calendar) == 0:
        return "", None, None
    component = calendar[0]
    if (len(calendar) != 1 or component.tag != f"{CALDAV}comp-filter"
            or set(component.attrib) != {"name"} or component.get("name") not in COMPONENTS):
        return None
    name = component.get("name") or ""
    if len(component) == 0:
        return name, None, None
    if len(component) != 1:
        return None
    bounds = _time_range(component[0])
    return None if bounds is None else (name, *bounds)


def parse(body: bytes) -> Query | None:
    """The query of a plain calendar-query body, else None."""
    if b"calendar-query" not in body or b"<!" in body:
        return None  # no DTD or entities (Radicale's reader refuses them), no CDATA
    try:
        root = ET.fromstring(body)  # depth and size are limited in front (server.web.guards)
    except ET.ParseError:
        return None
    if root.tag != f"{CALDAV}calendar-query" or root.attrib or len(root) != 2:
        return None
    prop, filter_ = root.find(f"{DAV}prop"), root.find(f"{CALDAV}filter")
    if prop is None or filter_ is None:
        return None
    props = _props(prop)
    key = _filter_key(filter_)
    if props is None or key is None:
        return None
    return Query(root, props, filter_, key)
