"""Phone intake (/console/new): find or add the caller and the site, note the problem and
the equipment, see the earliest free times, book one.

Plain forms, no scripts: the search is a GET; the details travel in the form from step to
step (never in a URL); times are read with the same domain functions as /api/v1/availability
and the booking page; the booking is one domain call (`intake.phone.book_by_phone`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from zoneinfo import ZoneInfo

from flask import redirect, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from werkzeug.wrappers import Response

from server import directory
from server.console.routes import bp, dispatcher_only, page, refused, request_id
from server.console.session import member
from server.context import Context
from server.errors import Conflict, InvalidInput, NotFound, SlotTaken
from server.intake import phone
from server.intake.requests import PHONE_PATTERN, URGENCIES, RequestRefused
from server.models import Appointment, Customer, Job, Role, ServiceType, User, utcnow
from server.scheduling import booking
from server.scheduling.areas import Area
from server.scheduling.availability import Slot
from server.scheduling.rules import BookingRefused
from server.text import one_line
from server.web.context import database, settings

KEY_PREFIX = "console:"
KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
TEXT_FIELDS = ("name", "email", "phone", "timezone", "address", "make", "model", "serial",
               "problem", "urgency")
TAKEN = "That time was taken a moment ago. These times are free now: pick another one."
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
LOST = "The caller's customer record or site is gone (deleted meanwhile); search again."


@dataclass(frozen=True)
class Offer:
    value: str  # the start, ISO in UTC: what the form sends back
    day: str
    time: str
    window: str
    technician: str


def _zones(session: Session, *also: str) -> list[str]:
    used = session.scalars(select(User.timezone).where(User.role == Role.TECHNICIAN).distinct())
    return sorted({settings().timezone, *used, *(z for z in also if z)})


def _services(session: Session) -> list[ServiceType]:
    return list(session.scalars(select(ServiceType).where(ServiceType.active.is_(True))
                                .order_by(ServiceType.name, ServiceType.id)))


def _int(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else None


def _read_form(form: Mapping[str, str]) -> tuple[phone.PhoneRequest, dict[str, str]]:
    values = {name: form.get(name, "") for name in TEXT_FIELDS}
    values["urgency"] = values["urgency"] or "normal"
    values["timezone"] = values["timezone"] or settings().timezone
    customer_id, site_id = _int(form.get("customer", "")), _int(form.get("site", ""))
    errors: dict[str, str] = {}
    unreadable = (bool(form.get("customer")) and customer_id is None) or (
        bool(form.get("site")) and site_id is None)
    if unreadable or (site_id is not None and customer_id is None):
        errors["form"] = LOST
    made = phone.PhoneRequest(customer_id=customer_id, site_id=site_id, **values)
    return made, {**made.problems(), **errors}


def _carried(made: phone.PhoneRequest) -> dict[str, str]:
    """The request as hidden fields (ids as text, nothing for the absent ones)."""
    return {k: "" if v is None else str(v) for k, v in asdict(made).items()
            if k not in ("customer_id", "site_id")} | {
        "customer": str(made.customer_id or ""), "site": str(made.site_id or "")}


def _chosen(session: Session, made: phone.PhoneRequest
            ) -> tuple[phone.FoundCustomer | None, phone.FoundSite | None]:
    """The existing customer and site the form names (as search shows them)."""
    if made.customer_id is None:
        return None, None
    found = phone.found_customer(directory.find_customer(session, made.customer_id))
    site = next((s for s in found.sites if s.id == made.site_id), None)
    if made.site_id is not None and site is None:
        raise RequestRefused("form", LOST)
    return found, site


def _form_page(session: Session, made: phone.PhoneRequest, errors: dict[str, str], *,
               status: int = 200, service: str = "", title: str = "New job · details",
               template: str = "console/intake_details.html", **values: object) -> Response:
    try:
        customer, site = _chosen(session, made)
    except (NotFound, RequestRefused):
        customer, site, errors = None, None, {**errors, "form": LOST}
        made = phone.PhoneRequest(**{k: getattr(made, k) for k in TEXT_FIELDS})
    return page(title, template, status, form=_carried(made), errors=errors, customer=customer,
                site=site, services=_services(session), service=service,
                zones=_zones(session, made.timezone), urgencies=URGENCIES,
                business_zone=settings().timezone, **values)


def _prefill(text: str) -> phone.PhoneRequest:
    """A new caller's form, started from what the dispatcher searched for."""
    text = one_line(text)
    digits = sum(c.isdigit() for c in text)
    zone = settings().timezone
    if "@" in text:
        return phone.PhoneRequest(email=text, timezone=zone)
    if digits >= 6 and PHONE_PATTERN.match(text):
        return phone.PhoneRequest(phone=text, timezone=zone)
    letters = sum(c.isalpha() for c in text)
    return phone.PhoneRequest(name=text if letters > digits else "", timezone=zone)


@bp.get("/new")
@dispatcher_only
def intake_search() -> Response:
    wanted = request.args.get("q", "")
    with database().read() as session:
        found = phone.search(session, wanted) if wanted else []
        return _form_page(session, _prefill(wanted), {}, title="New job",
                          template="console/intake_search.html", query=wanted,
                          searched=bool(one_line(wanted)), found=found,
                          too_short=0 < len(one_line(wanted)) < phone.MIN_QUERY)


@bp.get("/new/details")
@dispatcher_only
def intake_details() -> Response:
    customer_id = _int(request.args.get("customer", ""))
    site_id = _int(request.args.get("site", ""))
    with database().read() as session:
        if customer_id is None:
            return redirect(url_for("console.intake_search"), 303)
        customer = session.get(Customer, customer_id)
        site = next((s for s in customer.sites if s.id == site_id), None) if customer else None
        made = phone.PhoneRequest(
            customer_id=customer_id, site_id=site_id,
            timezone=customer.timezone if customer else settings().timezone,
            make=site.compressor_make if site else "", model=site.compressor_model if site else "",
            serial=site.compressor_serial if site else "")
        return _form_page(session, made, {}, status=200 if customer else 404)


def _offers(session: Session, slots: list[Slot], zone: ZoneInfo) -> list[Offer]:
    ids = {s.technician_ids[0] for s in slots}
    names = dict(session.execute(select(User.id, User.name).where(User.id.in_(ids))).all()) \
        if ids else {}
    offers = []
    for slot in slots:
        starts, ends = slot.starts_at.astimezone(zone), slot.ends_at.astimezone(zone)
        window = ""
        if slot.window is not None:
            window = (f"{slot.window[0].astimezone(zone):%H:%M}–"
                      f"{slot.window[1].astimezone(zone):%H:%M}")
        offers.append(Offer(slot.starts_at.astimezone(dt.UTC).isoformat(),
                            f"{starts:%a %-d %b}", f"{starts:%H:%M}–{ends:%H:%M}", window,
                            names.get(slot.technician_ids[0], "")))
    return offers


def _service(session: Session, slug: str) -> ServiceType | None:
    try:
        return booking.service_type_by_slug(session, slug)
    except NotFound:
        return None


def _customer_zone(session: Session, made: phone.PhoneRequest) -> ZoneInfo:
    if made.customer_id is not None:
        customer = session.get(Customer, made.customer_id)
        if customer is not None:
            return ZoneInfo(customer.timezone)
    return ZoneInfo(made.timezone)


def _slots_page(session: Session, made: phone.PhoneRequest, service: ServiceType, area: Area, *,
                status: int = 200, after: dt.datetime | None = None, message: str = "",
                error: str = "") -> Response:
    zone = _customer_zone(session, made)
    slots = phone.earliest(session, service, area, now=utcnow(), windows_zone=settings().timezone,
                           after=after)
    customer, site = _chosen(session, made)
    return page("New job · pick a time", "console/intake_slots.html", status, form=_carried(made),
                service=service, customer=customer, site=site, area=area.label(),
                offers=_offers(session, slots, zone), zone=zone.key, message=message, error=error,
                key=secrets.token_urlsafe(18), days=phone.SEARCH_DAYS, after=after)


def _details_or_slots(made: phone.PhoneRequest, errors: dict[str, str], slug: str, *,
                      status: int = 200, after: dt.datetime | None = None, message: str = "",
                      error: str = "") -> Response:
    """The details again (400, messages beside the fields) or the earliest times."""
    with database().read() as session:
        service = _service(session, slug)
        if service is None and "service" not in errors:
            errors = {**errors, "service": "Choose the service the customer needs."}
        area = None
        if not errors:
            try:
                area = phone.area_for(session, made)
            except RequestRefused as exc:
                errors = {exc.field: exc.message}
            except NotFound:
                errors = {"form": LOST}
        if errors or service is None or area is None:
            return _form_page(session, made, errors, status=400, service=slug)
        return _slots_page(session, made, service, area, status=status, after=after,
                           message=message, error=error)


def _moment(text: str) -> dt.datetime | None:
    """A time the form sent back (UTC ISO with an offset), if it is one this century."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None or not EARLIEST <= moment.astimezone(dt.UTC) <= LATEST:
        return None
    return moment


@bp.post("/new/slots")
@dispatcher_only
def intake_slots() -> Response:
    made, errors = _read_form(request.form)
    slug = request.form.get("service", "")
    if request.form.get("edit"):
        with database().read() as session:
            return _form_page(session, made, {}, service=slug)
    return _details_or_slots(made, errors, slug, after=_moment(request.form.get("after", "")))


def _valid_key(key: str) -> bool:
    return 16 <= len(key) <= 64 and set(key) <= KEY_CHARS


@bp.post("/new/book")
@dispatcher_only
def intake_book() -> Response:
    signed_in = member()
    assert signed_in is not None  # dispatcher_only
    made, errors = _read_form(request.form)
    slug, key = request.form.get("service", ""), request.form.get("key", "")
    starts_at = _moment(request.form.get("slot", ""))
    if errors:
        return _details_or_slots(made, errors, slug)
    if starts_at is None or not _valid_key(key):
        return _details_or_slots(made, {}, slug, status=400,
                                 error="Pick one of the times below.")
    config = settings()
    booking_key = KEY_PREFIX + key
    try:
        with database().read() as session:  # the slow part, before the serialised write
            service = booking.service_type_by_slug(session, slug)
            area = phone.area_for(session, made)
            slot = None if booking.by_booking_key(session, booking_key) else booking.find_slot(
                session, service, starts_at, utcnow(), config.timezone, area=area)
        with database().write() as session:
            ctx = Context(session, signed_in.actor(request_id()), config.organizer)
            service = booking.service_type_by_slug(session, slug)
            existing = booking.by_booking_key(session, booking_key)
            if existing is None and slot is not None:
                existing = phone.book_by_phone(ctx, made, service, slot, booking_key=booking_key)
            if existing is None:
                raise SlotTaken("", TAKEN)
            appointment_id = existing.id
    except RequestRefused as exc:
        return _details_or_slots(made, {exc.field: exc.message}, slug)
    except InvalidInput as exc:
        return _details_or_slots(made, {"form": exc.message}, slug)
    except NotFound:
        return _details_or_slots(made, {}, slug)
    except (Conflict, BookingRefused):  # taken meanwhile, or this very form sent twice at once
        with database().read() as session:
            again = booking.by_booking_key(session, booking_key)
            if again is None:
                return _details_or_slots(made, {}, slug, status=409, message=TAKEN)
            appointment_id = again.id
    return redirect(url_for("console.intake_booked", appointment_id=appointment_id), 303)


@bp.get("/new/booked/<int:appointment_id>")
@dispatcher_only
def intake_booked(appointment_id: int) -> Response:
    with database().read() as session:
        appointment = session.get(Appointment, appointment_id, options=[
            selectinload(Appointment.job).selectinload(Job.customer),
            selectinload(Appointment.job).selectinload(Job.site),
            selectinload(Appointment.technician), selectinload(Appointment.service_type)])
        if appointment is None:
            return refused(404, "No such visit", f"Visit #{appointment_id} does not exist.")
        customer = appointment.job.customer
        zone = ZoneInfo(customer.timezone)
        starts = appointment.starts_at.astimezone(zone)
        mailed = bool(customer.email) and customer.email_undeliverable_at is None
        board = url_for("console.board", view="day",
                        day=appointment.starts_at.astimezone(_board_zone()).date().isoformat())
        return page("New job · booked", "console/intake_booked.html", appointment=appointment,
                    job=appointment.job, customer=customer, site=appointment.job.site,
                    when=f"{starts:%A %-d %B %Y, %H:%M}–"
                         f"{appointment.ends_at.astimezone(zone):%H:%M}",
                    window=(f"{appointment.window_start.astimezone(zone):%H:%M}–"
                            f"{appointment.window_end.astimezone(zone):%H:%M}"
                            if appointment.window_start and appointment.window_end else ""),
                    zone=zone.key, mailed=mailed, board=board)


def _board_zone() -> ZoneInfo:
    signed_in = member()
    return ZoneInfo(signed_in.timezone if signed_in and signed_in.timezone else settings().timezone)
