"""What the slot picker and the visit summaries show, in the customer's time zone."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from server.models import Appointment, ServiceType
from server.scheduling.areas import Area
from server.scheduling.availability import Slot, free_slots
from share.views import progress

DAY_FORMAT = "%A %-d %B"


@dataclass(frozen=True)
class Offer:
    value: str  # the slot's start, ISO 8601 in UTC: what the form posts back
    label: str  # start and end, or the arrival window, in the customer's zone
    window: bool


@dataclass(frozen=True)
class Day:
    date: dt.date
    title: str
    offers: list[Offer]


@dataclass(frozen=True)
class Week:
    monday: dt.date
    title: str
    days: list[Day]
    previous: dt.date | None
    next: dt.date | None
    zone_label: str
    windows: bool

    @property
    def empty(self) -> bool:
        return not any(day.offers for day in self.days)


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _hhmm(moment: dt.datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M")


def _offer(slot: Slot, zone: ZoneInfo) -> Offer:
    if slot.window:
        return Offer(slot.starts_at.isoformat(),
                     f"{_hhmm(slot.window[0], zone)}–{_hhmm(slot.window[1], zone)}", True)
    return Offer(slot.starts_at.isoformat(),
                 f"{_hhmm(slot.starts_at, zone)}–{_hhmm(slot.ends_at, zone)}", False)


def _week_slots(session: Session, service_type: ServiceType, zone: ZoneInfo, monday: dt.date, *,
                now: dt.datetime, windows_zone: str, exclude_appointment_id: int | None,
                area: Area | None) -> list[Slot]:
    start = dt.datetime.combine(monday, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(monday + dt.timedelta(days=7), dt.time(), zone).astimezone(dt.UTC)
    return free_slots(session, service_type, start=start, end=end, now=now,
                      windows_zone=windows_zone, exclude_appointment_id=exclude_appointment_id,
                      area=area)


def week_of(session: Session, service_type: ServiceType, zone: ZoneInfo, *, now: dt.datetime,
            windows_zone: str, requested: dt.date | None = None, around: dt.datetime | None = None,
            exclude_appointment_id: int | None = None, skip: dt.datetime | None = None,
            area: Area | None = None) -> Week:
    """One week of free slots: the requested week, the week `around` a time, or the first with any.

    `area` is the site's: only technicians who serve it are offered."""
    horizon_end = now + dt.timedelta(days=service_type.horizon_days)
    first = _monday(now.astimezone(zone).date())
    last = _monday(horizon_end.astimezone(zone).date())
    wanted = requested or (around.astimezone(zone).date() if around is not None else None)
    if wanted is not None:
        candidates = [min(max(_monday(wanted), first), last)]
    else:
        candidates = [first + dt.timedelta(days=7 * i) for i in range((last - first).days // 7 + 1)]
    monday, slots = candidates[0], []
    for candidate in candidates:
        slots = _week_slots(session, service_type, zone, candidate, now=now, windows_zone=windows_zone,
                            exclude_appointment_id=exclude_appointment_id, area=area)
        if slots:
            monday = candidate
            break
    by_day: dict[dt.date, list[Offer]] = {}
    for slot in slots:
        if skip is not None and slot.starts_at == skip:
            continue  # the visit's own time: nothing to move to
        by_day.setdefault(slot.starts_at.astimezone(zone).date(), []).append(_offer(slot, zone))
    today = now.astimezone(zone).date()
    days = [monday + dt.timedelta(days=i) for i in range(7)]
    return Week(
        monday=monday,
        title=f"{days[0]:%-d %B} – {days[-1]:%-d %B %Y}",
        days=[Day(d, d.strftime(DAY_FORMAT), by_day.get(d, [])) for d in days if d >= today],
        previous=monday - dt.timedelta(days=7) if monday > first else None,
        next=monday + dt.timedelta(days=7) if monday < last else None,
        zone_label=zone.key.replace("_", " "),
        windows=bool(service_type.arrival_windows),
    )


@dataclass(frozen=True)
class VisitView:
    id: int
    service: str
    date: str
    date_iso: str
    time_label: str  # "Arrival window" or "Time"
    time: str
    technician: str
    address: str
    problem: str
    status: str
    status_key: str
    cancelled: bool
    zone_label: str


def visit_view(appointment: Appointment, zone: ZoneInfo) -> VisitView:
    job = appointment.job
    windowed = appointment.window_start is not None and appointment.window_end is not None
    start = appointment.window_start if windowed else appointment.starts_at
    end = appointment.window_end if windowed else appointment.ends_at
    assert start is not None and end is not None
    local = start.astimezone(zone)
    technician = appointment.technician
    state = progress(appointment)
    return VisitView(
        id=appointment.id,
        service=job.title,
        date=local.strftime(f"{DAY_FORMAT} %Y"),
        date_iso=local.isoformat(),
        time_label="Arrival window" if windowed else "Time",
        time=f"{_hhmm(start, zone)} – {_hhmm(end, zone)}",
        technician=technician.first_name if technician else "to be assigned",
        address=job.site.address if job.site else "",
        problem=job.problem,
        status=state.label,
        status_key=state.key,
        cancelled=state.key == "cancelled",
        zone_label=zone.key.replace("_", " "),
    )
