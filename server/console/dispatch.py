"""The board (/console/board) and moving visits from it (a form, a menu or a drop)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import request
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from server import scheduling
from server.console import board as boarding
from server.console.routes import bp, dispatcher_only, page, request_id
from server.console.session import member
from server.context import Context
from server.directory import find_user
from server.errors import Conflict, InvalidInput, NotFound, SlotTaken
from server.models import Appointment, AuditEntry, Job
from server.scheduling.rules import BookingRefused
from server.web.context import database, settings

VIEWS = {"day": 1, "week": 7}


def _zone() -> ZoneInfo:
    signed_in = member()
    return ZoneInfo(signed_in.timezone if signed_in and signed_in.timezone else settings().timezone)


def _first_day(zone: ZoneInfo) -> dt.date:
    given = request.values.get("day", "")
    try:
        return dt.date.fromisoformat(given) if given else dt.datetime.now(zone).date()
    except ValueError as exc:
        raise InvalidInput(f"{given!r} is not a date: use YYYY-MM-DD.") from exc


def _board(message: str = "", status: int = 200, tone: str = "notice") -> Response:
    zone = _zone()
    view = request.values.get("view", "day")
    if view not in VIEWS:
        view = "day"
    try:
        first = _first_day(zone)
    except InvalidInput as exc:
        first, message, status, tone = dt.datetime.now(zone).date(), exc.message, 400, "error"
    if view == "week":
        first -= dt.timedelta(days=first.weekday())
    team = request.values.get("team", "") or None
    with database().read() as session:
        rows, tray, teams = boarding.load(session, first, VIEWS[view], zone, team)
        latest = int(session.execute(select(func.max(AuditEntry.id))).scalar_one() or 0)
    step = dt.timedelta(days=VIEWS[view])
    return page("Board", "console/board.html", status, rows=rows, tray=tray, teams=teams,
                team=team or "", view=view, first=first, previous=first - step,
                following=first + step, zone=zone.key, message=message, tone=tone,
                technicians=[(r.login, r.name) for r in rows], latest=latest)


@bp.get("/board")
@dispatcher_only
def board() -> Response:
    return _board()


@bp.post("/visits/<int:appointment_id>/move")
@dispatcher_only
def move(appointment_id: int) -> Response:
    signed_in = member()
    assert signed_in is not None  # dispatcher_only
    zone = _zone()
    login = request.form.get("technician", "").strip()
    try:
        day = dt.date.fromisoformat(request.form.get("date", ""))
        clock = dt.time.fromisoformat(request.form.get("time", ""))
    except ValueError:
        return _board("Give the date as YYYY-MM-DD and the time as HH:MM.", 400, "error")
    starts_at = dt.datetime.combine(day, clock, zone).astimezone(dt.UTC)
    try:
        with database().write() as session:
            ctx = Context(session, signed_in.actor(request_id()), settings().organizer)
            appointment = session.get(Appointment, appointment_id, with_for_update=True,
                                      options=[selectinload(Appointment.job)
                                               .selectinload(Job.customer)])
            if appointment is None:
                raise NotFound(f"Visit #{appointment_id} is gone (deleted or never existed).")
            if request.form.get("version") != boarding.version(appointment):
                who = boarding.last_changed_by(session, appointment_id)
                return _board(f"“{appointment.job.title}” was changed by {who} since you "
                              "loaded the board; it now shows the current state. Try again.",
                              409, "error")
            technician = find_user(session, login) if login else None
            length = appointment.ends_at - appointment.starts_at
            target = (technician.login if technician else None,
                      appointment.technician.login if appointment.technician else None)
            try:
                if starts_at == appointment.starts_at and target[0] != target[1]:
                    scheduling.reassign(ctx, appointment, technician)
                else:
                    scheduling.reschedule(ctx, appointment, starts_at, starts_at + length,
                                          technician=technician)
            except SlotTaken:
                holder = technician or appointment.technician
                blocker = ("another visit" if holder is None else boarding.blocking_visit(
                    session, holder, starts_at, starts_at + length, appointment_id))
                raise SlotTaken(login, f"Refused: that time overlaps {blocker}.") from None
    except BookingRefused as exc:
        return _board(f"Refused: {exc.describe(zone.key)}", 409, "error")
    except (SlotTaken, Conflict, InvalidInput, NotFound) as exc:
        return _board(exc.message, exc.status, "error")
    return _board(f"Moved visit #{appointment_id} to {login or 'the tray'} at "
                  f"{starts_at.astimezone(zone):%a %d %b %H:%M}.")
