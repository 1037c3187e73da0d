"""When visits happen: by hour of day and weekday, on the technician's own clock.

Visits (not cancelled) that start in the range are placed by their start as the assigned
technician's wall clock shows it (a visit at 23:30 in New York is a 23 o'clock visit on
that weekday, whatever the UTC date); unassigned visits by the business's zone.
"""

from __future__ import annotations

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from server.models import Appointment, AppointmentStatus, User
from server.reports.base import Cell, Filters, Metric, Report, in_scope
from server.timesql import hour_of, local_time, quarter_hour, sunday_weekday_of

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def booking_hours(session: Session, filters: Filters, business_zone: str) -> Report:
    # Counted per technician zone and UTC quarter hour first, so the time-zone arithmetic
    # runs once per quarter hour that has visits, not once per visit.
    quarter = quarter_hour(Appointment.starts_at)
    buckets = (
        select(User.timezone.label("zone"), quarter.label("at"), func.count().label("visits"))
        .select_from(Appointment)
        .outerjoin(User, User.id == Appointment.technician_id)
        .where(Appointment.status != AppointmentStatus.CANCELLED,
               Appointment.starts_at >= filters.start, Appointment.starts_at < filters.end,
               in_scope(Appointment.technician_id, filters))
        .group_by(User.timezone, quarter)
        .cte("buckets").prefix_with("MATERIALIZED")
    )
    wall = local_time(buckets.c.at, func.coalesce(buckets.c.zone, literal(business_zone)))
    placed = (
        select(sunday_weekday_of(wall).label("weekday"), hour_of(wall).label("hour"),
               buckets.c.visits)
        .cte("placed").prefix_with("MATERIALIZED")
    )
    query = (select(placed.c.weekday, placed.c.hour, func.sum(placed.c.visits))
             .group_by(placed.c.weekday, placed.c.hour).order_by(placed.c.weekday, placed.c.hour))
    cells = {((int(day) + 6) % 7, int(at)): int(n) for day, at, n in session.execute(query)}
    rows: list[tuple[Cell, ...]] = [(WEEKDAYS[day], at, n) for (day, at), n in sorted(cells.items())]
    return Report(Metric.BOOKING_HOURS, filters, ("weekday", "hour", "visits"), rows,
                  {"visits": sum(cells.values())})


def by_weekday(report: Report) -> list[tuple[str, int]]:
    """The report's visits summed per weekday, Monday first."""
    totals = dict.fromkeys(WEEKDAYS, 0)
    for day, _hour, n in report.rows:
        totals[str(day)] += int(n or 0)
    return list(totals.items())


def by_hour(report: Report) -> list[tuple[int, int]]:
    """The report's visits summed per hour of day, 0-23."""
    totals = dict.fromkeys(range(24), 0)
    for _day, hour, n in report.rows:
        totals[int(hour or 0)] += int(n or 0)
    return list(totals.items())
