"""What can be booked: service types, technicians' working hours, time off and holidays."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import delete

from server import audit
from server.context import Context, operation
from server.errors import InvalidInput
from server.models import ServiceType, TimeOff, User, WorkingHours
from server.text import one_line

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
WINDOW = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")


@operation
def add_service_type(
    ctx: Context, slug: str, name: str, *, duration_minutes: int, description: str = "",
    buffer_before_minutes: int = 0, buffer_after_minutes: int = 0, travel_minutes: int = 0,
    skills: list[str] | None = None, min_notice_minutes: int = 120, horizon_days: int = 30,
    arrival_windows: list[str] | None = None, window_capacity: int = 0,
) -> ServiceType:
    if duration_minutes <= 0 or duration_minutes > 12 * 60:
        raise InvalidInput("A service lasts between 1 minute and 12 hours.")
    for window in arrival_windows or []:
        if not WINDOW.match(window) or window[:5] >= window[6:]:
            raise InvalidInput(f"Arrival window {window!r} must look like 08:00-12:00.")
    service = ServiceType(
        slug=slug, name=one_line(name), description=description, duration_minutes=duration_minutes,
        buffer_before_minutes=buffer_before_minutes, buffer_after_minutes=buffer_after_minutes,
        travel_minutes=travel_minutes, skills=sorted(set(skills or [])),
        min_notice_minutes=min_notice_minutes, horizon_days=horizon_days,
        arrival_windows=list(arrival_windows or []), window_capacity=window_capacity, active=True)
    ctx.session.add(service)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, "service_type.add", "service_type", service.id,
                 after={"slug": slug, "duration_minutes": duration_minutes})
    return service


@operation
def set_working_hours(ctx: Context, technician: User,
                      week: dict[int, list[tuple[str, str]]]) -> list[WorkingHours]:
    """Replace a technician's weekly hours: {0: [("08:00", "12:00"), ("13:00", "17:00")], ...}."""
    rows = []
    for weekday, spans in sorted(week.items()):
        if not 0 <= weekday <= 6:
            raise InvalidInput(f"Weekday {weekday} must be 0 (Monday) to 6 (Sunday).")
        for starts, ends in spans:
            if not (HHMM.match(starts) and HHMM.match(ends)) or starts >= ends:
                raise InvalidInput(f"Working hours {starts}-{ends} must be HH:MM-HH:MM, start first.")
            rows.append(WorkingHours(technician_id=technician.id, weekday=weekday,
                                     starts=starts, ends=ends))
    ctx.session.execute(delete(WorkingHours).where(WorkingHours.technician_id == technician.id))
    ctx.session.add_all(rows)
    audit.record(ctx.session, ctx.actor, "working_hours.set", "user", technician.id,
                 after={str(k): v for k, v in week.items()})
    return rows


@operation
def add_time_off(ctx: Context, technician: User | None, starts_at: dt.datetime,
                 ends_at: dt.datetime, reason: str = "") -> TimeOff:
    """Leave for one technician, or a holiday for everyone (technician None)."""
    if ends_at <= starts_at:
        raise InvalidInput("Time off must end after it starts.")
    row = TimeOff(technician_id=technician.id if technician else None, starts_at=starts_at,
                  ends_at=ends_at, reason=one_line(reason))
    ctx.session.add(row)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, "time_off.add", "user" if technician else "holiday",
                 technician.id if technician else row.id,
                 after={"starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat(),
                        "reason": row.reason})
    return row
