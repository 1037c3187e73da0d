"""How much of each technician's working time is booked: (visits + travel) ÷ working hours.

Working hours are the weekly hours in the technician's own zone, laid on the calendar
day by day (so a clock change makes that day an hour shorter or longer), clipped to the
range, less their time off and the business's holidays (overlapping leave and holiday
count once, never more than the shift). Booked = the part of each visit (not cancelled)
inside the range, even outside working hours (so overtime can make it exceed 100 %).
Travel = the drive kept before and after each visit starting in the range: its blocked
range less the visit and the service type's buffers (the fixed travel minutes plus any
drive between sites, see `scheduling.travel`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer, String, and_, case, column, func, literal, select, union_all, values
from sqlalchemy.orm import Session

from server.models import Appointment, AppointmentStatus, Role, ServiceType, TimeOff, User, WorkingHours
from server.models.base import UTCDateTime
from server.reports.base import Cell, Filters, Metric, Report, in_scope, ratio
from server.timesql import earlier, later, seconds_between, utc_of_wall

HOUR = 3600


def _days(filters: Filters) -> Any:
    """Every calendar date a zone on earth can see during the range, with its weekday."""
    first = filters.start.date() - dt.timedelta(days=1)
    last = filters.end.date() + dt.timedelta(days=1)
    rows = []
    day = first
    while day <= last:
        rows.append((day.isoformat(), (day + dt.timedelta(days=1)).isoformat(), day.weekday()))
        day += dt.timedelta(days=1)
    return values(column("day", String), column("next_day", String), column("weekday", Integer),
                  name="days", literal_binds=True).data(rows).cte("days")


def _available(filters: Filters, start: Any, end: Any) -> Any:
    days = _days(filters)
    hours = (  # the distinct weekly hours of each zone: technicians of one zone share them
        select(User.timezone.label("zone"), WorkingHours.weekday, WorkingHours.starts, WorkingHours.ends)
        .join(User, User.id == WorkingHours.technician_id)
        .where(in_scope(User.id, filters))
        .distinct()
        .subquery("hours")
    )
    finish_wall = case((hours.c.ends == "24:00", days.c.next_day + " 00:00"),
                       else_=days.c.day + " " + hours.c.ends)
    walls = (
        select(hours.c.zone, hours.c.weekday, hours.c.starts, hours.c.ends,
               utc_of_wall(days.c.day + " " + hours.c.starts, hours.c.zone).label("s"),
               utc_of_wall(finish_wall, hours.c.zone).label("e"))
        .join(days, days.c.weekday == hours.c.weekday)
        .cte("walls").prefix_with("MATERIALIZED")  # each wall time converted once per zone
    )
    weekly = (  # each technician's weekly hours with their zone: all four are the key to a wall
        select(WorkingHours.technician_id, User.timezone.label("zone"), WorkingHours.weekday,
               WorkingHours.starts, WorkingHours.ends)
        .join(User, User.id == WorkingHours.technician_id)
        .where(in_scope(User.id, filters))
        .cte("weekly").prefix_with("MATERIALIZED")
    )
    shifts = (  # joined on the whole key at once, not a technician's zone looked up per wall
        select(weekly.c.technician_id.label("technician_id"), walls.c.s, walls.c.e)
        .join(walls, and_(walls.c.zone == weekly.c.zone, walls.c.weekday == weekly.c.weekday,
                          walls.c.starts == weekly.c.starts, walls.c.ends == weekly.c.ends))
        .cte("shifts").prefix_with("MATERIALIZED")
    )
    clipped = (
        select(shifts.c.technician_id, later(shifts.c.s, start).label("s"),
               earlier(shifts.c.e, end).label("e"))
        .where(shifts.c.e > start, shifts.c.s < end, shifts.c.e > shifts.c.s)
        .cte("clipped").prefix_with("MATERIALIZED")
    )
    def overlaps(begins: Any, ends: Any) -> Any:
        return and_(begins < clipped.c.e, ends > clipped.c.s)

    def overlap(begins: Any, ends: Any) -> Any:
        return seconds_between(later(clipped.c.s, begins), earlier(clipped.c.e, ends))

    holidays = (  # the business's few days off in the range, read once (not once per shift)
        select(TimeOff.starts_at, TimeOff.ends_at)
        .where(TimeOff.technician_id.is_(None), TimeOff.ends_at > start, TimeOff.starts_at < end)
        .cte("holidays").prefix_with("MATERIALIZED")
    )
    shift = (clipped.c.technician_id, clipped.c.s, clipped.c.e)
    # Each shift's time off: the technician's own (joined by technician) and the business's
    # holidays, apart, so that no shift is compared with everybody's leave; and a 0 for
    # every shift, so that shifts without time off count.
    offs = union_all(
        select(*shift, overlap(TimeOff.starts_at, TimeOff.ends_at).label("off"))
        .join(TimeOff, and_(TimeOff.technician_id == clipped.c.technician_id,
                            overlaps(TimeOff.starts_at, TimeOff.ends_at))),
        select(*shift, overlap(holidays.c.starts_at, holidays.c.ends_at))
        .join(holidays, overlaps(holidays.c.starts_at, holidays.c.ends_at)),
        select(*shift, literal(0, Integer)),
    ).subquery("offs")
    per_shift = (
        select(offs.c.technician_id, seconds_between(offs.c.s, offs.c.e).label("length"),
               func.sum(offs.c.off).label("off"))
        .group_by(offs.c.technician_id, offs.c.s, offs.c.e)
        .subquery()
    )
    return (
        select(per_shift.c.technician_id,
               func.sum(per_shift.c.length - earlier(per_shift.c.off, per_shift.c.length))
               .label("available"))
        .group_by(per_shift.c.technician_id)
        .subquery()
    )


def _booked(filters: Filters, start: Any, end: Any) -> Any:
    # Sums of differences, written so that each visit's length is worked out once: the one
    # sum of lengths serves both the booked and the travel time (visits that start before
    # the range, the only ones not inside it, are taken out of it again for travel).
    early = Appointment.starts_at < start  # every visit here starts before the range ends
    inside = and_(Appointment.starts_at >= start, Appointment.starts_at < end)
    buffers = (func.coalesce(ServiceType.buffer_before_minutes, 0)
               + func.coalesce(ServiceType.buffer_after_minutes, 0)) * 60
    lengths = func.sum(seconds_between(Appointment.starts_at, Appointment.ends_at))
    booked = (lengths
              - func.sum(case((early, seconds_between(Appointment.starts_at, start)), else_=0))
              - func.sum(case((Appointment.ends_at > end, seconds_between(end, Appointment.ends_at)),
                              else_=0)))
    travel = (func.sum(case((inside, seconds_between(Appointment.blocked_from, Appointment.blocked_until)),
                            else_=0))
              - (lengths - func.sum(case((early, seconds_between(Appointment.starts_at, Appointment.ends_at)),
                                         else_=0)))
              - func.sum(case((inside, buffers), else_=0)))
    return (
        select(Appointment.technician_id.label("technician_id"), booked.label("booked"),
               travel.label("travel"))
        .select_from(Appointment)
        .outerjoin(ServiceType, ServiceType.id == Appointment.service_type_id)
        .where(Appointment.status != AppointmentStatus.CANCELLED,
               Appointment.technician_id.is_not(None),
               Appointment.starts_at < end, Appointment.ends_at > start,
               in_scope(Appointment.technician_id, filters))
        .group_by(Appointment.technician_id)
        .subquery()
    )


def utilisation(session: Session, filters: Filters) -> Report:
    start = literal(filters.start, UTCDateTime())
    end = literal(filters.end, UTCDateTime())
    available = _available(filters, start, end)
    booked = _booked(filters, start, end)
    query = (
        select(User.login, func.coalesce(booked.c.booked, 0), func.coalesce(booked.c.travel, 0),
               func.coalesce(available.c.available, 0))
        .outerjoin(available, available.c.technician_id == User.id)
        .outerjoin(booked, booked.c.technician_id == User.id)
        .where(User.role == Role.TECHNICIAN, in_scope(User.id, filters))
        .order_by(User.login)
    )
    rows: list[tuple[Cell, ...]] = []
    totals = [0, 0, 0]
    for login, busy, drive, working in session.execute(query):
        busy, drive, working = int(busy), int(drive), int(working)
        totals = [totals[0] + busy, totals[1] + drive, totals[2] + working]
        rows.append((login, round(busy / HOUR, 2), round(drive / HOUR, 2), round(working / HOUR, 2),
                     ratio(busy + drive, working)))
    return Report(Metric.UTILISATION, filters,
                  ("technician", "booked_hours", "travel_hours", "working_hours", "utilisation"),
                  rows, {"booked_hours": round(totals[0] / HOUR, 2),
                         "travel_hours": round(totals[1] / HOUR, 2),
                         "working_hours": round(totals[2] / HOUR, 2),
                         "utilisation": ratio(totals[0] + totals[1], totals[2])})
