"""Seed data for the live-server tests, made with the domain functions, and DB read-backs."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from live import ORGANIZER
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server import audit, calendars, directory, scheduling
from server.actors import SYSTEM, Actor
from server.context import Context
from server.db import Database
from server.errors import SlotTaken
from server.migrate import upgrade
from server.models import (
    Appointment,
    AuditEntry,
    CalendarItem,
    Change,
    OutboxMessage,
    Role,
)

UTC = dt.UTC

# The seeded week: Monday 2031-03-03 00:00 UTC. Far from "now" on purpose.
WEEK = dt.datetime(2031, 3, 3, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A time in the seeded week: day 0 = Monday; negative days or > 6 leave the week."""
    return WEEK + dt.timedelta(days=day, hours=hour, minutes=minute)


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True)
class Account:
    login: str
    password: str
    email: str
    role: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.login, self.password)


@dataclass(frozen=True)
class Booked:
    appointment_id: int
    uid: str
    job_id: int
    starts_at: dt.datetime
    ends_at: dt.datetime

    @property
    def href(self) -> str:
        return f"{self.uid}.ics"


@dataclass
class Seed:
    """What the base seed created; tests that mutate make their own technicians."""

    url: str
    dispatcher: Account
    technicians: dict[str, Account]
    team_slug: str
    customer_ids: list[int]
    jobs: dict[str, list[Booked]] = field(default_factory=dict)  # login -> appointments
    personal: dict[str, list[str]] = field(default_factory=dict)  # login -> item hrefs
    recurring_uid: str = ""
    recurring_href: str = ""
    dentist_uid: str = ""

    def week_uids(self, login: str) -> set[str]:
        end = WEEK + dt.timedelta(days=7)
        return {b.uid for b in self.jobs[login] if WEEK <= b.starts_at < end}


@contextmanager
def domain(db: Database, actor: Actor = SYSTEM) -> Iterator[Context]:
    """One write transaction with a domain context, as the dispatcher's tools use it."""
    with db.write() as session:
        yield Context(session, actor, ORGANIZER)


def add_account(ctx: Context, login: str, role: Role, *, team_slug: str | None = None,
                timezone: str = "UTC") -> Account:
    email = f"{login}@example.test"
    user = directory.add_user(ctx, login, name=f"{login.capitalize()} Tester", email=email,
                              role=role, timezone=timezone)
    _credential, password = directory.issue_password(ctx, user, "tests")
    if team_slug is not None:
        directory.add_member(ctx, directory.find_team(ctx.session, team_slug), user)
    return Account(login, password, email, str(role))


def book_job(ctx: Context, login: str | None, customer_id: int, title: str,
             starts_at: dt.datetime, ends_at: dt.datetime) -> Booked:
    customer = directory.find_customer(ctx.session, customer_id)
    job = directory.add_job(ctx, customer, title, problem=f"{title}: pressure drops under load")
    technician = directory.find_user(ctx.session, login) if login else None
    appointment = scheduling.book(ctx, job, technician, starts_at, ends_at)
    return Booked(appointment.id, appointment.uid, job.id, starts_at, ends_at)


def personal_event(uid: str, summary: str, start: dt.datetime, end: dt.datetime,
                   rrule: str | None = None) -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//fieldcal tests//EN",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20310101T000000Z",
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
        f"DTEND:{end:%Y%m%dT%H%M%SZ}",
        f"SUMMARY:{summary}",
    ]
    if rrule:
        lines.append(f"RRULE:{rrule}")
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def put_personal(ctx: Context, login: str, href: str, text: str) -> None:
    collection = calendars.require_collection(ctx.session, calendars.personal_path(login))
    calendars.put_item(ctx, collection, href, text)


def seed_base(url: str) -> Seed:
    """Migrate a fresh database and load the fixed data every module starts from."""
    db = Database(url)
    try:
        upgrade(db)
        with domain(db) as ctx:
            directory.add_team(ctx, "north", "North team")
            dispatcher = add_account(ctx, "dispatch", Role.DISPATCHER)
            alice = add_account(ctx, "alice", Role.TECHNICIAN, team_slug="north",
                                timezone="Europe/Berlin")
            bob = add_account(ctx, "bob", Role.TECHNICIAN, team_slug="north",
                              timezone="America/New_York")
            carol = add_account(ctx, "carol", Role.TECHNICIAN, timezone="Europe/Berlin")
            acme = directory.add_customer(
                ctx, "Acme Compressed Air", email="ops@acme.example.test",
                phone="+49 30 1234567", timezone="Europe/Berlin",
                address="Hauptstraße 1, 10115 Berlin", compressor_make="Kaeser",
                compressor_model="SK 22", compressor_serial="KS-0042")
            brewery = directory.add_customer(
                ctx, "Bayside Brewery", email="tech@bayside.example.test",
                timezone="America/New_York", address="12 Harbor Rd, Boston MA",
                compressor_make="Atlas Copco", compressor_model="GA 30")
            seed = Seed(url=url, dispatcher=dispatcher,
                        technicians={"alice": alice, "bob": bob, "carol": carol},
                        team_slug="north", customer_ids=[acme.id, brewery.id])
            seed.jobs["alice"] = [
                book_job(ctx, "alice", acme.id, "Annual service", at(0, 9), at(0, 11)),
                book_job(ctx, "alice", brewery.id, "Oil leak", at(2, 13), at(2, 15)),
                book_job(ctx, "alice", acme.id, "Filter change", at(4, 8), at(4, 10)),
                book_job(ctx, "alice", acme.id, "Previous week visit", at(-3, 9), at(-3, 10)),
                book_job(ctx, "alice", brewery.id, "Next week visit", at(7, 9), at(7, 10)),
            ]
            seed.jobs["bob"] = [
                book_job(ctx, "bob", brewery.id, "Pressure switch", at(1, 10), at(1, 12)),
            ]
            seed.jobs["carol"] = [
                book_job(ctx, "carol", acme.id, "Carol's inspection", at(3, 10), at(3, 11)),
            ]
            book_job(ctx, None, acme.id, "Unassigned survey", at(3, 14), at(3, 15))
            seed.recurring_uid = "breakfast-weekly@example.test"
            seed.recurring_href = "breakfast.ics"
            put_personal(ctx, "alice", seed.recurring_href, personal_event(
                seed.recurring_uid, "Team breakfast", at(-13, 7), at(-13, 7, 30),
                rrule="FREQ=WEEKLY;COUNT=10"))
            seed.dentist_uid = "dentist@example.test"
            put_personal(ctx, "alice", "dentist.ics", personal_event(
                seed.dentist_uid, "Dentist", at(3, 16), at(3, 17)))
            seed.personal["alice"] = [seed.recurring_href, "dentist.ics"]
        return seed
    finally:
        db.dispose()


@dataclass(frozen=True)
class FreshTechnician:
    account: Account
    booked: list[Booked]


def fresh_technician(db: Database, seed: Seed, prefix: str,
                     slots: list[tuple[dt.datetime, dt.datetime]],
                     *, team_slug: str | None = None) -> FreshTechnician:
    """A technician of its own for one test, with appointments at the given slots."""
    login = f"{prefix}-{secrets.token_hex(3)}"
    with domain(db) as ctx:
        account = add_account(ctx, login, Role.TECHNICIAN, team_slug=team_slug)
        booked = [
            book_job(ctx, login, seed.customer_ids[i % len(seed.customer_ids)],
                     f"{prefix} job {i + 1}", start, end)
            for i, (start, end) in enumerate(slots)
        ]
    return FreshTechnician(account, booked)


def one_technician(db: Database, seed: Seed, prefix: str, day: int = 14) -> tuple[Account, Booked]:
    """A technician of its own with one visit from 09:00 to 10:00 on `day`."""
    fresh = fresh_technician(db, seed, prefix, [(at(day, 9), at(day, 10))])
    return fresh.account, fresh.booked[0]


def audit_entries(db: Database, entity: str, entity_id: object, action: str) -> list[AuditEntry]:
    with db.read() as session:
        return [e for e in audit.trail(session, entity, entity_id) if e.action == action]


M = TypeVar("M")


def must_get(session: Session, model: type[M], ident: object) -> M:
    """`session.get` for a row the test knows is there: fails the test when it is missing."""
    row = session.get(model, ident)
    assert row is not None, f"no {model.__name__} with id {ident!r}"
    return row


def after_of(entry: AuditEntry) -> dict[str, Any]:
    """The state recorded after the change, for an entry that has one."""
    assert entry.after is not None, (entry.action, entry.entity, entry.entity_id)
    return entry.after


def appointment_row(db: Database, appointment_id: int) -> Appointment:
    with db.read() as session:
        appointment = scheduling.get_appointment(session, appointment_id)
        _ = appointment.technician, appointment.job  # load before the session closes
        return appointment


def row_counts(db: Database) -> dict[str, int]:
    """Rows of the tables a request could leave partial writes in."""
    with db.read() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (CalendarItem, Change, AuditEntry, OutboxMessage, Appointment)
        }


def items_of(db: Database, path: str) -> dict[str, CalendarItem]:
    with db.read() as session:
        collection = calendars.require_collection(session, path)
        return {
            item.href: item
            for item in session.scalars(
                select(CalendarItem).where(CalendarItem.collection_id == collection.id)
            )
        }


# --------------------------------------------------------------------------- multiprocess booking


def book_in_process(url: str, job_id: int, login: str, starts_at: dt.datetime,
                    ends_at: dt.datetime, barrier: object) -> str:
    """Run in a separate process: wait for the others, then try to book. Returns the outcome."""
    from live import use_audit_key

    from server.models import Job

    use_audit_key(url)
    db = Database(url)
    try:
        with db.read() as session:
            session.get(Job, job_id)  # connect before the race starts
        barrier.wait(timeout=60)  # type: ignore[attr-defined]
        try:
            with domain(db) as ctx:
                job = ctx.session.get(Job, job_id)
                assert job is not None
                technician = directory.find_user(ctx.session, login)
                scheduling.book(ctx, job, technician, starts_at, ends_at)
        except SlotTaken:
            return "taken"
        return "booked"
    finally:
        db.dispose()
