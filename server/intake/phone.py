"""Phone intake: a dispatcher on the phone finds or adds the customer and the site, records
the problem and the equipment, and books one of the earliest free times.

Reads (`search`, `area_for`, `earliest`) run before the write; the booking itself is one
domain call (`book_by_phone`) in the caller's transaction: the customer and site when new,
the equipment on the site, a job (source "phone"), the visit with the fairest free
technician (the same checks and the same confirmation email as every booking), and one
audit entry tying them together.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, selectinload

from server import audit, directory
from server.actions import Action
from server.addresses import normalise_postcode
from server.context import Context, operation
from server.errors import InvalidInput, NotFound, SlotTaken
from server.intake.requests import EMAIL_PATTERN, LIMITS, PHONE_PATTERN, URGENCIES, RequestRefused
from server.models import Appointment, AppointmentStatus, Customer, ServiceType, Site
from server.scheduling import appointments, areas, booking
from server.scheduling.areas import Area
from server.scheduling.availability import Slot, free_slots
from server.scheduling.rules import BookingRefused
from server.text import clean_text, one_line

SOURCE = "phone"
SEARCH_LIMIT = 20
MIN_QUERY = 2
MIN_PHONE_DIGITS = 4
SLOT_LIMIT = 8
SEARCH_DAYS = 14
TITLE_LENGTH = 80
PHONE_PUNCTUATION = (" ", "-", "+", "(", ")", "/", ".")
NO_POSTCODE = ("Include the postcode in the address (e.g. Hauptstraße 1, 10115 Berlin) so that "
               "only technicians who work there are offered.")


@dataclass(frozen=True)
class FoundSite:
    id: int
    address: str
    postcode: str
    country: str
    equipment: str


@dataclass(frozen=True)
class FoundCustomer:
    id: int
    name: str
    email: str
    phone: str
    sites: tuple[FoundSite, ...]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _digits(column: ColumnElement[str]) -> ColumnElement[str]:
    for mark in PHONE_PUNCTUATION:
        column = func.replace(column, mark, "")
    return column


def equipment_of(site: Site) -> str:
    parts = [site.compressor_make, site.compressor_model]
    text = " ".join(p for p in parts if p)
    return f"{text} (serial {site.compressor_serial})" if site.compressor_serial else text


def search(session: Session, text: str, limit: int = SEARCH_LIMIT) -> list[FoundCustomer]:
    """Customers whose name, email, phone number, site address or site postcode matches."""
    wanted = one_line(text)[:LIMITS["name"]]
    if len(wanted) < MIN_QUERY:
        return []
    pattern = _like(wanted.lower())
    site_matches = [func.lower(Site.address).like(pattern, escape="\\"),
                    func.replace(Site.postcode, " ", "").like(
                        _like(normalise_postcode(wanted, "").replace(" ", ""))[1:], escape="\\")]
    matches = [func.lower(Customer.name).like(pattern, escape="\\"),
               func.lower(Customer.email).like(pattern, escape="\\"),
               Customer.sites.any(or_(*site_matches))]
    digits = "".join(c for c in wanted if c.isdigit()).lstrip("0")
    if len(digits) >= MIN_PHONE_DIGITS and PHONE_PATTERN.match(wanted):
        matches.append(_digits(Customer.phone.expression).like(_like(digits), escape="\\"))
    found = session.scalars(select(Customer).where(or_(*matches))
                            .options(selectinload(Customer.sites))
                            .order_by(Customer.name, Customer.id).limit(limit))
    return [found_customer(c) for c in found]


def found_customer(customer: Customer) -> FoundCustomer:
    """A customer and their sites as search lists them."""
    return FoundCustomer(customer.id, customer.name, customer.email, customer.phone, tuple(
        FoundSite(s.id, s.address, s.postcode, s.country, equipment_of(s)) for s in customer.sites))


@dataclass(frozen=True)
class PhoneRequest:
    """What the dispatcher took down: an existing customer and site (ids) or new ones."""

    customer_id: int | None = None
    site_id: int | None = None
    name: str = ""
    email: str = ""
    phone: str = ""
    timezone: str = "UTC"
    address: str = ""
    make: str = ""
    model: str = ""
    serial: str = ""
    problem: str = ""
    urgency: str = "normal"

    def problems(self) -> dict[str, str]:
        """Each field that cannot be accepted, with a message the dispatcher can act on."""
        found: dict[str, str] = {}
        if self.customer_id is None:
            email, phone = one_line(self.email), one_line(self.phone)
            if not one_line(self.name):
                found["name"] = "Enter the customer's name."
            if not email and not phone:
                found["email"] = "Enter an email address (for the confirmation) or a phone number."
            elif email and not EMAIL_PATTERN.match(email):
                found["email"] = f"{email!r} does not look like an email address."
            if phone and not PHONE_PATTERN.match(phone):
                found["phone"] = "A phone number has digits, spaces and + ( ) - / . only."
            try:
                directory.check_timezone(self.timezone)
            except InvalidInput as exc:
                found["timezone"] = exc.message
        if self.site_id is None and not clean_text(self.address):
            found["address"] = "Enter the address where the compressor is."
        if not clean_text(self.problem):
            found["problem"] = "Note what is wrong, in the customer's words."
        for name, limit in LIMITS.items():
            if len(getattr(self, name)) > limit and name not in found:
                found[name] = f"Keep this under {limit} characters."
        if self.urgency not in URGENCIES:
            found["urgency"] = "Choose how urgent it is."
        return found

    def check(self) -> None:
        found = self.problems()
        if found:
            name, message = next(iter(found.items()))
            raise RequestRefused(name, message)


def _existing_site(session: Session, customer: Customer, site_id: int) -> Site:
    site = session.get(Site, site_id)
    if site is None or site.customer_id != customer.id:
        raise RequestRefused("site", f"Site #{site_id} is not a site of {customer.name}; "
                                     "search for the customer again.")
    return site


def area_for(session: Session, request: PhoneRequest) -> Area:
    """Where the visit is: the chosen site's area, or the new address's (refused without a
    postcode once service areas are in use)."""
    timezone = request.timezone
    if request.customer_id is not None:
        customer = directory.find_customer(session, request.customer_id)
        if request.site_id is not None:
            return areas.area_of_site(_existing_site(session, customer, request.site_id))
        timezone = customer.timezone
    try:
        area = areas.area_of_address(request.address, timezone)
    except InvalidInput as exc:
        raise RequestRefused("address", exc.message) from exc
    if not area.known and areas.in_use(session):
        raise RequestRefused("address", NO_POSTCODE)
    return area


def earliest(session: Session, service: ServiceType, area: Area, *, now: dt.datetime,
             windows_zone: str, after: dt.datetime | None = None,
             limit: int = SLOT_LIMIT) -> list[Slot]:
    """The first free times for the service at the site (area, skills, hours, buffers and
    travel applied, as everywhere), from `after` (exclusive) or now, within two weeks."""
    start = now if after is None else max(now, after + dt.timedelta(seconds=1))
    return free_slots(session, service, start=start, end=start + dt.timedelta(days=SEARCH_DAYS),
                      now=now, windows_zone=windows_zone, area=area)[:limit]


def _customer(ctx: Context, request: PhoneRequest) -> tuple[Customer, bool]:
    if request.customer_id is not None:
        return directory.find_customer(ctx.session, request.customer_id), False
    return directory.add_customer(ctx, request.name, email=one_line(request.email).lower(),
                                  phone=request.phone, timezone=request.timezone), True


def _site(ctx: Context, customer: Customer, request: PhoneRequest) -> tuple[Site, bool]:
    if request.site_id is None:
        return directory.add_site(ctx, customer, request.address, compressor_make=request.make,
                                  compressor_model=request.model,
                                  compressor_serial=request.serial), True
    site = _existing_site(ctx.session, customer, request.site_id)
    directory.update_site(ctx, site, compressor_make=request.make, compressor_model=request.model,
                          compressor_serial=request.serial)
    return site, False


def _title(service: ServiceType, request: PhoneRequest) -> str:
    first = one_line(clean_text(request.problem).split("\n", 1)[0])
    title = f"{service.name}: {first}"
    return title if len(title) <= TITLE_LENGTH else title[: TITLE_LENGTH - 1] + "…"


def _problem_text(request: PhoneRequest) -> str:
    equipment = [f"{label}: {one_line(value)}" for label, value in
                 (("Make", request.make), ("Model", request.model), ("Serial", request.serial))
                 if one_line(value)]
    return "\n\n".join([clean_text(request.problem), *(["\n".join(equipment)] if equipment else [])])


@operation
def book_by_phone(ctx: Context, request: PhoneRequest, service: ServiceType, slot: Slot, *,
                  booking_key: str) -> Appointment:
    """Book the picked free time for the caller; the same `booking_key` never books twice.

    Pass the `slot` from `booking.find_slot` (read beforehand, with the site's area). A time
    taken meanwhile raises SlotTaken and nothing stays behind (no customer, site or job).
    """
    existing = booking.by_booking_key(ctx.session, booking_key)
    if existing is not None:
        return existing
    request.check()
    if not service.active:
        raise NotFound(f"{service.name} is no longer booked; choose another service.")
    candidates = booking.free_technicians(ctx, service, slot)
    customer, new_customer = _customer(ctx, request)
    site, new_site = _site(ctx, customer, request)
    job = directory.add_job(ctx, customer, _title(service, request), problem=_problem_text(request),
                            priority=request.urgency, source=SOURCE, site=site)
    for candidate in candidates:
        try:
            appointment = appointments.book(
                ctx, job, candidate, slot.starts_at, slot.ends_at,
                status=AppointmentStatus.CONFIRMED, window=slot.window, service_type=service,
                booking_key=booking_key)
        except (SlotTaken, BookingRefused):
            continue
        audit.record(ctx.session, ctx.actor, Action.INTAKE_PHONE, "job", job.id, after={
            "customer": customer.id, "new_customer": new_customer, "site": site.id,
            "new_site": new_site, "appointment": appointment.id, "service": service.slug,
            "technician": candidate.login, "urgency": request.urgency})
        return appointment
    raise SlotTaken("", booking.TAKEN)
