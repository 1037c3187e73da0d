"""Nobody is emailed about a visit that has already ended (records of past work, the demo)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from mailkit import (
    Clock,
    add_customer,
    add_technician,
    book,
    domain,
    email_rows,
    outbox_rows,
    post_office,
    settings_for,
    smtp_server,
)

from server import demo
from server.db import Database
from server.migrate import upgrade
from server.models import Appointment, JobStatus, utcnow
from server.scheduling import appointments


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    upgrade(db)
    try:
        yield db
    finally:
        db.dispose()


def test_changes_to_an_ended_visit_send_no_email(database: Database, tmp_path: Path) -> None:
    now = utcnow().replace(microsecond=0)
    with smtp_server() as smtp:
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url))
        with domain(database) as ctx:
            technician = add_technician(ctx, "Paula")
            customer = add_customer(ctx, "Past Works Ltd")
            past = book(ctx, customer, technician, now - dt.timedelta(days=2), 2)
            appointments.accept(ctx, past)
            appointments.set_status(ctx, past, JobStatus.COMPLETED)
            upcoming = book(ctx, customer, technician, now + dt.timedelta(days=2), 2)
            past_id, upcoming_id = past.id, upcoming.id
            addresses = (customer.email, technician.email)
        post.drain()
        assert email_rows(database, past_id) == []
        assert len(email_rows(database, upcoming_id)) == 2, "the upcoming visit is still told"
        with domain(database) as ctx:  # a record corrected afterwards: still nobody is mailed
            appointments.cancel(ctx, appointments.get_appointment(ctx.session, past_id), "typo")
        post.drain()
        assert email_rows(database, past_id) == []
        for address in addresses:
            assert len(smtp.inbox.to(address)) == 1


def test_a_visit_that_ended_before_the_worker_ran_is_not_mailed(database: Database,
                                                                 tmp_path: Path) -> None:
    clock = Clock()
    post = post_office(database, settings_for(database.url, tmp_path), clock)
    start = utcnow().replace(microsecond=0) + dt.timedelta(hours=1)
    with domain(database) as ctx:
        visit = book(ctx, add_customer(ctx, "Late Worker GmbH"), add_technician(ctx, "Lars"), start, 1)
        visit_id = visit.id
    clock.advance(hours=3)  # the worker was down until after the visit
    post.drain()
    assert email_rows(database, visit_id) == []


def test_the_demo_queues_no_email_about_past_visits(database: Database, tmp_path: Path) -> None:
    now = utcnow()
    with domain(database) as ctx:
        if not demo.is_loaded(ctx):
            demo.load(ctx, now.date(), now)
    post = post_office(database, settings_for(database.url, tmp_path))  # compose only, no SMTP
    post.drain(max_cycles=200)
    emails = outbox_rows(database, "email")
    assert emails, "upcoming demo visits are still told"
    with database.read() as session:
        ended = [row.id for row in emails
                 if (a := session.get(Appointment, row.payload["appointment_id"])) is not None
                 and a.ends_at <= now]
    assert ended == []


def test_customer_email_names_the_business_phone_or_email(database: Database, tmp_path: Path) -> None:
    start = utcnow().replace(microsecond=0) + dt.timedelta(days=3)
    base = settings_for(database.url, tmp_path)
    for settings, expected in (
            (base, "Questions? Call us on +1 555 0100."),
            (replace(base, business_phone="", business_email="office@example.test"),
             "Questions? Email office@example.test."),
            (replace(base, business_email="office@example.test"),
             "Questions? Call us on +1 555 0100 or email office@example.test.")):
        with smtp_server() as smtp:
            post = post_office(database, replace(settings, smtp_url=smtp.url))
            with domain(database) as ctx:
                customer = add_customer(ctx, "Contact Test AG")
                book(ctx, customer, add_technician(ctx, "Cleo"), start, 1)
                address = customer.email
            post.drain()
            (message,) = smtp.inbox.to(address)
            body = message.get_body(("plain",))
            assert body is not None
            text = body.get_content()
            assert expected in text, text
