"""The core without any face: the database guard, the change log, the audit chain, rendering."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server import audit, calendars, changes, directory
from server.actors import SYSTEM, Actor
from server.context import Context
from server.db import Database
from server.errors import Forbidden, SlotTaken
from server.ical import Audience, render_appointment
from server.migrate import upgrade
from server.models import (
    Appointment,
    AppointmentStatus,
    AuditEntry,
    Change,
    Collection,
    Job,
    OutboxMessage,
    Role,
    User,
)
from server.scheduling import appointments

ORGANIZER = "dispatch@example.test"
T0 = dt.datetime(2031, 5, 5, 9, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    upgrade(database)
    with database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        directory.add_user(ctx, "dora", name="Dora Diaz", email="dora@example.test",
                           role=Role.TECHNICIAN, timezone="Europe/Madrid")
        directory.add_user(ctx, "emil", name="Emil Berg", email="emil@example.test",
                           role=Role.TECHNICIAN, timezone="Europe/Berlin")
        customer = directory.add_customer(ctx, "Kompressor AG", address="Hafenstr. 1")
        directory.add_job(ctx, customer, "Annual service")
    yield database
    database.dispose()


def job_and_tech(session: Session, login: str = "dora") -> tuple[Job, User]:
    job = session.scalars(select(Job).order_by(Job.id)).first()
    assert job is not None
    return job, directory.find_user(session, login)


def test_database_refuses_overlap_even_without_the_friendly_check(db: Database) -> None:
    with db.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        job, dora = job_and_tech(session)
        appointments.book(ctx, job, dora, T0, T0 + 2 * HOUR)
    for start in (T0 + HOUR, T0 - HOUR / 2, T0):
        with pytest.raises(IntegrityError) as caught, db.write() as session:
            job, dora = job_and_tech(session)
            session.execute(insert(Appointment).values(
                uid=f"raw-{start.hour}", job_id=job.id, technician_id=dora.id, starts_at=start,
                ends_at=start + HOUR, blocked_from=start, blocked_until=start + HOUR,
                status="confirmed", partstat="NEEDS-ACTION", sequence=0,
                created_at=T0, updated_at=T0))
        assert "overlap" in str(caught.value).lower() or "23P01" in str(caught.value)
    with db.write() as session:  # touching is fine: [start, end)
        job, dora = job_and_tech(session)
        appointments.book(Context(session, SYSTEM, ORGANIZER), job, dora, T0 + 2 * HOUR, T0 + 3 * HOUR)


def test_refused_change_leaves_nothing_behind(db: Database) -> None:
    def counts(session: Session) -> tuple[int, ...]:
        return tuple(session.scalar(select(func.count()).select_from(m)) or 0
                     for m in (Appointment, Change, AuditEntry, OutboxMessage))

    with db.write() as session:
        before = counts(session)
        ctx = Context(session, SYSTEM, ORGANIZER)
        job, dora = job_and_tech(session)
        with pytest.raises(SlotTaken):
            appointments.book(ctx, job, dora, T0 + HOUR, T0 + 2 * HOUR)
        assert counts(session) == before
    with db.read() as session:
        assert counts(session) == before


def test_cancelled_visits_free_the_slot_and_bump_sequence(db: Database) -> None:
    start = T0 + dt.timedelta(days=1)
    with db.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        job, emil = job_and_tech(session, "emil")
        first = appointments.book(ctx, job, emil, start, start + HOUR)
        appointments.cancel(ctx, first)
        second = appointments.book(ctx, job, emil, start, start + HOUR)
        assert first.status == AppointmentStatus.CANCELLED and first.sequence == 1
        assert second.status == AppointmentStatus.CONFIRMED


def test_only_the_assigned_technician_may_answer(db: Database) -> None:
    start = T0 + dt.timedelta(days=2)
    with db.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        job, dora = job_and_tech(session)
        visit = appointments.book(ctx, job, dora, start, start + HOUR)
        emil_ctx = Context(session, Actor("emil", "caldav", "technician"), ORGANIZER)
        with pytest.raises(Forbidden):
            appointments.accept(emil_ctx, visit)
        dora_ctx = Context(session, Actor("dora", "caldav", "technician"), ORGANIZER)
        appointments.decline(dora_ctx, visit)
        assert visit.technician_id is None and visit.status == AppointmentStatus.CONFIRMED
        jobs = calendars.require_collection(session, calendars.jobs_path("dora"))
        assert calendars.get_item(session, jobs, calendars.appointment_href(visit)) is None
        trail = audit.trail(session, "appointment", visit.id)
        assert [e.action for e in trail] == ["appointment.book", "appointment.decline"]
        assert trail[-1].channel == "caldav" and trail[-1].actor == "dora"
        last = trail[-1]
        assert last.before is not None and last.after is not None
        assert last.before["technician"] == "dora" and last.after["technician"] is None


def test_change_log_gives_deltas_with_tombstones_and_expires(db: Database) -> None:
    start = T0 + dt.timedelta(days=3)
    with db.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        jobs = calendars.require_collection(session, calendars.jobs_path("emil"))
        mark = jobs.sync_seq
        job, emil = job_and_tech(session, "emil")
        visit = appointments.book(ctx, job, emil, start, start + HOUR)
        href = calendars.appointment_href(visit)
        session.refresh(jobs)
        assert changes.since(session, jobs, mark) == [href]
        appointments.reassign(ctx, visit, directory.find_user(session, "dora"))
        session.refresh(jobs)
        assert changes.since(session, jobs, mark) == [href], "tombstone: the href is reported"
        assert calendars.get_item(session, jobs, href) is None
        assert changes.since(session, jobs, jobs.sync_seq) == []
        with pytest.raises(changes.TokenExpired):
            changes.since(session, jobs, jobs.sync_seq + 5)
        session.execute(update(Change).where(Change.collection_id == jobs.id)
                        .values(at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))
        assert changes.prune(session, jobs, keep=0, older_than=dt.timedelta(days=30)) > 0
        with pytest.raises(changes.TokenExpired):
            changes.since(session, jobs, mark)


def test_collection_etag_source_advances_on_every_change(db: Database) -> None:
    with db.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        personal = calendars.require_collection(session, calendars.personal_path("dora"))
        seq = personal.sync_seq
        calendars.set_props(ctx, personal, {"D:displayname": "Private"})
        assert session.scalar(select(Collection.sync_seq).where(Collection.id == personal.id)) == seq + 1


def test_rendering_is_deterministic(db: Database) -> None:
    with db.read() as session:
        visit = session.scalars(select(Appointment).where(Appointment.technician_id.is_not(None))).first()
        assert visit is not None
        for audience in Audience:
            assert render_appointment(visit, audience, ORGANIZER) == render_appointment(
                visit, audience, ORGANIZER)


def test_audit_chain_verifies_and_finds_tampering(db: Database) -> None:
    with db.read() as session:
        assert list(audit.verify(session)) == []
    with db.write() as session:
        target = session.scalars(select(AuditEntry).order_by(AuditEntry.id).offset(3)).first()
        assert target is not None
        session.execute(text("UPDATE audit_entry SET actor = 'mallory' WHERE id = :id"), {"id": target.id})
    with db.read() as session:
        breaks = list(audit.verify(session))
        assert [b.entry_id for b in breaks] == [target.id]
    with db.write() as session:
        session.execute(text("UPDATE audit_entry SET actor = :a WHERE id = :id"),
                        {"a": target.actor, "id": target.id})
