"""What can be booked: service types, technicians' working hours, time off and holidays.

Every write here is one audited domain function (the CLI and the API call these).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server import audit
from server.actions import Action
from server.context import Context, operation
from server.directory import SKILL
from server.errors import Conflict, InvalidInput, NotFound
from server.models import ServiceType, TimeOff, User, WorkingHours
from server.scheduling.hours import WEEKDAYS
from server.text import clean_text, one_line

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
WINDOW = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_TIME_OFF = dt.timedelta(days=366)
# name: (lowest, highest) for the whole-number fields of a service type
LIMITS = {
    "duration_minutes": (1, 12 * 60),
    "buffer_before_minutes": (0, 8 * 60),
    "buffer_after_minutes": (0, 8 * 60),
    "travel_minutes": (0, 8 * 60),
    "min_notice_minutes": (0, 60 * 24 * 60),
    "horizon_days": (1, 3650),  # up to ten years ahead
    "window_capacity": (0, 1000),
}
EDITABLE = (*LIMITS, "name", "description", "skills", "arrival_windows", "active", "remote")


def service_type_json(service: ServiceType) -> dict[str, Any]:
    return {
        "id": service.id, "slug": service.slug, "name": service.name,
        "description": service.description, "duration_minutes": service.duration_minutes,
        "buffer_before_minutes": service.buffer_before_minutes,
        "buffer_after_minutes": service.buffer_after_minutes,
        "travel_minutes": service.travel_minutes, "skills": list(service.skills or []),
        "min_notice_minutes": service.min_notice_minutes, "horizon_days": service.horizon_days,
        "arrival_windows": list(service.arrival_windows or []),
        "window_capacity": service.window_capacity, "active": service.active,
        "remote": service.remote,
    }


def _check_service_values(values: dict[str, Any]) -> dict[str, Any]:
    """Validated, cleaned values of a service type (only the keys given)."""
    cleaned = dict(values)
    for name, (low, high) in LIMITS.items():
        if name in values:
            number = values[name]
            if not isinstance(number, int) or isinstance(number, bool) or not low <= number <= high:
                raise InvalidInput(f"{name.replace('_', ' ')} must be a whole number from {low} "
                                   f"to {high}, not {number!r}.", name)
    if "name" in values:
        cleaned["name"] = one_line(values["name"])
        if not cleaned["name"]:
            raise InvalidInput("A service type needs a name.", "name")
    if "description" in values:
        cleaned["description"] = clean_text(values["description"])
    if "skills" in values:
        for skill in values["skills"]:
            if not SKILL.match(skill):
                raise InvalidInput(f"Skill {skill!r} must be letters, digits, '.', '_' or '-'.",
                                   "skills")
        cleaned["skills"] = sorted(set(values["skills"]))
    if "arrival_windows" in values:
        for window in values["arrival_windows"]:
            if not WINDOW.match(window) or window[:5] >= window[6:]:
                raise InvalidInput(f"Arrival window {window!r} must look like 08:00-12:00.",
                                   "arrival_windows")
        cleaned["arrival_windows"] = sorted(set(values["arrival_windows"]))
    return cleaned


@operation
def add_service_type(
    ctx: Context, slug: str, name: str, *, duration_minutes: int, description: str = "",
    buffer_before_minutes: int = 0, buffer_after_minutes: int = 0, travel_minutes: int = 0,
    skills: list[str] | None = None, min_notice_minutes: int = 120, horizon_days: int = 30,
    arrival_windows: list[str] | None = None, window_capacity: int = 0, remote: bool = False,
) -> ServiceType:
    if not SLUG.match(slug):
        raise InvalidInput(f"Service slug {slug!r} must be lower-case letters, digits and '-'.",
                           "slug")
    if ctx.session.scalars(select(ServiceType.id).where(ServiceType.slug == slug)).first():
        raise Conflict(f"Service type {slug!r} exists already; edit it instead.")
    values = _check_service_values({
        "name": name, "description": description, "duration_minutes": duration_minutes,
        "buffer_before_minutes": buffer_before_minutes,
        "buffer_after_minutes": buffer_after_minutes, "travel_minutes": travel_minutes,
        "skills": list(skills or []), "min_notice_minutes": min_notice_minutes,
        "horizon_days": horizon_days, "arrival_windows": list(arrival_windows or []),
        "window_capacity": window_capacity})
    service = ServiceType(slug=slug, active=True, remote=remote, **values)
    ctx.session.add(service)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.SERVICE_TYPE_ADD, "service_type", service.id,
                 after=service_type_json(service))
    return service


@operation
def edit_service_type(ctx: Context, service: ServiceType, **changes: Any) -> ServiceType:
    """Change some fields of a service type (see EDITABLE); booked visits keep their times."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidInput(f"Cannot change {', '.join(unknown)} of a service type; "
                           f"changeable: {', '.join(EDITABLE)}.")
    before = service_type_json(service)
    for name, value in _check_service_values(changes).items():
        setattr(service, name, value)
    after = service_type_json(service)
    if after != before:
        audit.record(ctx.session, ctx.actor, Action.SERVICE_TYPE_EDIT, "service_type", service.id,
                     before=before, after=after)
    return service


def find_service_type(session: Session, slug: str) -> ServiceType:
    found = session.scalars(select(ServiceType).where(ServiceType.slug == slug)).first()
    if found is None:
        raise NotFound(f"No service type {slug!r}.")
    return found


def service_types(session: Session, *, include_inactive: bool = True) -> list[ServiceType]:
    query = select(ServiceType).order_by(ServiceType.slug)
    if not include_inactive:
        query = query.where(ServiceType.active.is_(True))
    return list(session.scalars(query))


def weekday_number(name: str) -> int:
    """0 for "mon"/"monday"/"Mo", ... 6 for Sunday."""
    text = name.strip().lower()[:3]
    if text in WEEKDAYS:
        return WEEKDAYS.index(text)
    raise InvalidInput(f"{name!r} is not a weekday (mon, tue, wed, thu, fri, sat, sun).")


def _check_spans(spans: Iterable[tuple[str, str]], day: str = "") -> list[tuple[str, str]]:
    checked = []
    for starts, ends in spans:
        if not (HHMM.match(starts) and HHMM.match(ends)) or starts >= ends:
            raise InvalidInput(f"Working hours {starts}-{ends} must be HH:MM-HH:MM, start first.",
                               day)
        checked.append((starts, ends))
    ordered = sorted(checked)
    for (_, first_end), (second_start, _) in itertools.pairwise(ordered):
        if second_start < first_end:
            raise InvalidInput("Working hours of one day must not overlap.", day)
    return ordered


def working_hours_of(session: Session, technician: User) -> list[WorkingHours]:
    return list(session.scalars(
        select(WorkingHours).where(WorkingHours.technician_id == technician.id)
        .order_by(WorkingHours.weekday, WorkingHours.starts)))


def _week_json(session: Session, technician: User) -> dict[str, list[str]]:
    week: dict[str, list[str]] = {}
    for row in working_hours_of(session, technician):
        week.setdefault(WEEKDAYS[row.weekday], []).append(f"{row.starts}-{row.ends}")
    return week


def _replace_days(ctx: Context, technician: User, week: dict[int, list[tuple[str, str]]],
                  action: Action) -> list[WorkingHours]:
    before = _week_json(ctx.session, technician)
    rows = []
    for weekday, spans in sorted(week.items()):
        if not 0 <= weekday <= 6:
            raise InvalidInput(f"Weekday {weekday} must be 0 (Monday) to 6 (Sunday).")
        rows += [WorkingHours(technician_id=technician.id, weekday=weekday, starts=a, ends=b)
                 for a, b in _check_spans(spans, WEEKDAYS[weekday])]
    ctx.session.execute(delete(WorkingHours).where(WorkingHours.technician_id == technician.id,
                                                   WorkingHours.weekday.in_(list(week))))
    ctx.session.add_all(rows)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, action, "user", technician.id, before=before,
                 after={**_week_json(ctx.session, technician), "timezone": technician.timezone})
    return working_hours_of(ctx.session, technician)


@operation
def set_working_hours(ctx: Context, technician: User,
                      week: dict[int, list[tuple[str, str]]]) -> list[WorkingHours]:
    """Replace a technician's weekly hours: {0: [("08:00", "12:00"), ("13:00", "17:00")], ...}.

    Days not named have no hours afterwards. Times are in the technician's zone.
    """
    full = {day: list(week.get(day, [])) for day in range(7)}
    unknown = set(week) - set(full)
    if unknown:
        raise InvalidInput(f"Weekday {min(unknown)} must be 0 (Monday) to 6 (Sunday).")
    return _replace_days(ctx, technician, full, Action.WORKING_HOURS_SET)


@operation
def set_day_hours(ctx: Context, technician: User, weekdays: Iterable[int],
                  spans: list[tuple[str, str]]) -> list[WorkingHours]:
    """Set the hours of some weekdays (others stay); an empty `spans` clears those days."""
    days = sorted(set(weekdays))
    if not days:
        raise InvalidInput("Name at least one weekday.")
    return _replace_days(ctx, technician, {day: list(spans) for day in days},
                         Action.WORKING_HOURS_SET if spans else Action.WORKING_HOURS_CLEAR)


def _check_range(starts_at: dt.datetime, ends_at: dt.datetime, what: str) -> None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidInput("Times must carry a time zone.")
    if ends_at <= starts_at:
        raise InvalidInput(f"{what} must end after it starts.", "ends_at")
    if ends_at - starts_at > MAX_TIME_OFF:
        raise InvalidInput(f"{what} lasts at most a year; add longer leave in parts.", "ends_at")


def time_off_json(row: TimeOff) -> dict[str, Any]:
    return {"id": row.id, "technician_id": row.technician_id,
            "starts_at": row.starts_at.isoformat(), "ends_at": row.ends_at.isoformat(),
            "reason": row.reason}


@operation
def add_time_off(ctx: Context, technician: User | None, starts_at: dt.datetime,
                 ends_at: dt.datetime, reason: str = "") -> TimeOff:
    """Leave for one technician, or a holiday for everyone (technician None)."""
    _check_range(starts_at, ends_at, "Time off" if technician else "A holiday")
    row = TimeOff(technician_id=technician.id if technician else None, starts_at=starts_at,
                  ends_at=ends_at, reason=one_line(reason)[:200])
    ctx.session.add(row)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.TIME_OFF_ADD if technician else Action.HOLIDAY_ADD,
                 "user" if technician else "holiday", technician.id if technician else row.id,
                 after=time_off_json(row))
    return row


def add_holiday(ctx: Context, starts_at: dt.datetime, ends_at: dt.datetime,
                reason: str = "") -> TimeOff:
    """A day (or days) nobody is booked: a public holiday, the company outing."""
    return add_time_off(ctx, None, starts_at, ends_at, reason)


@operation
def remove_time_off(ctx: Context, time_off_id: int, technician: User | None) -> TimeOff:
    """Remove a technician's time off (or, with technician None, a holiday)."""
    row = ctx.session.get(TimeOff, time_off_id)
    owner = technician.id if technician else None
    if row is None or row.technician_id != owner:
        what = f"time off of {technician.login}" if technician else "holiday"
        raise NotFound(f"No {what} #{time_off_id}.")
    before = time_off_json(row)
    ctx.session.delete(row)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.TIME_OFF_REMOVE if technician else Action.HOLIDAY_REMOVE,
                 "user" if technician else "holiday", owner if owner is not None else time_off_id,
                 before=before)
    return row


def time_off_of(session: Session, technician: User | None, *,
                since: dt.datetime | None = None) -> list[TimeOff]:
    """A technician's time off (technician None: the holidays), earliest first."""
    query = select(TimeOff).where(
        TimeOff.technician_id == technician.id if technician else TimeOff.technician_id.is_(None))
    if since is not None:
        query = query.where(TimeOff.ends_at > since)
    return list(session.scalars(query.order_by(TimeOff.starts_at, TimeOff.id)))
