"""Self-booking: a customer holds a free slot, confirms it, and may later move or cancel it.

A hold is a tentative appointment that blocks the slot (the database guard
applies) until `hold_expires_at`; an expired hold is released by the next write
that needs the time. The same idempotency key never books twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from server import directory, links
from server.actions import Action
from server.context import Context, operation
from server.errors import Conflict, FieldcalError, InvalidInput, NotFound, SlotTaken
from server.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    Job,
    ServiceType,
    ShareLink,
    Site,
    User,
    utcnow,
)
from server.scheduling import appointments, clashes
from server.scheduling.areas import Area, area_of_address, area_of_site
from server.scheduling.availability import Slot, free_slots
from server.scheduling.rules import BookingRefused
from server.text import clean_text, one_line

HOLD_MINUTES = 15
MAX_UPCOMING_PER_CONTACT = 3
MAX_OPEN_HOLDS_PER_CLIENT = 2
MIN_PHONE_DIGITS = 6
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
MANAGE_LINK_GRACE = dt.timedelta(days=30)
TAKEN = "That time was just taken. Please pick another one."


class HoldExpired(FieldcalError):
    status = 410

    def __init__(self) -> None:
        super().__init__("This reservation expired before it was confirmed. Please pick a time again.")


class PastCutoff(FieldcalError):
    status = 403

    def __init__(self, hours: float) -> None:
        super().__init__(
            f"Changes are possible until {hours:g} hours before the visit. Please call us instead."
        )


class TooManyBookings(FieldcalError):
    status = 409

    def __init__(self) -> None:
        super().__init__(
            f"You already have {MAX_UPCOMING_PER_CONTACT} upcoming visits booked. "
            "Please call us to book more."
        )


class TooManyHolds(FieldcalError):
    status = 429

    def __init__(self) -> None:
        super().__init__(
            f"{MAX_OPEN_HOLDS_PER_CLIENT} times are already reserved from your connection and not "
            f"yet confirmed. Please confirm one of them, or wait {HOLD_MINUTES} minutes for them "
            "to lapse, then try again.")
        self.retry_after = HOLD_MINUTES * 60


def contact_key(email: str) -> str:
    """One address per mailbox: case folded, plus-addressing removed, gmail's dots ignored."""
    local, _, domain = one_line(email).lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}" if local else ""


def phone_key(phone: str) -> str:
    """The phone number's digits (international 00 prefix as +); "" when too short to tell."""
    digits = "".join(c for c in phone if c.isdigit())
    if digits.startswith("00"):
        digits = digits[2:]
    return digits[-20:] if len(digits) >= MIN_PHONE_DIGITS else ""


def client_key(address: str) -> str:
    """A client address as stored with a hold (hashed; only for counting open holds)."""
    address = address.strip()
    if not address:
        return ""
    return hashlib.sha256(f"fieldcal hold client:{address}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Contact:
    name: str
    email: str
    phone: str
    timezone: str
    address: str
    problem: str
    compressor_make: str = ""
    compressor_model: str = ""

    def validate(self) -> None:
        missing = [label for label, value in (("name", self.name), ("email", self.email),
                                              ("service address", self.address))
                   if not one_line(value)]
        if missing:
            raise InvalidInput("Please fill in: " + ", ".join(missing) + ".")
        if "@" not in self.email or " " in self.email.strip():
            raise InvalidInput(f"{self.email!r} does not look like an email address.")
        directory.check_timezone(self.timezone)

    def area(self) -> Area:
        """Where the visit is: the postcode and country the service address names."""
        return area_of_address(self.address, self.timezone)


def service_type_by_slug(session: Session, slug: str) -> ServiceType:
    found = session.scalars(
        select(ServiceType).where(ServiceType.slug == slug, ServiceType.active.is_(True))
    ).first()
    if found is None:
        raise NotFound(f"No bookable service {slug!r}.")
    return found


def by_booking_key(session: Session, key: str) -> Appointment | None:
    return session.scalars(
        select(Appointment).where(Appointment.booking_key == key)
    ).first()


def _customer_for(ctx: Context, contact: Contact) -> Customer:
    email = one_line(contact.email).lower()
    customer = ctx.session.scalars(
        select(Customer).where(func.lower(Customer.email) == email).order_by(Customer.id)
    ).first()
    if customer is None:
        customer = directory.add_customer(
            ctx, contact.name, email=email, phone=contact.phone, timezone=contact.timezone,
            address=contact.address, compressor_make=contact.compressor_make,
            compressor_model=contact.compressor_model)
    return customer


def _site_for(ctx: Context, customer: Customer, contact: Contact) -> Site | None:
    """The customer's site at the address given now; a returning customer may name a new one."""
    address = clean_text(contact.address)
    if not address:
        return None
    for site in customer.sites:
        if site.address == address:
            return site
    site = directory.new_site(customer, address, compressor_make=contact.compressor_make,
                              compressor_model=contact.compressor_model)
    ctx.session.add(site)
    ctx.session.flush()
    return site


def find_slot(session: Session, service_type: ServiceType, starts_at: dt.datetime, now: dt.datetime,
              windows_zone: str, exclude_id: int | None = None,
              technician_ids: list[int] | None = None, area: Area | None = None) -> Slot:
    """The free slot (or arrival window) the customer picked, if it is still free
    (with `area`, among the technicians who serve the site).

    A read: faces call it before their write transaction so that the write, which
    the database serialises, stays short.
    """
    offers = free_slots(session, service_type, start=starts_at - dt.timedelta(hours=14),
                        end=starts_at + dt.timedelta(hours=14), now=now,
                        exclude_appointment_id=exclude_id, windows_zone=windows_zone,
                        technician_ids=technician_ids, area=area)
    for offer in offers:
        if offer.starts_at == starts_at or (
                offer.window and offer.window[0] <= starts_at < offer.window[1]):
            return offer
    raise SlotTaken("", TAKEN)


def free_technicians(ctx: Context, service_type: ServiceType, slot: Slot,
                      exclude_id: int | None = None) -> list[User]:
    """The slot's candidates still free now, fairest first (one indexed query each)."""
    clashes.lock_technicians(ctx.session, list(slot.technician_ids))
    free = []
    for technician_id in slot.technician_ids:
        technician = ctx.session.get(User, technician_id)
        if technician is None:
            continue
        try:
            clashes.check_free(ctx.session, technician, slot.starts_at, slot.ends_at,
                               exclude_id, service_type)
        except SlotTaken:
            continue
        free.append(technician)
    if not free:
        raise SlotTaken("", TAKEN)
    return free


def _guard_hoarding(ctx: Context, customer: Customer, contact: str, phone: str, client: str,
                    now: dt.datetime) -> None:
    """One open hold per contact (a new one replaces it; a contact is the customer, the
    normalised email or the phone number), a cap on open holds per client address, and a
    cap on upcoming visits per customer or normalised email."""
    same_contact = [Job.customer_id == customer.id]
    if contact:
        same_contact.append(Appointment.hold_contact == contact)
    live = (select(Appointment).join(Job, Job.id == Appointment.job_id)
            .where(Appointment.status != AppointmentStatus.CANCELLED, Appointment.ends_at > now))
    held_alike = same_contact + ([Appointment.hold_phone == phone] if phone else [])
    for held in ctx.session.scalars(live.where(or_(*held_alike),
                                               Appointment.hold_expires_at.is_not(None))):
        appointments.cancel(ctx, held, "replaced by a newer reservation")
    upcoming = ctx.session.scalar(select(func.count()).select_from(
        live.where(or_(*same_contact), Appointment.hold_expires_at.is_(None)).subquery()))
    if upcoming and upcoming >= MAX_UPCOMING_PER_CONTACT:
        raise TooManyBookings()
    if client:
        open_holds = ctx.session.scalar(select(func.count()).select_from(Appointment).where(
            Appointment.hold_client == client, Appointment.hold_expires_at > now,
            Appointment.status != AppointmentStatus.CANCELLED))
        if open_holds and open_holds >= MAX_OPEN_HOLDS_PER_CLIENT:
            raise TooManyHolds()


@operation
def hold(ctx: Context, service_type: ServiceType, starts_at: dt.datetime, contact: Contact, *,
         idempotency_key: str, now: dt.datetime | None = None, windows_zone: str = "UTC",
         technician: User | None = None, slot: Slot | None = None,
         client_address: str = "") -> Appointment:
    """Reserve the picked slot for a while; the fairest free technician gets it.

    Pass the `slot` from `find_slot` (read beforehand) to keep this write short, and
    the requester's address (`client_address`) so that one client cannot hold many.
    """
    existing = by_booking_key(ctx.session, idempotency_key)
    if existing is not None:
        return existing
    contact.validate()
    now = now or utcnow()
    if slot is None:
        slot = find_slot(ctx.session, service_type, starts_at, now, windows_zone,
                         technician_ids=[technician.id] if technician else None,
                         area=contact.area())
    candidates = free_technicians(ctx, service_type, slot)
    customer = _customer_for(ctx, contact)
    held_by = (contact_key(contact.email), phone_key(contact.phone), client_key(client_address))
    _guard_hoarding(ctx, customer, *held_by, now)
    job = directory.add_job(ctx, customer, service_type.name, problem=contact.problem,
                            source="web", site=_site_for(ctx, customer, contact))
    for candidate in candidates:
        try:
            held = appointments.book(
                ctx, job, candidate, slot.starts_at, slot.ends_at,
                status=AppointmentStatus.TENTATIVE, window=slot.window, service_type=service_type,
                hold_until=now + dt.timedelta(minutes=HOLD_MINUTES), booking_key=idempotency_key)
        except (SlotTaken, BookingRefused):
            continue
        held.hold_contact, held.hold_phone, held.hold_client = (v or None for v in held_by)
        return held
    raise SlotTaken("", TAKEN)


@operation
def confirm(ctx: Context, appointment: Appointment, now: dt.datetime | None = None) -> ShareLink:
    """Turn a hold into a booking; returns the customer's manage link.

    The row is locked and read again first, so simultaneous confirms of one hold (a
    double click, a retrying browser) confirm it once: the later ones see it confirmed.
    """
    now = now or utcnow()
    ctx.session.refresh(appointment, with_for_update=True)
    if appointment.hold_expires_at is None and appointment.status == AppointmentStatus.CONFIRMED:
        return manage_link(ctx, appointment)
    if (appointment.status == AppointmentStatus.CANCELLED or appointment.hold_expires_at is None
            or appointment.hold_expires_at <= now):
        raise HoldExpired()
    before = appointments.snapshot(appointment)
    appointment.status = AppointmentStatus.CONFIRMED
    appointment.hold_expires_at = None
    appointment.hold_client = None  # the contact and phone stay: they count upcoming visits
    appointments.changed(ctx, appointment, Action.APPOINTMENT_CONFIRM, before)
    return manage_link(ctx, appointment)


def manage_link(ctx: Context, appointment: Appointment) -> ShareLink:
    """The live manage link of a booking, issued on first need."""
    found = ctx.session.scalars(
        select(ShareLink).where(ShareLink.purpose == links.Purpose.MANAGE,
                                ShareLink.subject_kind == links.SubjectKind.APPOINTMENT,
                                ShareLink.subject_id == appointment.id,
                                ShareLink.revoked_at.is_(None))
        .order_by(ShareLink.id.desc())
    ).first()
    if found is not None:
        return found
    subject = links.Subject(links.SubjectKind.APPOINTMENT, appointment.id, appointment.uid)
    return links.issue(ctx, links.Purpose.MANAGE, subject,
                       expires_at=appointment.ends_at + MANAGE_LINK_GRACE)


def _before_cutoff(appointment: Appointment, now: dt.datetime, cutoff: dt.timedelta) -> None:
    if appointment.starts_at - now < cutoff:
        raise PastCutoff(cutoff.total_seconds() / 3600)


@operation
def customer_reschedule(ctx: Context, appointment: Appointment, starts_at: dt.datetime, *,
                        cutoff: dt.timedelta, now: dt.datetime | None = None,
                        windows_zone: str = "UTC", slot: Slot | None = None) -> Appointment:
    now = now or utcnow()
    if appointment.status == AppointmentStatus.CANCELLED:
        raise Conflict("This visit is cancelled; please book a new one.")
    _before_cutoff(appointment, now, cutoff)
    service_type = appointment.service_type
    if service_type is None:
        raise InvalidInput("This visit was arranged by our dispatchers; please call us to move it.")
    if slot is None:
        slot = find_slot(ctx.session, service_type, starts_at, now, windows_zone,
                         exclude_id=appointment.id, area=area_of_site(appointment.job.site))
    candidates = free_technicians(ctx, service_type, slot, appointment.id)
    candidates.sort(key=lambda t: t.id != appointment.technician_id)  # keep the same technician
    for candidate in candidates:
        try:
            return appointments.reschedule(ctx, appointment, slot.starts_at, slot.ends_at,
                                           technician=candidate, window=slot.window)
        except (SlotTaken, BookingRefused):
            continue
    raise SlotTaken("", TAKEN)


@operation
def customer_cancel(ctx: Context, appointment: Appointment, *, cutoff: dt.timedelta,
                    now: dt.datetime | None = None, reason: str = "") -> Appointment:
    """The customer cancels before the cut-off; their reason (optional) goes to the audit trail."""
    now = now or utcnow()
    if appointment.status == AppointmentStatus.CANCELLED:
        return appointment
    _before_cutoff(appointment, now, cutoff)
    said = f": {reason}" if reason else ""
    return appointments.cancel(ctx, appointment, f"cancelled by the customer{said}")
