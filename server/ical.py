"""iCalendar in and out: render an appointment for an audience, parse what clients send.

Rendering is deterministic (UID from the row, DTSTAMP = updated_at) so stored text
and etags only change when the data does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import icalendar
from dateutil.rrule import rrulestr

from server.errors import InvalidInput
from server.models import Appointment, AppointmentStatus
from server.text import clean_text

PRODID = "-//fieldcal//fieldcal 0.1//EN"
FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


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


def parse_object(text: str) -> ParsedObject:
    """Parse one calendar object resource; InvalidInput says what is wrong."""
    if "\x00" in text:
        raise InvalidInput("Malformed iCalendar: NUL characters are not allowed.")
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        raise InvalidInput(f"Malformed iCalendar: {exc}") from exc
    if not isinstance(calendar, icalendar.Calendar) or calendar.name != "VCALENDAR":
        raise InvalidInput("Expected one VCALENDAR object.")
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
        start, end = time_bounds(components)
    except ValueError as exc:  # icalendar's broken properties (InvalidCalendar) included
        raise InvalidInput(f"Malformed iCalendar: {exc}") from exc
    return ParsedObject(
        calendar=calendar,
        uid=uids.pop(),
        component=main.name,
        dtstart=start,
        dtend=end,
        transparent=str(main.get("transp", "OPAQUE")).upper() == "TRANSPARENT",
    )


def as_utc(value: dt.date | dt.datetime) -> dt.datetime:
    """A DATE is midnight UTC; a floating time is taken as UTC."""
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
