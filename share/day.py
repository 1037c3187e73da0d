"""The technician's "my day" page: /d/<token> (a signed `day` link), made for a phone.

Today's and tomorrow's visits in order (the technician's time zone), each with the
site (a map link), arrival window, the customer's phone, problem and equipment, and
big buttons: On my way → On site → Done (with a note), or Can't make it. GET never
changes anything; every button is a POST with a form token bound to the link's id and
version, and runs one domain call as the technician (channel `day-link`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, make_response, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from server import links
from server.context import Context
from server.errors import Conflict, Forbidden, InvalidInput
from server.models import Appointment, AppointmentStatus, Job, ShareLink, User, utcnow
from server.scheduling import progress
from server.scheduling.progress import Step
from server.text import clean_text
from server.web.context import database, link_signer, settings
from share import pagekit
from share.routes import note_use, refuse_input
from share.views import progress as progress_of

log = logging.getLogger(__name__)
bp = Blueprint("day", __name__)
bp.after_request(pagekit.protect)
bp.register_error_handler(InvalidInput, refuse_input)

CSRF_SCOPE = "day"
DAYS_SHOWN = 2  # today and tomorrow
BUTTONS = {Step.ON_MY_WAY: "On my way", Step.ON_SITE: "On site", Step.DONE: "Done",
           Step.CANT_MAKE_IT: "Can't make it"}
NOTICES = {Step.ON_MY_WAY: "On your way: the customer has been told.",
           Step.ON_SITE: "Marked on site.",
           Step.DONE: "Marked done. Thank you!",
           Step.CANT_MAKE_IT: "The visit is back with dispatch; they have been alerted."}
STEP_NAMES = frozenset(s.value for s in Step)
CALLS = {Step.ON_MY_WAY: progress.on_my_way, Step.ON_SITE: progress.on_site}


@dataclass(frozen=True)
class DayVisit:
    id: int
    starts: str
    ends: str
    window: str
    title: str
    customer: str
    phone: str
    phone_href: str
    address: str
    map_url: str
    problem: str
    equipment: str
    status: str
    status_key: str
    note: str
    eta: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class DayList:
    label: str
    visits: list[DayVisit]


def map_url(address: str, latitude: float | None, longitude: float | None) -> str:
    """OpenStreetMap at the site: its coordinates if known, else a search for the address."""
    if latitude is not None and longitude is not None:
        return (f"https://www.openstreetmap.org/?mlat={latitude:.5f}&mlon={longitude:.5f}"
                f"#map=17/{latitude:.5f}/{longitude:.5f}")
    return "https://www.openstreetmap.org/search?query=" + quote_plus(" ".join(address.split()))


def _resolve(session: Session, token: str) -> tuple[ShareLink, User] | None:
    try:
        link = links.resolve(session, link_signer(), token, links.Purpose.DAY)
    except links.InvalidLink as exc:
        log.info("day page %s refused: %s", links.redact(token), exc.reason)
        return None
    technician = session.get(User, link.subject_id)
    if link.subject_kind != links.SubjectKind.TECHNICIAN or technician is None or not technician.active:
        return None
    return link, technician


def _shown(session: Session, technician: User, zone: ZoneInfo) -> list[Appointment]:
    """The technician's visits today and tomorrow (their zone), in order; holds left out."""
    first = dt.datetime.combine(utcnow().astimezone(zone).date(), dt.time(), zone)
    last = dt.datetime.combine(first.date() + dt.timedelta(days=DAYS_SHOWN), dt.time(), zone)
    return list(session.scalars(
        select(Appointment)
        .where(Appointment.technician_id == technician.id,
               Appointment.status != AppointmentStatus.CANCELLED,
               Appointment.hold_expires_at.is_(None),
               Appointment.starts_at < last, Appointment.ends_at > first)
        .options(selectinload(Appointment.job).selectinload(Job.site),
                 selectinload(Appointment.job).selectinload(Job.customer),
                 selectinload(Appointment.service_type))
        .order_by(Appointment.starts_at, Appointment.id)))


def _visit(session: Session, appointment: Appointment, zone: ZoneInfo) -> DayVisit:
    job = appointment.job
    site = job.site
    customer = job.customer
    state = progress_of(appointment)
    window = ""
    if appointment.window_start is not None and appointment.window_end is not None:
        window = (f"{appointment.window_start.astimezone(zone):%H:%M}–"
                  f"{appointment.window_end.astimezone(zone):%H:%M}")
    address = clean_text(site.address) if site is not None else ""
    equipment = " ".join(part for part in (site.compressor_make, site.compressor_model) if part) \
        if site is not None else ""
    if site is not None and site.compressor_serial:
        equipment += f" (serial {site.compressor_serial})"
    digits = "".join(c for c in customer.phone if c.isdigit() or c == "+")
    eta = progress.estimated_arrival(session, appointment)
    return DayVisit(
        id=appointment.id, starts=f"{appointment.starts_at.astimezone(zone):%H:%M}",
        ends=f"{appointment.ends_at.astimezone(zone):%H:%M}", window=window, title=job.title,
        customer=customer.name, phone=customer.phone, phone_href=f"tel:{digits}" if digits else "",
        address=address,
        map_url=map_url(address, site.latitude, site.longitude) if site is not None and address else "",
        problem=clean_text(job.problem), equipment=equipment.strip(), status=state.label,
        status_key=state.key, note=appointment.progress_note,
        eta=f"{eta.astimezone(zone):%H:%M}" if eta is not None else "",
        steps=progress.steps(appointment))


def _page(session: Session, token: str, link: ShareLink, technician: User, *, status: int = 200,
          notice: str = "", error: str = "") -> Response:
    zone = ZoneInfo(technician.timezone)
    today = utcnow().astimezone(zone).date()
    days = [DayList(f"{label}, {day:%A} {day.day} {day:%B}", []) for label, day in
            (("Today", today), ("Tomorrow", today + dt.timedelta(days=1)))]
    for appointment in _shown(session, technician, zone):
        index = (appointment.starts_at.astimezone(zone).date() - today).days
        days[min(max(index, 0), DAYS_SHOWN - 1)].visits.append(_visit(session, appointment, zone))
    return make_response(render_template(
        "share/day.html", token=token, name=technician.first_name, zone=zone.key, days=days,
        buttons=BUTTONS, steps=Step, note_limit=progress.NOTE_LIMIT,
        csrf=pagekit.form_signer().csrf_token(CSRF_SCOPE, link.id, link.version),
        notice=notice, error=error, **pagekit.phone_values()), status)


@bp.get("/d/<token>")
def page(token: str) -> Response:
    done = request.args.get("done", "")
    with database().read() as session:
        found = _resolve(session, token)
        if found is None:
            return pagekit.not_found()
        notice = NOTICES[Step(done)] if done in STEP_NAMES else ""
        response = _page(session, token, *found, notice=notice)
    note_use(found[0])
    return response




@bp.post("/d/<token>/visits/<int:appointment_id>/<step>")
def act(token: str, appointment_id: int, step: str) -> Response:
    if step not in STEP_NAMES:
        return pagekit.not_found()
    chosen = Step(step)
    limited = pagekit.rate_limited(CSRF_SCOPE)
    if limited is not None:
        return limited
    with database().read() as session:
        found = _resolve(session, token)
        if found is None:
            return pagekit.not_found()
        refusal = pagekit.csrf_refusal(CSRF_SCOPE, found[0].id, found[0].version)
        if refusal is not None:
            return refusal
    note = request.form.get("note", "")
    try:
        with database().write() as session:
            current = _resolve(session, token)
            if current is None or current[0].version != found[0].version:
                return pagekit.not_found()
            technician = current[1]
            shown = {a.id: a for a in _shown(session, technician, ZoneInfo(technician.timezone))}
            appointment = shown.get(appointment_id)
            if appointment is None:
                return pagekit.not_found()
            ctx = Context(session, progress.actor(technician.login, pagekit.request_id()),
                          settings().organizer)
            if chosen is Step.DONE:
                progress.done(ctx, appointment, note)
            elif chosen is Step.CANT_MAKE_IT:
                progress.cant_make_it(ctx, appointment, note)
            else:
                CALLS[chosen](ctx, appointment)
    except (Conflict, Forbidden, InvalidInput) as exc:
        with database().read() as session:
            again = _resolve(session, token)
            if again is None:
                return pagekit.not_found()
            return _page(session, token, *again, status=exc.status, error=exc.message)
    target = url_for(".page", token=token, done=chosen.value, _anchor=f"visit-{appointment_id}")
    return redirect(target, 303)  # type: ignore[return-value]
