"""The manage page: /m/<token> shows a booked visit; POSTs move or cancel it until the cut-off.

GET never changes anything (mail scanners follow links). Cancelling takes two
steps: /m/<token>/cancel (GET) asks for confirmation and an optional reason, its
form POSTs. Both actions need a form token bound to the link's id and version
and, when the browser names it, a same-site origin. The cut-off is enforced by
the domain (PastCutoff).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, make_response, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from server import links
from server.context import Context
from server.errors import Conflict, InvalidInput, SlotTaken
from server.ical import Audience, render_appointment
from server.models import Appointment, AppointmentStatus, ShareLink, utcnow
from server.scheduling import booking
from server.scheduling.areas import area_of_site
from server.scheduling.availability import Slot
from server.text import clean_text
from server.web.context import database, link_signer, settings
from share import pagekit
from share.booking import TAKEN, live_link, subscribe_urls
from share.forms import parse_slot, parse_week
from share.picker import visit_view, week_of
from share.routes import refuse_input

log = logging.getLogger(__name__)
bp = Blueprint("manage", __name__)
bp.after_request(pagekit.protect)
bp.register_error_handler(InvalidInput, refuse_input)

REASON_LIMIT = 500
NOTICES = {
    "moved": "Your visit has been moved. The new time is shown below.",
    "cancelled": "Your visit is cancelled. Thank you for letting us know.",
}


class _Gone(Exception):
    """The link stopped working between reading the page and acting on it."""


def _cutoff() -> dt.timedelta:
    return dt.timedelta(hours=settings().manage_cutoff_hours)


def _resolve(session: Session, token: str) -> tuple[ShareLink, Appointment] | None:
    try:
        link = links.resolve(session, link_signer(), token, links.Purpose.MANAGE)
    except links.InvalidLink as exc:
        log.info("manage page %s refused: %s", links.redact(token), exc.reason)
        return None
    if link.subject_kind != links.SubjectKind.APPOINTMENT:
        return None
    appointment = session.get(Appointment, link.subject_id)
    if appointment is None:
        return None
    return link, appointment


def _page(session: Session, token: str, link: ShareLink, appointment: Appointment, *,
          status: int = 200, notice: str = "", message: str = "", error: str = "",
          slot_error: str = "", around: dt.datetime | None = None) -> Response:
    customer = appointment.job.customer
    zone = ZoneInfo(customer.timezone)
    now = utcnow()
    cancelled = appointment.status == AppointmentStatus.CANCELLED
    cutoff = pagekit.cutoff_values(appointment.starts_at, zone, now)
    past_cutoff = bool(cutoff["past_cutoff"])
    service = appointment.service_type
    week = None
    if not cancelled and not past_cutoff and service is not None and service.active:
        week = week_of(session, service, zone, now=now, windows_zone=settings().timezone,
                       requested=parse_week(request.args.get("week", "")),
                       around=around or appointment.starts_at,
                       exclude_appointment_id=appointment.id, skip=appointment.starts_at,
                       area=area_of_site(appointment.job.site))
    share = live_link(session, links.Purpose.SHARE, appointment.id)
    return make_response(render_template(
        "share/manage.html", token=token, visit=visit_view(appointment, zone), week=week,
        past=appointment.ends_at <= now, **cutoff,
        csrf=pagekit.form_signer().csrf_token("manage", link.id, link.version),
        subscribe=subscribe_urls(session, share) if share and not cancelled else None,
        notice=notice, message=message, error=error, slot_error=slot_error,
        **pagekit.phone_values()), status)


@bp.get("/m/<token>")
def page(token: str) -> Response:
    with database().read() as session:
        found = _resolve(session, token)
        if found is None:
            return pagekit.not_found()
        return _page(session, token, *found, notice=NOTICES.get(request.args.get("done", ""), ""))


@bp.get("/m/<token>/visit.ics")
def visit_ics(token: str) -> Response:
    with database().read() as session:
        found = _resolve(session, token)
        if found is None:
            return pagekit.not_found()
        appointment = found[1]
        text = render_appointment(appointment, Audience.CUSTOMER, settings().organizer)
    return Response(text.encode("utf-8"), 200, {
        "Content-Type": "text/calendar; charset=utf-8",
        "Content-Disposition": f'attachment; filename="service-visit-{appointment.id}.ics"',
    })


def _show(token: str, **options: object) -> Response:
    with database().read() as session:
        found = _resolve(session, token)
        if found is None:
            return pagekit.not_found()
        return _page(session, token, *found, **options)  # type: ignore[arg-type]


def _guard(token: str) -> Response | ShareLink:
    """The live link behind a POST, or the response that refuses it (rate, link, CSRF)."""
    limited = pagekit.rate_limited("manage")
    if limited is not None:
        return limited
    with database().read() as session:
        found = _resolve(session, token)
        if found is None:
            return pagekit.not_found()
        link = found[0]
        return pagekit.csrf_refusal("manage", link.id, link.version) or link


def _act(token: str, link: ShareLink, action: Callable[[Context, Appointment], object], done: str,
         around: dt.datetime | None = None) -> Response:
    try:
        with database().write() as session:
            current = _resolve(session, token)
            if current is None or current[0].version != link.version:
                raise _Gone()
            appointment = current[1]
            customer = appointment.job.customer
            ctx = Context(session, pagekit.customer_actor(customer, customer.email, "manage"),
                          settings().organizer)
            action(ctx, appointment)
    except _Gone:
        return pagekit.not_found()
    except booking.PastCutoff as exc:
        return _show(token, status=403, error=exc.message)
    except SlotTaken:
        return _show(token, status=409, message=TAKEN, around=around)
    except (Conflict, InvalidInput) as exc:
        return _show(token, status=exc.status, error=exc.message)
    return redirect(url_for(".page", token=token, done=done), 303)  # type: ignore[return-value]


def _free_slot(token: str, starts_at: dt.datetime, windows_zone: str) -> Slot | None:
    """The picked slot, read before the write; None leaves the checks to the domain call."""
    with database().read() as session:
        found = _resolve(session, token)
        if found is None:
            return None
        appointment = found[1]
        now = utcnow()
        service = appointment.service_type
        if (service is None or appointment.status == AppointmentStatus.CANCELLED
                or appointment.starts_at - now < _cutoff()):
            return None  # refused by the domain with its own message
        return booking.find_slot(session, service, starts_at, now, windows_zone,
                                 exclude_id=appointment.id, area=area_of_site(appointment.job.site))


@bp.post("/m/<token>/reschedule")
def reschedule(token: str) -> Response:
    link = _guard(token)
    if isinstance(link, Response):
        return link
    starts_at = parse_slot(request.form.get("slot", ""))
    if starts_at is None:
        return _show(token, status=400, slot_error="Choose the new time for the visit")
    windows_zone = settings().timezone
    try:
        slot = _free_slot(token, starts_at, windows_zone)
    except SlotTaken:
        return _show(token, status=409, message=TAKEN, around=starts_at)

    def move(ctx: Context, appointment: Appointment) -> object:
        return booking.customer_reschedule(ctx, appointment, starts_at, cutoff=_cutoff(),
                                           windows_zone=windows_zone, slot=slot)

    return _act(token, link, move, "moved", around=starts_at)


def _cancel_page(token: str, *, status: int = 200, reason: str = "", error: str = "") -> Response:
    with database().read() as session:
        found = _resolve(session, token)
        if found is None:
            return pagekit.not_found()
        link, appointment = found
        zone = ZoneInfo(appointment.job.customer.timezone)
        cutoff = pagekit.cutoff_values(appointment.starts_at, zone, utcnow())
        if appointment.status == AppointmentStatus.CANCELLED or cutoff["past_cutoff"]:
            return redirect(url_for(".page", token=token), 303)  # type: ignore[return-value]
        return make_response(render_template(
            "share/manage_cancel.html", token=token, visit=visit_view(appointment, zone),
            csrf=pagekit.form_signer().csrf_token("manage", link.id, link.version),
            reason=reason, error=error, reason_limit=REASON_LIMIT, **cutoff,
            **pagekit.phone_values()), status)


@bp.get("/m/<token>/cancel")
def cancel_form(token: str) -> Response:
    """Are you sure? The visit, an optional reason, and the button that cancels."""
    return _cancel_page(token)


@bp.post("/m/<token>/cancel")
def cancel(token: str) -> Response:
    link = _guard(token)
    if isinstance(link, Response):
        return link
    reason = clean_text(request.form.get("reason", ""))
    if len(reason) > REASON_LIMIT:
        return _cancel_page(token, status=400, reason=reason,
                            error=f"Use at most {REASON_LIMIT} characters (you used {len(reason)})")

    def drop(ctx: Context, appointment: Appointment) -> object:
        return booking.customer_cancel(ctx, appointment, cutoff=_cutoff(), reason=reason)

    return _act(token, link, drop, "cancelled")
