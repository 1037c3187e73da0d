"""Bookings taken in from platforms (Calendly, Acuity, ...), applied through the domain.

A platform's webhook is verified and read by its connector into `InboundBooking` and
`InboundCancel` values; `apply` books each one as the integration (channel `platform`, so
the visit is never pushed back to where it came from), one transaction per booking:

- the customer is found by email (or created), the site by the address the booking names;
- the service type is the one mapped from the platform's event type;
- the technician is picked the way the booking page picks: the slot must be free for a
  qualified technician who serves the site's area (fairest first, no overlap, travel);
- when nobody is free, or the booking names no known service or no address, the job lands
  in the tray without a visit and dispatch is alerted: the customer is never double-booked;
- the same platform key never books twice; arriving again with other times it moves the
  visit (kept where it was, with an alert, when nobody is free then); a cancel cancels it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from server import audit, directory, integrations, readback
from server.actions import Action
from server.context import Context, operation
from server.db import Database
from server.errors import Conflict, InvalidInput, SlotTaken
from server.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    InboundRef,
    Integration,
    Job,
    JobStatus,
    ServiceType,
    Site,
    User,
    utcnow,
)
from server.platforms import InboundBooking, InboundCancel
from server.scheduling import appointments
from server.scheduling.areas import area_of_site
from server.scheduling.booking import find_slot
from server.scheduling.rules import BookingRefused, span
from server.text import clean_text, one_line

__all__ = ["InboundBooking", "InboundCancel", "Outcome", "apply", "book", "cancel"]

BOOKED, TRAY, CANCELLED = "booked", "tray", "cancelled"


@dataclass(frozen=True)
class Outcome:
    key: str
    result: str  # booked | tray | moved | kept | unchanged | cancelled | unknown
    job_id: int | None = None
    appointment_id: int | None = None
    reason: str = ""


def apply(database: Database, integration_id: int, items: Iterable[InboundBooking | InboundCancel],
          organizer: str, now: dt.datetime | None = None) -> list[Outcome]:
    """Apply what a platform sent, one transaction per booking. The same booking delivered
    twice at once: the second writer loses the race on the key and then finds it."""
    outcomes: list[Outcome] = []
    for item in items:
        for attempt in (1, 2):
            try:
                outcome = _apply_one(database, integration_id, item, organizer, now)
            except Conflict:
                if attempt == 2:
                    raise
                continue
            break
        if outcome is None:
            break
        outcomes.append(outcome)
    return outcomes


def _apply_one(database: Database, integration_id: int, item: InboundBooking | InboundCancel,
               organizer: str, now: dt.datetime | None) -> Outcome | None:
    with database.write() as session:
        integration = session.get(Integration, integration_id)
        if integration is None:
            return None
        ctx = Context(session, readback.actor_for(integration), organizer)
        if isinstance(item, InboundCancel):
            return cancel(ctx, integration, item)
        return book(ctx, integration, item, now=now)


def _ref(ctx: Context, integration: Integration, key: str) -> InboundRef | None:
    return ctx.session.scalars(select(InboundRef).where(InboundRef.integration_id == integration.id,
                                                        InboundRef.external_key == key)).first()


def _check(booking: InboundBooking) -> None:
    if not booking.key or len(booking.key) > 300:
        raise InvalidInput("a booking from a platform needs its id there (at most 300 characters)")
    if booking.starts_at.tzinfo is None or booking.ends_at <= booking.starts_at:
        raise InvalidInput(f"booking {booking.key}: its times are not a time span with a zone")
    email = one_line(booking.email)
    if "@" not in email or " " in email:
        raise InvalidInput(f"booking {booking.key}: {booking.email!r} does not look like an email address")
    directory.check_timezone(booking.timezone)


def _customer(ctx: Context, booking: InboundBooking) -> Customer:
    email = one_line(booking.email).lower()
    found = ctx.session.scalars(select(Customer).where(func.lower(Customer.email) == email)
                                .order_by(Customer.id)).first()
    if found is not None:
        return found
    return directory.add_customer(ctx, one_line(booking.name) or email, email=email, phone=booking.phone,
                                  timezone=booking.timezone)


def _site(ctx: Context, customer: Customer, address: str) -> Site | None:
    text = clean_text(address)
    if not text:
        return None
    for site in customer.sites:
        if site.address == text:
            return site
    return directory.add_site(ctx, customer, text)


def _service(ctx: Context, slug: str) -> ServiceType | None:
    if not slug:
        return None
    return ctx.session.scalars(select(ServiceType).where(ServiceType.slug == slug,
                                                         ServiceType.active.is_(True))).first()


def _place(ctx: Context, job: Job, service: ServiceType | None, booking: InboundBooking,
           now: dt.datetime, visit: Appointment | None = None) -> tuple[Appointment | None, str]:
    """Book (or, with `visit`, move) the job's visit at the booked time; else why not."""
    if service is None:
        return None, f"no service type is mapped for this booking ({booking.service_slug or 'none named'})"
    if job.site is None and not service.remote:
        return None, "the booking names no service address"
    when = span(booking.starts_at, booking.ends_at, booking.timezone)
    try:
        slot = find_slot(ctx.session, service, booking.starts_at, now, booking.timezone,
                         exclude_id=visit.id if visit else None, area=area_of_site(job.site))
    except SlotTaken:
        return None, f"no qualified technician serving the site is free {when}"
    candidates = list(slot.technician_ids)
    if visit is not None and visit.technician_id in candidates:  # keep the same technician
        candidates.sort(key=lambda t: t != visit.technician_id)
    for technician_id in candidates:
        technician = ctx.session.get(User, technician_id)
        if technician is None:
            continue
        try:
            if visit is None:
                return appointments.book(ctx, job, technician, slot.starts_at, slot.ends_at,
                                         window=slot.window, service_type=service), ""
            return appointments.reschedule(ctx, visit, slot.starts_at, slot.ends_at,
                                           technician=technician, window=slot.window), ""
        except (SlotTaken, BookingRefused):
            continue
    return None, f"no qualified technician serving the site is free {when}"


def _alert(ctx: Context, integration: Integration, booking_key: str, text: str) -> None:
    digest = hashlib.sha256(f"{booking_key}|{text}".encode()).hexdigest()[:24]
    integrations.queue_alert(ctx.session, f"{integration.name} ({integration.platform}): {text}",
                             f"inbound:{integration.id}:{digest}")


@operation
def book(ctx: Context, integration: Integration, booking: InboundBooking, *,
         now: dt.datetime | None = None) -> Outcome:
    """Take one booking in: a job and its visit, or the job in the tray and an alert."""
    now = now or utcnow()
    _check(booking)
    ref = _ref(ctx, integration, booking.key)
    if ref is not None:
        return _again(ctx, integration, ref, booking, now)
    customer = _customer(ctx, booking)
    site = _site(ctx, customer, booking.address)
    service = _service(ctx, booking.service_slug)
    title = one_line(booking.title) or (service.name if service else f"{integration.platform} booking")
    job = directory.add_job(ctx, customer, title[:200], problem=booking.notes,
                            source=integration.platform[:20], site=site)
    ref = InboundRef(integration_id=integration.id, external_key=booking.key, job_id=job.id, state=TRAY)
    ctx.session.add(ref)
    ctx.session.flush()
    visit, reason = _place(ctx, job, service, booking, now)
    if visit is None:
        return _to_tray(ctx, integration, booking, job, reason)
    ref.appointment_id, ref.state = visit.id, BOOKED
    return Outcome(booking.key, BOOKED, job.id, visit.id)


def _to_tray(ctx: Context, integration: Integration, booking: InboundBooking, job: Job,
             reason: str) -> Outcome:
    audit.record(ctx.session, ctx.actor, Action.INTEGRATION_INBOUND_TRAY, "job", job.id,
                 after={"key": booking.key, "reason": reason})
    _alert(ctx, integration, booking.key,
           f"job #{job.id} for {job.customer.name} is in the tray without a visit: {reason}.")
    return Outcome(booking.key, TRAY, job.id, None, reason)


def _again(ctx: Context, integration: Integration, ref: InboundRef, booking: InboundBooking,
           now: dt.datetime) -> Outcome:
    """The same booking once more: unchanged, or moved on the platform."""
    job = ctx.session.get(Job, ref.job_id)
    visit = ctx.session.get(Appointment, ref.appointment_id) if ref.appointment_id else None
    if job is None or ref.state == CANCELLED:
        return Outcome(booking.key, "unchanged", ref.job_id, ref.appointment_id)
    service = _service(ctx, booking.service_slug) or (visit.service_type if visit else None)
    if visit is None or visit.status == AppointmentStatus.CANCELLED:
        placed, reason = _place(ctx, job, service, booking, now)
        if placed is None:
            return _to_tray(ctx, integration, booking, job, reason)
        ref.appointment_id, ref.state, ref.updated_at = placed.id, BOOKED, utcnow()
        return Outcome(booking.key, BOOKED, job.id, placed.id)
    if visit.starts_at == booking.starts_at:
        return Outcome(booking.key, "unchanged", job.id, visit.id)
    moved, reason = _place(ctx, job, service, booking, now, visit)
    if moved is None:
        _alert(ctx, integration, booking.key,
               f"visit #{visit.id} was moved on {integration.platform} but stays "
               f"{span(visit.starts_at, visit.ends_at, booking.timezone)}: {reason}. Call the customer.")
        return Outcome(booking.key, "kept", job.id, visit.id, reason)
    ref.updated_at = utcnow()
    return Outcome(booking.key, "moved", job.id, moved.id)


@operation
def cancel(ctx: Context, integration: Integration, item: InboundCancel) -> Outcome:
    """A booking cancelled on the platform: its visit cancelled (a job in the tray too)."""
    ref = _ref(ctx, integration, item.key)
    if ref is None:
        return Outcome(item.key, "unknown")
    if ref.state == CANCELLED:
        return Outcome(item.key, "unchanged", ref.job_id, ref.appointment_id)
    reason = one_line(item.reason)[:200] or f"cancelled on {integration.platform}"
    visit = ctx.session.get(Appointment, ref.appointment_id) if ref.appointment_id else None
    if visit is not None:
        appointments.cancel(ctx, visit, reason)
    else:
        job = ctx.session.get(Job, ref.job_id)
        if job is not None and job.status == JobStatus.NEW:
            job.status, job.updated_at = JobStatus.CANCELLED, utcnow()
            audit.record(ctx.session, ctx.actor, Action.JOB_CANCEL, "job", job.id, after={"reason": reason})
    ref.state, ref.updated_at = CANCELLED, utcnow()
    return Outcome(item.key, CANCELLED, ref.job_id, ref.appointment_id)
