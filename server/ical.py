"""iCalendar in and out: render an appointment for an audience, parse what clients send.

Rendering is deterministic (UID from the row, DTSTAMP = updated_at) so stored text
and etags only change when the data does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import icalendar
from dateutil.rrule import rrulestr

from server import recurrence
from server.errors import InvalidInput
from server.models import Appointment, AppointmentStatus
from server.text import clean_text

PRODID = "-//fieldcal//fieldcal 0.1//EN"
FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)")


class Audience(StrEnum):
    TECHNICIAN = "technician"
    TEAM = "team"
    DISPATCH = "dispatch"
    CUSTOMER = "customer"
    FREEBUSY = "freebusy"


def etag_of(text: str) -> str:
    return f'"{hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]}"'


def ical_status(appointment: Appointment) -> str:
    return {
        AppointmentStatus.TENTATIVE: "TENTATIVE",
        AppointmentStatus.CANCELLED: "CANCELLED",
    }.get(AppointmentStatus(appointment.status), "CONFIRMED")


def _calendar() -> icalendar.Calendar:
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    return calendar


def appointment_event(appointment: Appointment, audience: Audience, organizer: str) -> icalendar.Event:
    """The VEVENT of one visit as the given audience may see it."""
    event = icalendar.Event()
    event.add("uid", appointment.uid)
    event.add("dtstamp", appointment.updated_at)
    event.add("dtstart", appointment.starts_at)
    event.add("dtend", appointment.ends_at)
    event.add("sequence", appointment.sequence)
    event.add("status", ical_status(appointment))
    if audience is Audience.FREEBUSY:
        event.add("summary", "Busy")
        event.add("transp", "OPAQUE")
        event.add("class", "PRIVATE")
        return event

    job = appointment.job
    customer = job.customer
    site = job.site
    technician = appointment.technician
    if audience is Audience.CUSTOMER:
        event.add("summary", clean_text(f"Compressor service: {job.title}"))
        lines = []
        if appointment.window_start and appointment.window_end:
            lines.append(
                "Arrival window: "
                f"{_local(appointment.window_start, customer.timezone)}"
                f" – {_local(appointment.window_end, customer.timezone, time_only=True)}"
            )
        if technician is not None:
            lines.append(f"Technician: {technician.first_name}")
        lines.append(f"Status: {ical_status(appointment).lower()}")
        event.add("description", clean_text("\n".join(lines)))
        if site is not None:
            event.add("location", clean_text(site.address))
        return event

    event.add("summary", clean_text(f"{job.title} — {customer.name}"))
    if site is not None:
        event.add("location", clean_text(site.address))
    details = [job.problem]
    if site is not None and (site.compressor_make or site.compressor_model):
        details.append(
            "Compressor: "
            + " ".join(p for p in (site.compressor_make, site.compressor_model) if p)
            + (f" (serial {site.compressor_serial})" if site.compressor_serial else "")
        )
    if customer.phone:
        details.append(f"Customer phone: {customer.phone}")
    details.append(f"Job #{job.id}, priority {job.priority}")
    event.add("description", clean_text("\n".join(d for d in details if d)))
    event.add("organizer", f"mailto:{organizer}", parameters={"CN": "fieldcal dispatch"})
    if technician is not None:
        event.add(
            "attendee",
            f"mailto:{technician.email}",
            parameters={
                "CN": clean_text(technician.name),
                "ROLE": "REQ-PARTICIPANT",
                "PARTSTAT": appointment.partstat,
                "CUTYPE": "INDIVIDUAL",
            },
        )
    event.add("x-fieldcal-job-status", icalendar.vText(job.status))
    event.add("x-fieldcal-job", icalendar.vText(str(job.id)))
    event.add("categories", ["Job"])
    return event


def _local(moment: dt.datetime, zone: str, *, time_only: bool = False) -> str:
    from zoneinfo import ZoneInfo

    local = moment.astimezone(ZoneInfo(zone))
    return local.strftime("%H:%M") if time_only else local.strftime("%a %d %b %Y %H:%M %Z")


def render_appointment(appointment: Appointment, audience: Audience, organizer: str) -> str:
    calendar = _calendar()
    calendar.add_component(appointment_event(appointment, audience, organizer))
    return calendar.to_ical().decode("utf-8")


@dataclass(frozen=True)
class ParsedObject:
    """A client's calendar object reduced to what storage and the domain need."""

    calendar: icalendar.Calendar
    uid: str
    component: str
    dtstart: dt.datetime | None
    dtend: dt.datetime | None
    transparent: bool

    @property
    def main(self) -> icalendar.cal.Component:
        return first_component(self.calendar)


def first_component(calendar: icalendar.Calendar) -> icalendar.cal.Component:
    for component in calendar.subcomponents:
        if component.name in ("VEVENT", "VTODO", "VJOURNAL"):
            return component
    raise InvalidInput("The calendar object has no VEVENT, VTODO or VJOURNAL.")


def check_characters(text: str) -> None:
    """Refuse control characters: RFC 5545 allows none but TAB, and CR only before LF.

    A lone CR inside a value would end the line for some readers and not for others,
    so two readers could see two different objects in one stored text.
    """
    found = CONTROL.search(text)
    if found is None:
        return
    line = text.count("\n", 0, found.start()) + 1
    if found.group() == "\r":
        raise InvalidInput(f"Malformed iCalendar: a carriage return (CR) without a line feed on "
                           f"line {line}; end lines with CRLF and write no CR inside values.")
    raise InvalidInput(f"Malformed iCalendar: control character U+{ord(found.group()):04X} on "
                       f"line {line}; iCalendar text may not contain control characters.")


ONCE = ("UID", "DTSTART", "DTEND", "DUE", "DURATION", "RECURRENCE-ID", "DTSTAMP", "SEQUENCE",
        "STATUS", "TRANSP", "CLASS", "SUMMARY", "VERSION", "PRODID")  # at most once (RFC 5545)
FOLD = re.compile(r"\r?\n[ \t]")
BEGIN_END = re.compile(r"^(BEGIN|END):(.*)$", re.IGNORECASE)


def check_nesting(text: str) -> None:
    """Every END closes the BEGIN before it (icalendar alone does not check the names)."""
    open_components: list[str] = []
    for line in FOLD.sub("", text).split("\n"):
        found = BEGIN_END.match(line.rstrip("\r"))
        if found is None:
            continue
        keyword, name = found.group(1).upper(), found.group(2).strip().upper()
        if keyword == "BEGIN":
            open_components.append(name)
        elif not open_components or open_components.pop() != name:
            raise InvalidInput(f"Malformed iCalendar: END:{name} does not close the component "
                               "opened before it.")
    if open_components:
        raise InvalidInput(f"Malformed iCalendar: BEGIN:{open_components[-1]} is never closed.")


def without_alarms(text: str) -> str:
    """The object without its VALARMs (unfolded, CRLF line ends)."""
    kept: list[str] = []
    depth = 0
    for line in FOLD.sub("", text).split("\n"):
        line = line.rstrip("\r")
        upper = line.upper()
        if upper.startswith("BEGIN:VALARM"):
            depth += 1
        elif depth and upper.startswith("END:VALARM"):
            depth -= 1
        elif not depth:
            kept.append(line)
    return "\r\n".join(kept)


def check_strict(text: str) -> None:
    """What we store as sent must be readable by a strict parser (RFC 5545 as `ical` reads it).

    Alarms are the client's own reminders and are left out of this check: clients
    write DISPLAY alarms without the DESCRIPTION the RFC asks for, and strict
    readers of our feeds never see personal items' alarms.
    """
    # Loaded with the first object checked (its pydantic models take ~17 MiB): processes
    # that only read calendars never load it.
    from ical.calendar_stream import IcsCalendarStream
    from ical.exceptions import CalendarParseError

    try:
        IcsCalendarStream.calendar_from_ics(without_alarms(text))
    except CalendarParseError as exc:
        detail = (exc.detailed_error or str(exc)).splitlines()
        reason = " ".join(line.strip() for line in detail[:2] if "errors.pydantic" not in line)
        raise InvalidInput(f"Malformed iCalendar: {reason[:300]}") from exc
    except ValueError as exc:
        raise InvalidInput(f"Malformed iCalendar: {str(exc)[:300]}") from exc


def parse_object(text: str) -> ParsedObject:
    """Parse one calendar object resource; InvalidInput says what is wrong."""
    check_characters(text)
    check_nesting(text)
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        raise InvalidInput(f"Malformed iCalendar: {exc}") from exc
    if not isinstance(calendar, icalendar.Calendar) or calendar.name != "VCALENDAR":
        raise InvalidInput("Expected one VCALENDAR object.")
    for component in calendar.walk():  # values icalendar kept as broken (e.g. DTSTAMP:20311350)
        for name, error in component.errors:
            raise InvalidInput(f"Malformed iCalendar: {component.name} {name}: {error}")
        for name in ONCE:
            if isinstance(component.get(name), list):
                raise InvalidInput(f"Malformed iCalendar: {component.name} has more than one {name}.")
        for rule in _as_list(component.get("rrule", [])):
            if "FREQ" not in rule:  # icalendar drops a part it cannot read, FREQ included
                raise InvalidInput(f"Malformed iCalendar: RRULE {rule.to_ical().decode()!r} "
                                   "has no FREQ.")
    check_strict(text)
    components = [
        c for c in calendar.subcomponents if c.name in ("VEVENT", "VTODO", "VJOURNAL")
    ]
    if not components:
        raise InvalidInput("The calendar object has no VEVENT, VTODO or VJOURNAL.")
    uids = {str(c.get("uid", "")) for c in components}
    if len(uids) != 1 or "" in uids:
        raise InvalidInput("Every component of one calendar object must carry the same UID.")
    main = components[0]
    try:
        recurrence.check(components)
        start, end = time_bounds(components)
    except ValueError as exc:  # icalendar's broken properties (InvalidCalendar) included
        raise InvalidInput(f"Malformed iCalendar: {exc}") from exc
    return ParsedObject(
        calendar=calendar,
        uid=uids.pop(),
        component=str(main.name),
        dtstart=start,
        dtend=end,
        transparent=str(main.get("transp", "OPAQUE")).upper() == "TRANSPARENT",
    )


def as_utc(value: dt.date | dt.datetime) -> dt.datetime:
    """A DATE is midnight UTC; a floating time is taken as UTC."""
    if not isinstance(value, dt.date):  # e.g. DTSTART;VALUE=TIME or a PERIOD
        raise ValueError(f"{value!r} is not a date or a date-time")
    if not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


Bounds = tuple[dt.datetime | None, dt.datetime | None]


def time_bounds(components: Iterable[icalendar.cal.Component]) -> Bounds:
    """Earliest start and latest end the object can occupy; end None = open-ended recurrence.

    Bounds are widened by a day on each side so floating and all-day times are
    never filtered out wrongly; exact matching is left to the time-range filter.
    """
    starts: list[dt.datetime] = []
    ends: list[dt.datetime] = []
    open_ended = False
    for component in components:
        start_prop = component.get("dtstart") or component.get("due")
        if start_prop is None:
            return None, None
        start = as_utc(start_prop.dt)
        end_prop = component.get("dtend") or component.get("due")
        if end_prop is not None:
            end = as_utc(end_prop.dt)
        elif component.get("duration") is not None:
            end = start + component.get("duration").dt
        else:
            end = start + dt.timedelta(days=1)
        duration = max(end - start, dt.timedelta(0))
        last_end = end
        if component.get("rrule") is not None:
            last_start = _last_occurrence(component, start_prop.dt)
            if last_start is None:
                open_ended = True
            else:
                last_end = as_utc(last_start) + duration
        for rdate in _as_list(component.get("rdate")):
            for period in rdate.dts:
                value = period.dt[0] if isinstance(period.dt, tuple) else period.dt
                last_end = max(last_end, as_utc(value) + duration)
        starts.append(start)
        ends.append(max(end, last_end))
    margin = dt.timedelta(days=1)
    return min(starts) - margin, None if open_ended else max(ends) + margin


def _as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _last_occurrence(component: icalendar.cal.Component, start: dt.date | dt.datetime) -> dt.datetime | None:
    rule = component.get("rrule")
    if rule is None:
        return None
    if "UNTIL" not in rule and "COUNT" not in rule:
        return None
    text = rule.to_ical().decode()
    try:
        anchor = start if isinstance(start, dt.datetime) else dt.datetime(start.year, start.month, start.day)
        if "UNTIL" in rule:
            until = rule["UNTIL"][0]
            return as_utc(until) + dt.timedelta(days=1)
        occurrences = list(rrulestr(text, dtstart=anchor))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"Unreadable RRULE {text!r}: {exc}") from exc
    return as_utc(occurrences[-1]) if occurrences else as_utc(anchor)
