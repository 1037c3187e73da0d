"""Free slots for a service type.

Sources: each technician's weekly working hours (in their own zone), holidays
and time off, busy personal CalDAV items (recurring ones expanded, capped),
existing appointments with their buffers and travel, minimum notice, booking
horizon, the service type's duration and skills. Slots are UTC; faces show them
in the customer's zone. Technicians for a slot come fairest first: least booked
in the period, ties broken round-robin (longest since their last booking).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from server.busy import EXPANSIONS
from server.models import (
    Appointment,
    AppointmentStatus,
    CalendarItem,
    Collection,
    CollectionKind,
    Role,
    ServiceType,
    TimeOff,
    User,
    WorkingHours,
)
from server.scheduling import travel
from server.scheduling.areas import Area, serving
from server.scheduling.clashes import blocked_range
from server.scheduling.hours import local as _local
from server.scheduling.hours import parse_hhmm as _parse_hhmm
from server.scheduling.hours import working_intervals as _working_intervals

Interval = tuple[dt.datetime, dt.datetime]


@dataclass(frozen=True)
class Slot:
    starts_at: dt.datetime
    ends_at: dt.datetime
    technician_ids: tuple[int, ...]
    window: Interval | None = None


class _Busy:
    """Merged, sorted intervals; `allowed` finds the gaps between them in O(log n + k)."""

    def __init__(self, intervals: Iterable[Interval]) -> None:
        merged: list[list[dt.datetime]] = []
        for start, end in sorted(intervals):
            if merged and start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [m[0] for m in merged]
        self.ends = [m[1] for m in merged]

    def allowed(self, low: dt.datetime, high: dt.datetime) -> Iterator[Interval]:
        """Closed sub-ranges of [low, high] outside every (open) interval held here."""
        index = bisect.bisect_right(self.ends, low)
        cursor = low
        while index < len(self.starts) and self.starts[index] < high:
            if self.starts[index] >= cursor:
                yield cursor, self.starts[index]
            cursor = max(cursor, self.ends[index])
            index += 1
        if cursor <= high:
            yield cursor, high




def qualified_technicians(session: Session, service_type: ServiceType,
                          only: Sequence[int] | None = None) -> list[User]:
    query = select(User).where(User.role == Role.TECHNICIAN, User.active.is_(True))
    if only is not None:
        query = query.where(User.id.in_(only))
    needed = set(service_type.skills)
    return [u for u in session.scalars(query.order_by(User.id)) if needed <= set(u.skills)]


def _grid_anchor(interval: Interval, zone: ZoneInfo, step: dt.timedelta) -> dt.datetime:
    """The first start in the interval on the step grid of local wall-clock time (08:00, 08:30…)."""
    local = interval[0].astimezone(zone)
    midnight = dt.datetime.combine(local.date(), dt.time(), zone)
    offset = (local.replace(tzinfo=None) - midnight.replace(tzinfo=None)) % step
    return interval[0] + ((step - offset) % step)


def _load_busy(session: Session, technicians: list[User], start: dt.datetime, end: dt.datetime,
               now: dt.datetime, exclude_id: int | None) -> dict[int, list[Interval]]:
    ids = [t.id for t in technicians]
    busy: dict[int, list[Interval]] = defaultdict(list)
    margin = dt.timedelta(days=1)
    appointments = select(Appointment.technician_id, Appointment.blocked_from,
                          Appointment.blocked_until).where(
        Appointment.technician_id.in_(ids),
        Appointment.status != AppointmentStatus.CANCELLED,
        Appointment.blocked_from < end + margin,
        Appointment.blocked_until > start - margin,
        or_(Appointment.hold_expires_at.is_(None), Appointment.hold_expires_at > now),
    )
    if exclude_id is not None:
        appointments = appointments.where(Appointment.id != exclude_id)
    for technician_id, blocked_from, blocked_until in session.execute(appointments):
        if technician_id is None:  # excluded by the query; narrows the type
            continue
        busy[technician_id].append((blocked_from, blocked_until))
    time_off = select(TimeOff.technician_id, TimeOff.starts_at, TimeOff.ends_at).where(
        or_(TimeOff.technician_id.in_(ids), TimeOff.technician_id.is_(None)),
        TimeOff.starts_at < end, TimeOff.ends_at > start,
    )
    for technician_id, starts_at, ends_at in session.execute(time_off):
        for target in ([technician_id] if technician_id is not None else ids):
            busy[target].append((starts_at, ends_at))
    items = (
        select(Collection.owner_id, CalendarItem.etag, CalendarItem.text)
        .join(Collection, Collection.id == CalendarItem.collection_id)
        .where(Collection.owner_id.in_(ids), Collection.kind == CollectionKind.CALENDAR,
               CalendarItem.transparent.is_(False),
               or_(CalendarItem.dtstart.is_(None), CalendarItem.dtstart < end),
               or_(CalendarItem.dtend.is_(None), CalendarItem.dtend > start))
    )
    for owner_id, etag, text in session.execute(items):
        if owner_id is None:  # excluded by the query; narrows the type
            continue
        for occurrence in EXPANSIONS.between(etag, text, start - margin, end + margin).occurrences:
            if (occurrence.busy and occurrence.starts_at < end + margin
                    and occurrence.ends_at > start - margin):
                busy[owner_id].append((occurrence.starts_at, occurrence.ends_at))
    return busy


def _fairness(session: Session, ids: list[int], start: dt.datetime,
              end: dt.datetime) -> dict[int, tuple[int, dt.datetime]]:
    """(bookings in the period, last booking time): smaller is fairer."""
    counts = dict(session.execute(
        select(Appointment.technician_id, func.count()).where(
            Appointment.technician_id.in_(ids), Appointment.status != AppointmentStatus.CANCELLED,
            Appointment.starts_at < end, Appointment.ends_at > start,
        ).group_by(Appointment.technician_id)
    ).all())
    latest = dict(session.execute(
        select(Appointment.technician_id, func.max(Appointment.created_at))
        .where(Appointment.technician_id.in_(ids)).group_by(Appointment.technician_id)
    ).all())
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return {i: (counts.get(i, 0), _aware(latest.get(i)) or epoch) for i in ids}


@overload
def _aware(value: dt.datetime) -> dt.datetime: ...
@overload
def _aware(value: None) -> None: ...
def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def free_slots(
    session: Session,
    service_type: ServiceType,
    *,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    step_minutes: int = 30,
    technician_ids: Sequence[int] | None = None,
    exclude_appointment_id: int | None = None,
    windows_zone: str = "UTC",
    area: Area | None = None,
) -> list[Slot]:
    """Bookable slots in [start, end), earliest first.

    With `area` (the site's), only technicians who serve it are offered, and with the
    site's coordinates the drive from and to their other visits is left free.
    """
    start = max(start, now + dt.timedelta(minutes=service_type.min_notice_minutes))
    end = min(end, now + dt.timedelta(days=service_type.horizon_days))
    if end <= start:
        return []
    technicians = qualified_technicians(session, service_type, technician_ids)
    if service_type.remote:
        area = None  # done from anywhere
    if area is not None:
        technicians = serving(session, technicians, area)
    if not technicians:
        return []
    ids = [t.id for t in technicians]
    hours: dict[int, list[WorkingHours]] = defaultdict(list)
    for row in session.scalars(select(WorkingHours).where(WorkingHours.technician_id.in_(ids))):
        hours[row.technician_id].append(row)
    busy = _load_busy(session, technicians, start, end, now, exclude_appointment_id)
    if area is not None and area.point is not None:
        extra = travel.busy_extensions(session, ids, area.point, service_type, start, end,
                                       exclude_appointment_id)
        for technician_id, intervals in extra.items():
            busy[technician_id].extend(intervals)
    duration = dt.timedelta(minutes=service_type.duration_minutes)
    step = dt.timedelta(minutes=step_minutes)

    probe_from, probe_until = blocked_range(service_type, start, start + duration)
    before, after = start - probe_from, probe_until - start  # the visit's busy span around its start

    fairness = _fairness(session, ids, start, end)
    technicians.sort(key=lambda t: (*fairness[t.id], t.id))  # so every slot lists them fairest first
    free_at: dict[dt.datetime, list[int]] = defaultdict(list)
    latest = end - dt.timedelta(microseconds=1)
    for technician in technicians:
        zone = ZoneInfo(technician.timezone)
        # A start m is taken iff [m - before, m + after) meets a busy block [b0, b1),
        # i.e. iff b0 - after < m < b1 + before: forbidden starts, merged.
        forbidden = _Busy((b0 - after, b1 + before) for b0, b1 in busy.get(technician.id, []))
        for interval in _working_intervals(hours.get(technician.id, []), zone, start, end):
            low, high = max(interval[0], start), min(interval[1] - duration, latest)
            if low > high:
                continue
            anchor = _grid_anchor(interval, zone, step)
            for segment_low, segment_high in forbidden.allowed(low, high):
                moment = anchor + -((anchor - segment_low) // step) * step
                while moment <= segment_high:
                    free_at[moment].append(technician.id)
                    moment += step

    slots = [Slot(moment, moment + duration, tuple(candidates))
             for moment, candidates in sorted(free_at.items())]
    if service_type.arrival_windows:
        return _windowed(session, service_type, slots, ZoneInfo(windows_zone), now)
    return slots


def arrival_windows(service_type: ServiceType, day: dt.date, zone: ZoneInfo) -> list[Interval]:
    windows = []
    for text in service_type.arrival_windows:
        begin, _, finish = text.partition("-")
        windows.append((_local(day, _parse_hhmm(begin), zone), _local(day, _parse_hhmm(finish), zone)))
    return windows


def _windowed(session: Session, service_type: ServiceType, slots: list[Slot], zone: ZoneInfo,
              now: dt.datetime) -> list[Slot]:
    """One offer per arrival window: its earliest free start, while the window has capacity."""
    if not slots:
        return []
    booked: dict[dt.datetime, int] = defaultdict(int)
    if service_type.window_capacity:
        rows = session.execute(
            select(Appointment.window_start, func.count()).where(
                Appointment.service_type_id == service_type.id,
                Appointment.status != AppointmentStatus.CANCELLED,
                Appointment.window_start.is_not(None),
                Appointment.window_start >= slots[0].starts_at - dt.timedelta(days=1),
                or_(Appointment.hold_expires_at.is_(None), Appointment.hold_expires_at > now),
            ).group_by(Appointment.window_start)
        )
        booked.update({_aware(w): n for w, n in rows if w is not None})
    offers = []
    seen: set[Interval] = set()
    for slot in slots:
        day = slot.starts_at.astimezone(zone).date()
        for window in arrival_windows(service_type, day, zone):
            if window in seen or not (window[0] <= slot.starts_at < window[1]):
                continue
            if service_type.window_capacity and booked[window[0]] >= service_type.window_capacity:
                continue
            seen.add(window)
            offers.append(Slot(slot.starts_at, slot.ends_at, slot.technician_ids, window))
    return offers
