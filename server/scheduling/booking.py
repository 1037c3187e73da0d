"""Self-booking: a customer holds a free slot, confirms it, and may later move or cancel it.

A hold is a tentative appointment that blocks the slot (the database guard
applies) until `hold_expires_at`; an expired hold is released by the next write
that needs the time. The same idempotency key never books twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server import directory, links
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
from server.scheduling import appointments
from server.scheduling.availability import Slot, free_slots
from server.text import clean_text, one_line

HOLD_MINUTES = 15
MAX_UPCOMING_PER_CONTACT = 3
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
    site = Site(customer_id=customer.id, address=address,
                compressor_make=one_line(contact.compressor_make),
                compressor_model=one_line(contact.compressor_model))
    ctx.session.add(site)
    ctx.session.flush()
    return site


def find_slot(session: Session, service_type: ServiceType, starts_at: dt.datetime, now: dt.datetime,
              windows_zone: str, exclude_id: int | None = None,
              technician_ids: list[int] | None = None) -> Slot:
    """The free slot (or arrival window) the customer picked, if it is still free.

    A read: faces call it before their write transaction so that the write, which
    the database serialises, stays short.
    """
    offers = free_slots(session, service_type, start=starts_at - dt.timedelta(hours=14),
                        end=starts_at + dt.timedelta(hours=14), now=now,
                        exclude_appointment_id=exclude_id, windows_zone=windows_zone,
                        technician_ids=technician_ids)
    for offer in offers:
        if offer.starts_at == starts_at or (
                offer.window and offer.window[0] <= starts_at < offer.window[1]):
            return offer
    raise SlotTaken("", TAKEN)


def _free_technicians(ctx: Context, service_type: ServiceType, slot: Slot,
                      exclude_id: int | None = None) -> list[User]:
    """The slot's candidates still free now, fairest first (one indexed query each)."""
    appointments.lock_technicians(ctx.session, list(slot.technician_ids))
    free = []
    for technician_id in slot.technician_ids:
        technician = ctx.session.get(User, technician_id)
        if technician is None:
            continue
        try:
            appointments.check_free(ctx.session, technician, slot.starts_at, slot.ends_at,
                                    exclude_id, service_type)
        except SlotTaken:
            continue
        free.append(technician)
    if not free:
        raise SlotTaken("", TAKEN)
    return free


def _guard_hoarding(ctx: Context, customer: Customer, now: dt.datetime) -> None:
    """One open hold per contact (a new one replaces it) and a cap on upcoming visits."""
    mine = (select(Appointment).join(Job, Job.id == Appointment.job_id)
            .where(Job.customer_id == customer.id,
                   Appointment.status != AppointmentStatus.CANCELLED,
                   Appointment.ends_at > now))
    for held in ctx.session.scalars(mine.where(Appointment.hold_expires_at.is_not(None))):
        appointments.cancel(ctx, held, "replaced by a newer reservation")
    upcoming = ctx.session.scalar(select(func.count()).select_from(
        mine.where(Appointment.hold_expires_at.is_(None)).subquery()))
    if upcoming and upcoming >= MAX_UPCOMING_PER_CONTACT:
        raise TooManyBookings()


@operation
def hold(ctx: Context, service_type: ServiceType, starts_at: dt.datetime, contact: Contact, *,
         idempotency_key: str, now: dt.datetime | None = None, windows_zone: str = "UTC",
         technician: User | None = None, slot: Slot | None = None) -> Appointment:
    """Reserve the picked slot for a while; the fairest free technician gets it.

    Pass the `slot` from `find_slot` (read beforehand) to keep this write short.
    """
    existing = by_booking_key(ctx.session, idempotency_key)
    if existing is not None:
        return existing
    contact.validate()
    now = now or utcnow()
    if slot is None:
        slot = find_slot(ctx.session, service_type, starts_at, now, windows_zone,
                         technician_ids=[technician.id] if technician else None)
    candidates = _free_technicians(ctx, service_type, slot)
    customer = _customer_for(ctx, contact)
    _guard_hoarding(ctx, customer, now)
    job = directory.add_job(ctx, customer, service_type.name, problem=contact.problem,
                            source="web", site=_site_for(ctx, customer, contact))
    for candidate in candidates:
        try:
            return appointments.book(
                ctx, job, candidate, slot.starts_at, slot.ends_at,
                status=AppointmentStatus.TENTATIVE, window=slot.window, service_type=service_type,
                hold_until=now + dt.timedelta(minutes=HOLD_MINUTES), booking_key=idempotency_key)
        except SlotTaken:
            continue
    raise SlotTaken("", TAKEN)


@operation
def confirm(ctx: Context, appointment: Appointment, now: dt.datetime | None = None) -> ShareLink:
    """Turn a hold into a booking; returns the customer's manage link."""
    now = now or utcnow()
    if appointment.hold_expires_at is None and appointment.status == AppointmentStatus.CONFIRMED:
        return manage_link(ctx, appointment)
    if (appointment.status == AppointmentStatus.CANCELLED or appointment.hold_expires_at is None
            or appointment.hold_expires_at <= now):
        raise HoldExpired()
    before = appointments.snapshot(appointment)
    appointment.status = AppointmentStatus.CONFIRMED
    appointment.hold_expires_at = None
    appointments.changed(ctx, appointment, "appointment.confirm", before)
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
                         exclude_id=appointment.id)
    candidates = _free_technicians(ctx, service_type, slot, appointment.id)
    candidates.sort(key=lambda t: t.id != appointment.technician_id)  # keep the same technician
    for candidate in candidates:
        try:
            return appointments.reschedule(ctx, appointment, slot.starts_at, slot.ends_at,
                                           technician=candidate, window=slot.window)
        except SlotTaken:
            continue
    raise SlotTaken("", TAKEN)


@operation
def customer_cancel(ctx: Context, appointment: Appointment, *, cutoff: dt.timedelta,
                    now: dt.datetime | None = None) -> Appointment:
    now = now or utcnow()
    if appointment.status == AppointmentStatus.CANCELLED:
        return appointment
    _before_cutoff(appointment, now, cutoff)
    return appointments.cancel(ctx, appointment, "cancelled by the customer")
