"""Seed data and form helpers for the booking page tests (test client, live server, browser)."""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass

from sqlalchemy import select

from server import directory, links
from server.actors import SYSTEM
from server.context import Context
from server.db import Database
from server.models import Appointment, AppointmentStatus, Job, Role, User
from server.scheduling import booking, capacity
from server.scheduling.availability import free_slots

ORGANIZER = "dispatch@example.test"
EVERY_DAY = {d: [("07:00", "19:00")] for d in range(7)}
PHONE = "+49 30 555 0100"


@dataclass(frozen=True)
class BookingSeed:
    repair: str  # one qualified technician (Berlin), 60-minute visits
    windows: str  # arrival windows 08:00-12:00 / 13:00-17:00 (business zone)
    technician: str
    window_technician: str


def technician(ctx: Context, login: str, name: str, zone: str, skills: list[str],
               hours: dict[int, list[tuple[str, str]]] | None = None) -> User:
    user = directory.add_user(ctx, login, name=name,
                              email=f"{login}@example.test", role=Role.TECHNICIAN, timezone=zone,
                              skills=skills)
    if hours is not None:
        capacity.set_working_hours(ctx, user, hours)
    return user


def seed_booking(db: Database, prefix: str = "") -> BookingSeed:
    """Technicians who work every day (so there are always free times) and two services."""
    with db.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        repair_tech = technician(ctx, f"{prefix}anna", "Anna Keller", "Europe/Berlin",
                                 [f"{prefix}screw"], EVERY_DAY)
        window_tech = technician(ctx, f"{prefix}otto", "Otto Keller", "Europe/Berlin",
                                 [f"{prefix}survey"], EVERY_DAY)
        capacity.add_service_type(
            ctx, f"{prefix}repair", "Compressor repair", duration_minutes=60,
            description="A technician finds and fixes the fault on site.",
            skills=[f"{prefix}screw"], min_notice_minutes=60, horizon_days=28)
        capacity.add_service_type(
            ctx, f"{prefix}survey", "Air system survey", duration_minutes=60,
            skills=[f"{prefix}survey"], min_notice_minutes=60, horizon_days=28,
            arrival_windows=["08:00-12:00", "13:00-17:00"])
        return BookingSeed(f"{prefix}repair", f"{prefix}survey", repair_tech.login, window_tech.login)


def details(email: str, **overrides: str) -> dict[str, str]:
    form = {
        "problem": "Trips after ten minutes under load.",
        "make": "Kaeser",
        "model": "SK 22",
        "address": "Hauptstraße 1\n10115 Berlin",
        "name": "Dana Customer",
        "email": email,
        "phone": "+49 30 1234567",
        "timezone": "Europe/Berlin",
    }
    form.update(overrides)
    return form


def hidden(page: str, name: str) -> str:
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden field {name!r} in the page"
    return html.unescape(found.group(1))


def slot_values(page: str) -> list[str]:
    return [html.unescape(v) for v in re.findall(r'name="slot" value="([^"]+)"', page)]


def slot_labels(page: str) -> list[str]:
    return re.findall(r'<label for="slot-\d+">([^<]+)</label>', page)


def appointments_of(db: Database, email: str) -> list[Appointment]:
    with db.read() as session:
        found = list(session.scalars(
            select(Appointment).join(Job, Job.id == Appointment.job_id)
            .where(Job.customer.has(email=email)).order_by(Appointment.id)))
        for appointment in found:
            _ = appointment.job.customer, appointment.job.site, appointment.technician
        return found


def live_in(db: Database, starts_at: dt.datetime, technician_login: str) -> list[Appointment]:
    """Non-cancelled appointments of a technician starting at a time."""
    with db.read() as session:
        user = directory.find_user(session, technician_login)
        return list(session.scalars(select(Appointment).where(
            Appointment.technician_id == user.id, Appointment.starts_at == starts_at,
            Appointment.status != AppointmentStatus.CANCELLED)))


def confirmed_booking(db: Database, signer: links.LinkSigner, slug: str, starts_at: dt.datetime,
                      email: str, key: str, *, timezone: str = "Europe/Berlin",
                      windows_zone: str = "UTC") -> tuple[int, str]:
    """Book through the domain (hold + confirm): (appointment id, manage token)."""
    form = details(email, timezone=timezone)
    contact = booking.Contact(name=form["name"], email=email, phone=form["phone"],
                              timezone=timezone, address=form["address"], problem=form["problem"])
    with db.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        service = booking.service_type_by_slug(session, slug)
        appointment = booking.hold(ctx, service, starts_at, contact, idempotency_key=key,
                                   windows_zone=windows_zone)
        link = booking.confirm(ctx, appointment)
        return appointment.id, signer.dumps(link)


def free_starts(db: Database, slug: str, now: dt.datetime, days: int = 28) -> list[dt.datetime]:
    with db.read() as session:
        service = booking.service_type_by_slug(session, slug)
        return [s.starts_at for s in free_slots(session, service, start=now,
                                                end=now + dt.timedelta(days=days), now=now)]
