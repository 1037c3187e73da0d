"""Self-booking pages: /book → service → details → time → hold → confirm → confirmation.

Server-rendered, no scripts. The customer's details travel between steps in a
signed hidden field (never in a URL or a server session); every write is one
domain call in one transaction. Booking POSTs are rate-limited per client address.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, make_response, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import links
from server.context import Context
from server.errors import Conflict, InvalidInput, NotFound
from server.models import Appointment, AppointmentStatus, ServiceType, ShareLink, utcnow
from server.scheduling import areas, booking
from server.web.context import database, link_signer, settings
from share import pagekit
from share.forms import (
    Details,
    HoldRef,
    new_idempotency_key,
    parse_details,
    parse_slot,
    parse_week,
    valid_key,
)
from share.picker import visit_view, week_of
from share.routes import refuse_input
from share.zones import grouped

log = logging.getLogger(__name__)
bp = Blueprint("booking", __name__)
bp.after_request(pagekit.protect)
bp.register_error_handler(InvalidInput, refuse_input)

TAKEN = "That time was just taken by someone else. Please pick another one — these times are free."
STEPS = ("Service", "Your details", "Time", "Confirm")


@dataclass(frozen=True)
class ServiceView:
    slug: str
    name: str
    description: str
    duration: str


def _duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{minutes} minutes"
    text = f"{hours} hour{'s' if hours > 1 else ''}"
    return f"{text} {rest} minutes" if rest else text


def _service(session: Session, slug: str) -> ServiceType | None:
    try:
        return booking.service_type_by_slug(session, slug)
    except NotFound:
        return None


def _no_service() -> Response:
    return pagekit.problem(404, "This service cannot be booked online",
                           "It may have been withdrawn. Please choose a service from the list.")


def live_link(session: Session, purpose: links.Purpose, appointment_id: int) -> ShareLink | None:
    return session.scalars(
        select(ShareLink).where(ShareLink.purpose == purpose,
                                ShareLink.subject_kind == links.SubjectKind.APPOINTMENT,
                                ShareLink.subject_id == appointment_id,
                                ShareLink.revoked_at.is_(None))
        .order_by(ShareLink.id.desc())
    ).first()


def subscribe_urls(session: Session, link: ShareLink) -> dict[str, str] | None:
    """The https and webcal addresses of a share link's feed (as on the share pages)."""
    feed = links.companion_feed(session, link)
    if feed is None:
        return None
    https = f"{settings().base_url}/feeds/{link_signer().dumps(feed)}.ics"
    return {"https": https, "webcal": "webcal://" + https.split("://", 1)[1]}


def _render(template: str, status: int = 200, **values: object) -> Response:
    return make_response(render_template(template, steps=STEPS, **pagekit.phone_values(), **values),
                         status)


def _details_page(service: ServiceType, details: Details, errors: dict[str, str],
                  status: int = 200) -> Response:
    return _render("share/book_details.html", status, service=service, details=details,
                   errors=errors, zone_groups=grouped(settings().timezone),
                   business_zone=settings().timezone)


def picker_page(session: Session, service: ServiceType, details: Details, *, status: int = 200,
                requested: dt.date | None = None, around: dt.datetime | None = None,
                message: str = "", error: str = "") -> Response:
    week = week_of(session, service, details.zone, now=utcnow(),
                   windows_zone=settings().timezone, requested=requested, around=around,
                   area=details.contact().area())
    return _render("share/book_slots.html", status, service=service, details=details,
                   details_token=pagekit.form_signer().details_token(details),
                   key=new_idempotency_key(), week=week, message=message, error=error)


def _posted_details() -> Details | None:
    return pagekit.form_signer().load_details(request.form.get("details", ""))


def _details_lost() -> Response:
    return pagekit.problem(400, "Your booking form has expired",
                           "We could not read the details you entered (the form was open for a "
                           "long time, or it was changed). Please start again.")


def details_of(appointment: Appointment, timezone: str) -> Details:
    """The details a hold was made with, to offer the picker again."""
    job = appointment.job
    customer = job.customer
    site = job.site
    return Details(problem=job.problem, address=site.address if site else "",
                   make=site.compressor_make if site else "",
                   model=site.compressor_model if site else "",
                   name=customer.name, email=customer.email, phone=customer.phone,
                   timezone=timezone)


@bp.get("/book")
def services() -> Response:
    with database().read() as session:
        found = session.scalars(select(ServiceType).where(ServiceType.active.is_(True))
                                .order_by(ServiceType.name, ServiceType.id))
        views = [ServiceView(s.slug, s.name, s.description, _duration(s.duration_minutes))
                 for s in found]
    return _render("share/book_services.html", services=views)


@bp.get("/book/<slug>/details")
def details_form(slug: str) -> Response:
    with database().read() as session:
        service = _service(session, slug)
        if service is None:
            return _no_service()
        return _details_page(service, Details(timezone=""), {})  # "" = work it out


@bp.post("/book/<slug>/details")
def details_submit(slug: str) -> Response:
    limited = pagekit.rate_limited("book")
    if limited is not None:
        return limited
    details, errors = parse_details(request.form, settings().timezone)
    with database().read() as session:
        service = _service(session, slug)
        if service is None:
            return _no_service()
        if not errors and not details.contact().area().known and areas.in_use(session):
            errors["address"] = ("Include the postcode in the address (e.g. 10178 Berlin), so we "
                                 "can send a technician who works there")
        if errors:
            return _details_page(service, details, errors, 400)
        return picker_page(session, service, details)


@bp.post("/book/<slug>/edit")
def details_edit(slug: str) -> Response:
    details = _posted_details()
    if details is None:
        return _details_lost()
    with database().read() as session:
        service = _service(session, slug)
        if service is None:
            return _no_service()
        return _details_page(service, details, {})


@bp.get("/book/<slug>/slots")
def slots_start(slug: str) -> Response:
    return redirect(url_for(".details_form", slug=slug), 303)  # type: ignore[return-value]


@bp.post("/book/<slug>/slots")
def slots(slug: str) -> Response:
    limited = pagekit.rate_limited("book")
    if limited is not None:
        return limited
    details = _posted_details()
    if details is None:
        return _details_lost()
    with database().read() as session:
        service = _service(session, slug)
        if service is None:
            return _no_service()
        return picker_page(session, service, details,
                           requested=parse_week(request.form.get("week", "")))


def _held_with(key: str) -> Appointment | None:
    with database().read() as session:
        return booking.by_booking_key(session, key)


@bp.post("/book/<slug>/hold")
def hold(slug: str) -> Response:
    limited = pagekit.rate_limited("book")
    if limited is not None:
        return limited
    details = _posted_details()
    if details is None:
        return _details_lost()
    key = request.form.get("key", "")
    starts_at = parse_slot(request.form.get("slot", ""))
    if not valid_key(key) or starts_at is None:
        with database().read() as session:
            service = _service(session, slug)
            if service is None:
                return _no_service()
            return picker_page(session, service, details, status=400,
                               requested=parse_week(request.form.get("week", "")),
                               error="Choose a time for the visit")
    config = settings()
    try:
        with database().read() as session:  # the slow part, outside the serialised write
            service = booking.service_type_by_slug(session, slug)
            slot = None if booking.by_booking_key(session, key) else booking.find_slot(
                session, service, starts_at, utcnow(), config.timezone,
                area=details.contact().area())
        with database().write() as session:
            service = booking.service_type_by_slug(session, slug)
            ctx = Context(session, pagekit.customer_actor(None, details.email, "booking"),
                          config.organizer)
            appointment = booking.hold(ctx, service, starts_at, details.contact(),
                                       idempotency_key=key, windows_zone=config.timezone,
                                       slot=slot, client_address=pagekit.client_address())
            ref = HoldRef(appointment.id, key, details.timezone)
    except NotFound:
        return _no_service()
    except booking.TooManyBookings as exc:
        return pagekit.problem(409, "You already have visits booked", exc.message, start_over=False)
    except booking.TooManyHolds as exc:
        return pagekit.problem(429, "Too many reservations at once", exc.message,
                               retry_after=exc.retry_after, start_over=False)
    except InvalidInput as exc:
        log.info("hold refused: %s", type(exc).__name__)
        with database().read() as session:
            service = _service(session, slug)
            if service is None:
                return _no_service()
            return _details_page(service, details, {"form": exc.message}, 400)
    except Conflict:  # SlotTaken, or the same key racing itself
        existing = _held_with(key)
        if existing is not None:
            ref = HoldRef(existing.id, key, details.timezone)
        else:
            with database().read() as session:
                service = _service(session, slug)
                if service is None:
                    return _no_service()
                return picker_page(session, service, details, status=409, around=starts_at,
                                   message=TAKEN)
    token = pagekit.form_signer().hold_token(ref)
    return redirect(url_for(".held", token=token), 303)  # type: ignore[return-value]


def _appointment_for(session: Session, ref: HoldRef) -> Appointment | None:
    appointment = session.get(Appointment, ref.appointment_id)
    if appointment is None or appointment.booking_key != ref.key:
        return None
    return appointment


def _pending(appointment: Appointment) -> bool:
    return appointment.hold_expires_at is not None and appointment.status == AppointmentStatus.TENTATIVE


def _was_confirmed(session: Session, appointment: Appointment) -> bool:
    """Confirmed once (maybe cancelled since), as opposed to a hold that lapsed."""
    if appointment.hold_expires_at is not None:
        return False
    return (appointment.status == AppointmentStatus.CONFIRMED
            or live_link(session, links.Purpose.MANAGE, appointment.id) is not None)


def _expired_page(session: Session, appointment: Appointment, ref: HoldRef) -> Response:
    service = appointment.service_type
    if service is None or not service.active:
        return pagekit.problem(410, "Your reservation expired",
                               booking.HoldExpired().message)
    return picker_page(session, service, details_of(appointment, ref.timezone), status=410,
                       around=appointment.starts_at, message=booking.HoldExpired().message)


@bp.get("/book/hold/<token>")
def held(token: str) -> Response:
    ref = pagekit.form_signer().load_hold(token)
    if ref is None:
        return pagekit.not_found()
    with database().read() as session:
        appointment = _appointment_for(session, ref)
        if appointment is None:
            return pagekit.not_found()
        if _was_confirmed(session, appointment):
            return redirect(url_for(".confirmed", token=token), 303)  # type: ignore[return-value]
        expires = appointment.hold_expires_at
        if not _pending(appointment) or expires is None or expires <= utcnow():
            return _expired_page(session, appointment, ref)
        zone = ZoneInfo(ref.timezone)
        return _render(
            "share/book_hold.html", visit=visit_view(appointment, zone), token=token,
            service=appointment.service_type,
            hold_until=expires.astimezone(zone).strftime("%H:%M"),
            minutes_left=max(1, int((expires - utcnow()).total_seconds() // 60)),
            csrf=pagekit.form_signer().csrf_token("confirm", appointment.id, ref.key),
            details_token=pagekit.form_signer().details_token(details_of(appointment, ref.timezone)),
        )


def _share_link(ctx: Context, appointment: Appointment) -> ShareLink:
    found = live_link(ctx.session, links.Purpose.SHARE, appointment.id)
    if found is not None:
        return found
    subject = links.Subject(links.SubjectKind.APPOINTMENT, appointment.id, appointment.uid)
    return links.issue(ctx, links.Purpose.SHARE, subject)


@bp.post("/book/hold/<token>/confirm")
def confirm(token: str) -> Response:
    limited = pagekit.rate_limited("book")
    if limited is not None:
        return limited
    ref = pagekit.form_signer().load_hold(token)
    if ref is None:
        return pagekit.not_found()
    refused = pagekit.csrf_refusal("confirm", ref.appointment_id, ref.key)
    if refused is not None:
        return refused
    try:
        with database().write() as session:
            appointment = _appointment_for(session, ref)
            if appointment is None:
                return pagekit.not_found()
            if _was_confirmed(session, appointment):
                return redirect(url_for(".confirmed", token=token), 303)  # type: ignore[return-value]
            customer = appointment.job.customer
            ctx = Context(session, pagekit.customer_actor(customer, customer.email, "booking"),
                          settings().organizer)
            booking.confirm(ctx, appointment)
            _share_link(ctx, appointment)
    except booking.HoldExpired:
        with database().read() as session:
            appointment = _appointment_for(session, ref)
            if appointment is None:
                return pagekit.not_found()
            return _expired_page(session, appointment, ref)
    return redirect(url_for(".confirmed", token=token), 303)  # type: ignore[return-value]


@bp.get("/book/confirmed/<token>")
def confirmed(token: str) -> Response:
    ref = pagekit.form_signer().load_hold(token)
    if ref is None:
        return pagekit.not_found()
    with database().read() as session:
        appointment = _appointment_for(session, ref)
        if appointment is None:
            return pagekit.not_found()
        if not _was_confirmed(session, appointment):
            return redirect(url_for(".held", token=token), 303)  # type: ignore[return-value]
        signer = link_signer()
        manage = live_link(session, links.Purpose.MANAGE, appointment.id)
        share = live_link(session, links.Purpose.SHARE, appointment.id)
        share_token = signer.dumps(share) if share else ""
        zone = ZoneInfo(ref.timezone)
        return _render(
            "share/book_confirmed.html",
            visit=visit_view(appointment, zone),
            email=appointment.job.customer.email,
            **pagekit.cutoff_values(appointment.starts_at, zone, utcnow()),
            manage_url=(settings().base_url + url_for("manage.page", token=signer.dumps(manage))
                        if manage else ""),
            ics_url=(url_for("share.visit_ics", token=share_token, appointment_id=appointment.id)
                     if share else ""),
            subscribe=subscribe_urls(session, share) if share else None,
        )
