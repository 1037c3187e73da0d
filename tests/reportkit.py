"""A small business whose every report was computed by hand (see EXPECTED in test_reports.py).

The reported week is Monday 2031-03-24 00:00 UTC to Monday 2031-03-31 00:00 UTC. Berlin
springs forward on Sunday 2031-03-30 (01:00 UTC); New York is on EDT (UTC-4) all week.

- anna (Europe/Berlin, team berlin): Mon-Fri 08:00-16:00, Sun 01:00-05:00 (on the clock
  change day that shift is 3 hours long); leave Wed 12:00-16:00 and Fri 10:00-12:00.
- bob (America/New_York, team newyork): Mon-Fri 09:00-17:00.
- a holiday on Friday 2031-03-28 (Berlin day: Thu 23:00 UTC to Fri 23:00 UTC).
- service type "repair": 15 min buffer after, 30 min travel.

Visits (UTC): A1 Mon 08-10 (booked 07-09 over the API, moved), A2 Tue 09-11 (booked on the
web, cancelled) and A3 Wed 08-10 (the same job booked again from the CLI), A4 Sun 01-02 (the
clock change day; 03:00 in Berlin), A5 Thu 13-15 and A6 Sat 09-10 (one job, two visits),
B1 Tue 03-05 (bob: Monday 23:00 to Tuesday 01:00 in New York), U1 Wed 15-16 unassigned.
A1, A3 and the A5/A6 job are completed; A4 never got a status (a no-show); B1 has an
arrival window and an "on site" that was recorded (at the real time the test runs).

Around the real time (the audit trail and the outbox are written then): bob's T1-T4 with
arrival windows: on time, early, late, and no arrival recorded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from seeding import domain
from sqlalchemy import update

from server import directory, scheduling
from server.actors import Actor
from server.db import Database
from server.integrations import PUSH
from server.migrate import upgrade
from server.models import Integration, Job, JobStatus, OutboxMessage, Role, utcnow
from server.scheduling.booking import service_type_by_slug
from server.scheduling.capacity import add_holiday, add_service_type, add_time_off, set_working_hours

UTC = dt.UTC
WEEK_START = dt.datetime(2031, 3, 24, tzinfo=UTC)
WEEK_END = dt.datetime(2031, 3, 31, tzinfo=UTC)
REPORT_NOW = dt.datetime(2031, 4, 1, tzinfo=UTC)  # "now" for the no-show report
BUSINESS_ZONE = "Europe/Berlin"

API = Actor(name="dana", channel="api", role="dispatcher")
WEB = Actor(name="customer", channel="web", role="system")
CLI = Actor(name="dana", channel="cli", role="dispatcher")
ANNA = Actor(name="anna", channel="caldav", role="technician")
BOB = Actor(name="bob", channel="caldav", role="technician")


def utc(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A time in the reported week, UTC: day 0 = Monday 2031-03-24."""
    return WEEK_START + dt.timedelta(days=day, hours=hour, minutes=minute)


@dataclass(frozen=True)
class Fixture:
    url: str
    now: dt.datetime  # when the fixture was written (the audit trail's and outbox's times)
    integration_id: int
    appointments: dict[str, int]


def _visit(db: Database, actor: Actor, login: str | None, customer_id: int, title: str,
           starts_at: dt.datetime, ends_at: dt.datetime, *, job_id: int | None = None,
           window: tuple[dt.datetime, dt.datetime] | None = None) -> tuple[int, int]:
    with domain(db, actor) as ctx:
        customer = directory.find_customer(ctx.session, customer_id)
        job = (ctx.session.get(Job, job_id) if job_id is not None
               else directory.add_job(ctx, customer, title))
        assert job is not None
        technician = directory.find_user(ctx.session, login) if login else None
        service = service_type_by_slug(ctx.session, "repair")
        appointment = scheduling.book(ctx, job, technician, starts_at, ends_at,
                                      service_type=service, window=window)
        return appointment.id, job.id


def _status(db: Database, actor: Actor, appointment_id: int, *statuses: JobStatus) -> None:
    for status in statuses:
        with domain(db, actor) as ctx:
            scheduling.set_status(ctx, scheduling.get_appointment(ctx.session, appointment_id), status)


def build(url: str) -> Fixture:
    db = Database(url)
    try:
        return _build(db, url)
    finally:
        db.dispose()


def _build(db: Database, url: str) -> Fixture:
    upgrade(db)
    now = utcnow().replace(microsecond=0)
    with domain(db, CLI) as ctx:
        for slug in ("berlin", "newyork"):
            directory.add_team(ctx, slug, slug.capitalize())
        for login, zone, team in (("anna", "Europe/Berlin", "berlin"),
                                  ("bob", "America/New_York", "newyork")):
            user = directory.add_user(ctx, login, name=f"{login.capitalize()} Example",
                                      email=f"{login}@example.test", role=Role.TECHNICIAN,
                                      timezone=zone)
            directory.add_member(ctx, directory.find_team(ctx.session, team), user)
        add_service_type(ctx, "repair", "Repair", duration_minutes=60, buffer_after_minutes=15,
                         travel_minutes=30)
        customer = directory.add_customer(ctx, "Acme Air", email="ops@acme.example.test",
                                          timezone="Europe/Berlin")
        cid = customer.id
    ids: dict[str, int] = {}
    jobs: dict[str, int] = {}
    ids["A1"], jobs["J1"] = _visit(db, API, "anna", cid, "Annual service", utc(0, 7), utc(0, 9))
    with domain(db, API) as ctx:
        scheduling.reschedule(ctx, scheduling.get_appointment(ctx.session, ids["A1"]), utc(0, 8), utc(0, 10))
    ids["A2"], jobs["J2"] = _visit(db, WEB, "anna", cid, "Leak", utc(1, 9), utc(1, 11))
    with domain(db, WEB) as ctx:
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, ids["A2"]), "away that day")
    ids["A3"], _ = _visit(db, CLI, "anna", cid, "Leak", utc(2, 8), utc(2, 10), job_id=jobs["J2"])
    ids["A4"], jobs["J4"] = _visit(db, ANNA, "anna", cid, "Night check", utc(6, 1), utc(6, 2))
    ids["A5"], jobs["J5"] = _visit(db, API, "anna", cid, "Motor", utc(3, 13), utc(3, 15))
    ids["A6"], _ = _visit(db, API, "anna", cid, "Motor", utc(5, 9), utc(5, 10), job_id=jobs["J5"])
    ids["B1"], jobs["JB1"] = _visit(db, API, "bob", cid, "Late shift", utc(1, 3), utc(1, 5),
                                    window=(utc(1, 2, 30), utc(1, 3, 30)))
    ids["U1"], _ = _visit(db, WEB, None, cid, "Survey", utc(2, 15), utc(2, 16))
    hour = dt.timedelta(hours=1)
    ids["T1"], _ = _visit(db, CLI, "bob", cid, "On time", now - hour, now,
                          window=(now - 2 * hour, now + 2 * hour))
    ids["T2"], _ = _visit(db, CLI, "bob", cid, "Early", now + 4 * hour, now + 5 * hour,
                          window=(now + 3 * hour, now + 6 * hour))
    ids["T3"], _ = _visit(db, CLI, "bob", cid, "Late", now - 8 * hour, now - 7 * hour,
                          window=(now - 9 * hour, now - 8 * hour))
    ids["T4"], _ = _visit(db, CLI, "bob", cid, "Nobody", now - 12 * hour, now - 11 * hour,
                          window=(now - 13 * hour, now - 12 * hour))
    _status(db, ANNA, ids["A1"], JobStatus.ON_SITE, JobStatus.COMPLETED)
    _status(db, ANNA, ids["A3"], JobStatus.ON_SITE, JobStatus.COMPLETED)
    _status(db, ANNA, ids["A5"], JobStatus.ON_SITE)
    _status(db, ANNA, ids["A6"], JobStatus.COMPLETED)
    _status(db, BOB, ids["B1"], JobStatus.ON_SITE)
    for name in ("T1", "T2", "T3"):
        _status(db, BOB, ids[name], JobStatus.ON_SITE)
    with domain(db, CLI) as ctx:
        anna = directory.find_user(ctx.session, "anna")
        bob = directory.find_user(ctx.session, "bob")
        set_working_hours(ctx, anna, {**{d: [("08:00", "16:00")] for d in range(5)}, 6: [("01:00", "05:00")]})
        set_working_hours(ctx, bob, {d: [("09:00", "17:00")] for d in range(5)})
        add_time_off(ctx, anna, utc(2, 11), utc(2, 15), "dentist")
        add_time_off(ctx, anna, utc(4, 9), utc(4, 11), "half day")
        add_holiday(ctx, utc(3, 23), utc(4, 23), "Spring holiday")
        # the request times (a job is received when it is created): set by hand for the fixture
        received = {"J1": utc(0, 6), "J2": utc(0, 10), "J4": utc(1, 0), "J5": utc(0, 13),
                    "JB1": utc(0, 0)}
        for name, at in received.items():
            ctx.session.execute(update(Job).where(Job.id == jobs[name]).values(created_at=at))
        waiting = directory.add_job(ctx, directory.find_customer(ctx.session, cid), "Waiting")
        ctx.session.execute(update(Job).where(Job.id == waiting.id).values(created_at=utc(2, 12)))
        # an integration and its pushes (written after the visits, so nothing fanned out)
        integration = Integration(platform="slack", name="Dispatch", created_by="dana")
        ctx.session.add(integration)
        ctx.session.flush()
        for n, (status, attempts) in enumerate((("sent", 1), ("sent", 3), ("dead", 5), ("pending", 0))):
            ctx.session.add(OutboxMessage(kind=PUSH, payload={"integration_id": integration.id},
                                          idempotency_key=f"push:{integration.id}:fixture:{n}",
                                          status=status, attempts=attempts))
        integration_id = integration.id
    return Fixture(url=url, now=now, integration_id=integration_id, appointments=ids)
