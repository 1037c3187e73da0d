"""Settings of each technician: weekly working hours, time off, skills and service areas.

Hours and time off are read and typed in the technician's own time zone (where the domain
keeps them). Each form calls one domain operation; what it refuses is shown beside the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from zoneinfo import ZoneInfo

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from werkzeug.wrappers import Response

from server import directory
from server.actions import Action
from server.console.routes import bp, page, refused
from server.console.settings_common import (
    Problems,
    Saved,
    StaleForm,
    acting,
    back,
    check_version,
    listed,
    local_span,
    number,
    saved_message,
    span,
    staff_pages,
    text,
    version,
)
from server.errors import FieldcalError, InvalidInput, NotFound
from server.models import Role, User, utcnow
from server.scheduling import areas, capacity
from server.scheduling.hours import WEEKDAYS
from server.web.context import database

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TEMPLATE = "console/settings/technician.html"
PAGE = "console.settings_technician"
# the domain's field → the form's field
TIME_OFF_FIELDS = {"starts_at": "first_day", "ends_at": "last_day", "first_day": "first_day",
                   "from_time": "from_time", "last_day": "last_day", "until_time": "until_time"}
AREA_FIELDS = {"country": "country", "postcode_prefix": "prefixes", "centre": "centre",
               "radius_km": "radius_km"}
SKILL_FIELDS = {"skills": "skills"}
HOURS_FIELDS = {day: f"hours_{day}" for day in WEEKDAYS}


def _technician(session: Session, login: str, *, lock: bool = False) -> User:
    user = directory.find_user(session, login)
    if user.role != Role.TECHNICIAN:
        raise NotFound(f"{login!r} is not a technician.")
    if lock:  # edits from two pages at once take turns (SQLite writes already do)
        session.refresh(user, with_for_update=True)
    return user


def _hours_text(session: Session, user: User) -> dict[str, str]:
    week: dict[str, list[str]] = {day: [] for day in WEEKDAYS}
    for row in capacity.working_hours_of(session, user):
        week[WEEKDAYS[row.weekday]].append(f"{row.starts}-{row.ends}")
    return {f"hours_{day}": ", ".join(spans) for day, spans in week.items()}


def _technician_page(login: str, problems: Problems | None = None, form: str = "",
                     given: Mapping[str, str] | None = None) -> Response:
    problems = problems or Problems()
    with database().read() as session:
        try:
            user = _technician(session, login)
        except NotFound as exc:
            return refused(404, "No such technician", exc.message)
        own = areas.areas_of(session, technician=user)
        inherited = [(team.name, areas.rule_label(rule))
                     for team in sorted(user.teams, key=lambda t: t.id)
                     for rule in areas.areas_of(session, team=team)]
        values = {**_hours_text(session, user), "skills": ", ".join(user.skills or [])}
        versions = {"hours": version(_hours_text(session, user)),
                    "skills": version(sorted(user.skills or []))}
        zone = user.timezone
        here = ZoneInfo(zone)
        time_off = [(row.id, local_span(row.starts_at, row.ends_at, here), row.reason)
                    for row in capacity.time_off_of(session, user, since=utcnow())]
        person = {"login": user.login, "name": user.name, "timezone": zone,
                  "teams": [t.name for t in user.teams], "active": user.active}
        own_areas = [(rule.id, areas.rule_label(rule)) for rule in own]
    return page(f"{person['name']} · Settings", TEMPLATE, problems.status, person=person,
                days=[(day, DAY_NAMES[i]) for i, day in enumerate(WEEKDAYS)], values=values,
                time_off=time_off, own_areas=own_areas, inherited=inherited, versions=versions,
                errors=problems.messages, form=form,
                given=None if given is None else dict(given),
                saved=saved_message())


def _refused(login: str, form: str, error: FieldcalError, fields: Mapping[str, str]) -> Response:
    given = None if isinstance(error, StaleForm) else request.form.to_dict()
    return _technician_page(login, Problems().add(error, fields), form, given)


@bp.get("/settings/technicians")
@staff_pages
def settings_technicians() -> Response:
    with database().read() as session:
        people = session.scalars(select(User).where(User.role == Role.TECHNICIAN)
                                 .options(selectinload(User.teams)).order_by(User.name)).all()
        hours = {p.id: bool(capacity.working_hours_of(session, p)) for p in people}
        rows = [{"login": p.login, "name": p.name, "timezone": p.timezone, "active": p.active,
                 "teams": ", ".join(t.name for t in p.teams), "skills": ", ".join(p.skills or []),
                 "has_hours": hours[p.id]} for p in people]
    return page("Technicians · Settings", "console/settings/technicians.html", rows=rows)


@bp.get("/settings/technicians/<login>")
@staff_pages
def settings_technician(login: str) -> Response:
    return _technician_page(login)


def _spans(field: str) -> list[tuple[str, str]]:
    """"08:00-12:00, 13:00-17:00" as the domain's (start, end) pairs (it checks each)."""
    spans = []
    for piece in listed(field):
        starts, _, ends = piece.replace("–", "-").replace("—", "-").partition("-")
        spans.append((starts.strip(), ends.strip()))
    return spans


@bp.post("/settings/technicians/<login>/hours")
@staff_pages
def settings_hours(login: str) -> Response:
    week = {index: _spans(f"hours_{day}") for index, day in enumerate(WEEKDAYS)}
    try:
        with acting() as ctx:
            user = _technician(ctx.session, login, lock=True)
            check_version(ctx.session, _hours_text(ctx.session, user), "user", user.id,
                          Action.WORKING_HOURS_SET, "These working hours were")
            capacity.set_working_hours(ctx, user, week)
    except FieldcalError as exc:
        return _refused(login, "hours", exc, HOURS_FIELDS)
    return back(PAGE, Saved.HOURS, login=login, _anchor="hours")


@bp.post("/settings/technicians/<login>/skills")
@staff_pages
def settings_skills(login: str) -> Response:
    try:
        with acting() as ctx:
            user = _technician(ctx.session, login, lock=True)
            check_version(ctx.session, sorted(user.skills or []), "user", user.id,
                          Action.USER_UPDATE, "These skills were")
            directory.update_user(ctx, user, skills=listed("skills"))
    except FieldcalError as exc:
        return _refused(login, "skills", exc, SKILL_FIELDS)
    return back(PAGE, Saved.SKILLS, login=login, _anchor="skills")


@bp.post("/settings/technicians/<login>/time-off")
@staff_pages
def settings_add_time_off(login: str) -> Response:
    try:
        with acting() as ctx:
            user = _technician(ctx.session, login)
            starts_at, ends_at = span("first_day", "from_time", "last_day", "until_time",
                                      ZoneInfo(user.timezone))
            capacity.add_time_off(ctx, user, starts_at, ends_at, text("reason", 200))
    except FieldcalError as exc:
        return _refused(login, "time_off", exc, TIME_OFF_FIELDS)
    return back(PAGE, Saved.TIME_OFF_ADDED, login=login, _anchor="time-off")


@bp.post("/settings/technicians/<login>/time-off/<int:time_off_id>/remove")
@staff_pages
def settings_remove_time_off(login: str, time_off_id: int) -> Response:
    try:
        with acting() as ctx:
            capacity.remove_time_off(ctx, time_off_id, _technician(ctx.session, login))
    except FieldcalError as exc:
        return _refused(login, "time_off", exc, {})
    return back(PAGE, Saved.TIME_OFF_REMOVED, login=login, _anchor="time-off")


def _centre() -> tuple[float, float] | None:
    given = text("centre", 80)
    if not given:
        return None
    latitude, _, longitude = given.replace(";", ",").partition(",")
    try:
        return (float(latitude), float(longitude))
    except ValueError:
        raise InvalidInput(f"Give the centre as latitude,longitude, e.g. 52.5200,13.4050 (not "
                           f"{given!r}).", "centre") from None


@bp.post("/settings/technicians/<login>/areas")
@staff_pages
def settings_add_area(login: str) -> Response:
    try:
        centre = _centre()
        radius = number("radius_km", "The radius") if text("radius_km") else None
        with acting() as ctx:
            user = _technician(ctx.session, login)
            for prefix in listed("prefixes") or [""]:
                areas.add_service_area(ctx, technician=user, country=text("country", 60),
                                       postcode_prefix=prefix, centre=centre, radius_km=radius)
    except FieldcalError as exc:
        return _refused(login, "area", exc, AREA_FIELDS)
    return back(PAGE, Saved.AREA_ADDED, login=login, _anchor="areas")


@bp.post("/settings/technicians/<login>/areas/<int:area_id>/remove")
@staff_pages
def settings_remove_area(login: str, area_id: int) -> Response:
    try:
        with acting() as ctx:
            areas.remove_service_area(ctx, area_id, technician=_technician(ctx.session, login))
    except FieldcalError as exc:
        return _refused(login, "area", exc, {})
    return back(PAGE, Saved.AREA_REMOVED, login=login, _anchor="areas")

