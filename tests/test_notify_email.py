"""iMIP email from the outbox, delivered to a real SMTP server on loopback, on both databases."""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import AUDIT_KEY
from mailkit import (
    BASE_URL,
    DISPATCH,
    REFUSED_DOMAIN,
    SECRET,
    Clock,
    add_customer,
    add_technician,
    book,
    domain,
    email_rows,
    imip,
    outbox_rows,
    post_office,
    settings_for,
    smtp_server,
)

from server import links
from server.actors import Actor
from server.db import Database
from server.migrate import upgrade
from server.models import Appointment, JobStatus
from server.notify.handlers import CHANGED, EMAIL
from server.scheduling import appointments, booking
from server.scheduling.appointments import release_expired_holds
from server.worker import DEAD, PENDING, SENT, Delivery

# Tue 4 Mar 2031, 07:00-11:00 UTC = 08:00-12:00 in Berlin (CET)
VISIT = dt.datetime(2031, 3, 4, 7, 0, tzinfo=dt.UTC)
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    upgrade(db)
    try:
        yield db
    finally:
        db.dispose()


def load(database: Database, appointment_id: int) -> Appointment:
    with database.read() as session:
        appointment = session.get(Appointment, appointment_id)
        assert appointment is not None
        return appointment


def manage_token(html_part: str) -> str:
    found = re.findall(r'href="([^"]+)"', html_part)
    assert found, "no link in the HTML part"
    url = html.unescape(found[0])
    assert url.startswith(f"{BASE_URL}/m/")
    return url.rsplit("/", 1)[1]


def test_customer_and_technician_follow_one_uid_from_confirm_to_cancel(
        database: Database, tmp_path: Path) -> None:
    with smtp_server() as smtp:
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url))
        with domain(database) as ctx:
            technician = add_technician(ctx, "Tina")
            customer = add_customer(ctx, "Acme Air")
            held = book(ctx, customer, technician, VISIT, 3, window_hours=4, status="tentative",
                        hold_minutes=15)
            held_id, customer_email, tech_email = held.id, customer.email, technician.email
        post.drain()
        assert smtp.inbox.to(customer_email) == [] and smtp.inbox.to(tech_email) == []  # a hold: silence

        with domain(database, Actor("web", "web", "system")) as ctx:
            booking.confirm(ctx, appointments.get_appointment(ctx.session, held_id))
        post.drain()
        (confirmed,) = smtp.inbox.to(customer_email)
        assert confirmed["Subject"] == "Your compressor service visit is confirmed for Tue 4 Mar, 08:00–12:00"
        assert confirmed["From"].addresses[0].addr_spec == "dispatch@fieldcal.example.test"
        assert confirmed["To"].addresses[0].addr_spec == customer_email
        first, parts = imip(confirmed, "REQUEST")
        assert first.status == "CONFIRMED"
        assert first.organizer == "mailto:dispatch@fieldcal.example.test"
        assert first.attendees == [f"mailto:{customer_email}"]
        assert "Job #" not in first.text and "Pressure drops" not in first.text  # customer audience
        token = manage_token(parts.html)
        with database.read() as session:
            link = links.resolve(session, links.LinkSigner((SECRET,)), token, links.Purpose.MANAGE)
            assert (link.subject_kind, link.subject_id) == ("appointment", held_id)
        assert f"{BASE_URL}/m/{token}" in parts.text and first.url == f"{BASE_URL}/m/{token}"
        for fact in ("08:00–12:00", "Europe/Berlin", "Hauptstraße 1", "Tina", "Annual service"):
            assert fact in parts.text and html.escape(fact) in parts.html
        (assigned,) = smtp.inbox.to(tech_email)
        tech_first, _ = imip(assigned, "REQUEST")
        assert tech_first.uid == first.uid and tech_first.sequence == first.sequence
        assert tech_first.attendees == [f"mailto:{tech_email}"]
        assert assigned["Subject"].startswith("New job: Annual service on Tue 4 Mar, 08:00–11:00")

        with domain(database) as ctx:
            appointments.reschedule(ctx, appointments.get_appointment(ctx.session, held_id),
                                    VISIT + dt.timedelta(days=1), VISIT + dt.timedelta(days=1, hours=3))
        post.drain()
        moved = smtp.inbox.to(customer_email)[-1]
        assert moved["Subject"] == "Your compressor service visit has moved to Wed 5 Mar, 08:00–12:00"
        second, parts = imip(moved, "REQUEST")
        assert second.uid == first.uid and second.sequence > first.sequence
        assert second.dtstart == VISIT + dt.timedelta(days=1)
        assert manage_token(parts.html) == token
        tech_moved, _ = imip(smtp.inbox.to(tech_email)[-1], "REQUEST")
        assert tech_moved.uid == first.uid and tech_moved.sequence == second.sequence

        with domain(database) as ctx:
            appointments.cancel(ctx, appointments.get_appointment(ctx.session, held_id), "no longer needed")
        post.drain()
        cancelled = smtp.inbox.to(customer_email)[-1]
        assert cancelled["Subject"] == "Your compressor service visit on Wed 5 Mar, 08:00–12:00 is cancelled"
        third, parts = imip(cancelled, "CANCEL")
        assert third.uid == first.uid and third.sequence > second.sequence
        assert third.status == "CANCELLED"
        tech_cancel, _ = imip(smtp.inbox.to(tech_email)[-1], "CANCEL")
        assert (tech_cancel.uid, tech_cancel.sequence, tech_cancel.status) == (first.uid, third.sequence,
                                                                               "CANCELLED")
        assert len(smtp.inbox.to(customer_email)) == 3 and len(smtp.inbox.to(tech_email)) == 3
        message_ids = {m["Message-ID"] for m in smtp.inbox.to(customer_email) + smtp.inbox.to(tech_email)}
        assert len(message_ids) == 6
        assert all(row.status == SENT for row in email_rows(database, held_id))


def test_dispatcher_reassign_technician_decline_and_status(database: Database, tmp_path: Path) -> None:
    with smtp_server() as smtp:
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url))
        start = VISIT + dt.timedelta(days=10)
        with domain(database) as ctx:
            anna, ben = add_technician(ctx, "Anna"), add_technician(ctx, "Ben", "America/New_York")
            customer = add_customer(ctx, "Bayside Brewery", timezone="America/New_York")
            visit = book(ctx, customer, anna, start)
            visit_id = visit.id
            addresses = {"anna": anna.email, "ben": ben.email, "customer": customer.email}
            ben_login = ben.login
        post.drain()
        (booked,) = smtp.inbox.to(addresses["customer"])
        # 07:00 UTC is 03:00 in New York (EDT since 9 Mar)
        assert booked["Subject"] == "Your compressor service visit is confirmed for Fri 14 Mar, 03:00–05:00"
        original, _ = imip(booked, "REQUEST")

        with domain(database) as ctx:  # the dispatcher's desk hands it to Ben
            appointments.reassign(ctx, appointments.get_appointment(ctx.session, visit_id),
                                  ctx.session.get(type(anna), ben.id))
        post.drain()
        removed, _ = imip(smtp.inbox.to(addresses["anna"])[-1], "CANCEL")
        assert removed.uid == original.uid and removed.sequence > original.sequence
        assert removed.status is None  # uninvited: the visit itself goes on (RFC 5546 3.2.5)
        assert removed.attendees == [f"mailto:{addresses['anna']}"]
        assert smtp.inbox.to(addresses["anna"])[-1]["Subject"].startswith("Job removed from your schedule")
        given, _ = imip(smtp.inbox.to(addresses["ben"])[-1], "REQUEST")
        assert given.sequence == removed.sequence and given.attendees == [f"mailto:{addresses['ben']}"]
        update, parts = imip(smtp.inbox.to(addresses["customer"])[-1], "REQUEST")
        assert update.sequence == removed.sequence and "Ben" in parts.text

        ben_actor = Actor(ben_login, "caldav", "technician")
        with domain(database, ben_actor) as ctx:  # Ben accepts: nobody is mailed
            appointments.accept(ctx, appointments.get_appointment(ctx.session, visit_id))
        with domain(database, ben_actor) as ctx:  # on the way: the customer hears of it
            appointments.set_status(ctx, appointments.get_appointment(ctx.session, visit_id),
                                    JobStatus.EN_ROUTE)
        post.drain()
        assert len(smtp.inbox.to(addresses["ben"])) == 1
        on_the_way = smtp.inbox.to(addresses["customer"])[-1]
        assert on_the_way["Subject"].startswith("Your technician Ben is on the way")
        imip(on_the_way, "REQUEST")

        with domain(database, ben_actor) as ctx:  # Ben declines after all
            appointments.decline(ctx, appointments.get_appointment(ctx.session, visit_id))
        post.drain()
        declined, _ = imip(smtp.inbox.to(addresses["ben"])[-1], "CANCEL")
        assert declined.attendees == [f"mailto:{addresses['ben']}"] and declined.status is None
        assert len(smtp.inbox.to(addresses["customer"])) == 3  # no mail to the customer for it
        sequences = [imip(m, "REQUEST")[0].sequence for m in smtp.inbox.to(addresses["customer"])]
        assert sequences == sorted(set(sequences))  # each REQUEST newer than the one before


def test_user_text_is_escaped_in_html(database: Database, tmp_path: Path) -> None:
    hostile = '<script>alert("x")</script> & Sons'
    with smtp_server() as smtp:
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url))
        with domain(database) as ctx:
            technician = add_technician(ctx, "Eve")
            customer = add_customer(ctx, hostile)
            book(ctx, customer, technician, VISIT + dt.timedelta(days=20), title=f"Fix {hostile}")
            address, tech_address = customer.email, technician.email
        post.drain()
        (message,) = smtp.inbox.to(address)
        (for_technician,) = smtp.inbox.to(tech_address)
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Sons"
    for received in (message, for_technician):
        _invite, parts = imip(received, "REQUEST")
        assert "<script>" not in parts.html and escaped in parts.html
        assert hostile in parts.text
    assert hostile in for_technician["Subject"]  # a header is not HTML: the text as it is


def test_holds_expiry_and_missing_address_send_nothing(database: Database, tmp_path: Path) -> None:
    with smtp_server() as smtp:
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url))
        with domain(database) as ctx:
            technician = add_technician(ctx, "Hal")
            customer = add_customer(ctx, "Walk-in Customer", email="")
            hold_customer = add_customer(ctx, "Hesitant Customer")
            hold = book(ctx, hold_customer, technician, VISIT + dt.timedelta(days=30),
                        status="tentative", hold_minutes=15)
            no_address = book(ctx, customer, technician, VISIT + dt.timedelta(days=31))
            hold_id, tech_email, hold_email = hold.id, technician.email, hold_customer.email
        with database.write() as session:  # the hold runs out
            session.get(Appointment, hold_id).hold_expires_at = dt.datetime.now(dt.UTC)  # type: ignore[union-attr]
        with domain(database) as ctx:
            assert release_expired_holds(ctx) >= 1
        post.drain()
        assert smtp.inbox.to(hold_email) == []
        (only,) = smtp.inbox.to(tech_email)  # the technician still hears of the walk-in's visit
        invite, _ = imip(only, "REQUEST")
        assert invite.uid == load(database, no_address.id).uid
        assert email_rows(database, no_address.id)[0].payload["to"] == tech_email
        changed = [r for r in outbox_rows(database, CHANGED) if r.payload["appointment_id"] == hold_id]
        assert {r.payload["action"] for r in changed} == {"appointment.book", "appointment.hold.expire"}
        assert all(r.status == SENT for r in changed) and email_rows(database, hold_id) == []


def test_stale_rows_and_retries_build_one_message(database: Database, tmp_path: Path) -> None:
    """Two moves before the worker runs: one REQUEST with the final time; a retry composes nothing new."""
    with smtp_server() as smtp:
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url))
        start = VISIT + dt.timedelta(days=40)
        with domain(database) as ctx:
            technician = add_technician(ctx, "Sam")
            customer = add_customer(ctx, "Quick Mover")
            visit = book(ctx, customer, technician, start)
            visit_id, address = visit.id, customer.email
        post.drain()
        for hours in (2, 4):
            with domain(database) as ctx:
                appointments.reschedule(ctx, appointments.get_appointment(ctx.session, visit_id),
                                        start + dt.timedelta(hours=hours),
                                        start + dt.timedelta(hours=hours + 2))
        changed = [r for r in outbox_rows(database, CHANGED) if r.payload["appointment_id"] == visit_id]
        for row in changed:  # handled twice, as after a crash between compose and bookkeeping
            post.notifier.on_changed(Delivery(row.id, row.kind, dict(row.payload), row.idempotency_key, 1))
        post.drain()
        messages = smtp.inbox.to(address)
        assert len(messages) == 2
        final, _ = imip(messages[-1], "REQUEST")
        assert final.dtstart == start + dt.timedelta(hours=4)
        assert final.sequence == load(database, visit_id).sequence
        rows = [r for r in email_rows(database, visit_id) if r.payload["to"] == address]
        assert len(rows) == 2 and all(r.status == SENT for r in rows)
        assert [m["Message-ID"] for m in messages] == [r.payload["message_id"] for r in rows]


def test_smtp_down_nothing_lost_then_delivered_once(database: Database, tmp_path: Path) -> None:
    with smtp_server() as smtp:
        clock = Clock()
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url), clock)
        smtp.stop()
        with domain(database) as ctx:
            technician = add_technician(ctx, "Otto")
            customer = add_customer(ctx, "Patient Customer")
            visit = book(ctx, customer, technician, VISIT + dt.timedelta(days=50))
            visit_id, address = visit.id, customer.email
        stats = post.drain()
        assert stats.retried >= 2 and stats.sent >= 1  # composed; both emails failed to go out
        rows = email_rows(database, visit_id)
        assert len(rows) == 2
        for row in rows:
            assert row.status == PENDING and row.attempts == 1
            assert "unreachable" in row.last_error and str(smtp.port) in row.last_error
            assert row.next_attempt_at > clock.now

        smtp.start()  # back, on the same port
        assert post.drain().processed == 0  # not due yet: backoff holds
        clock.advance(hours=1)
        assert post.drain().sent == 2
        assert len(smtp.inbox.to(address)) == 1
        imip(smtp.inbox.to(address)[0], "REQUEST")
        clock.advance(hours=5)
        assert post.drain().processed == 0
        assert len(smtp.inbox.to(address)) == 1
        assert all(r.status == SENT and r.attempts == 2 for r in email_rows(database, visit_id))


def test_without_smtp_email_waits_until_a_worker_can_send(database: Database, tmp_path: Path) -> None:
    settings = settings_for(database.url, tmp_path)
    post = post_office(database, settings)
    assert EMAIL not in post.worker.handlers
    with domain(database) as ctx:
        technician = add_technician(ctx, "Nora")
        customer = add_customer(ctx, "Offline Customer")
        visit = book(ctx, customer, technician, VISIT + dt.timedelta(days=60))
        visit_id, address = visit.id, customer.email
    post.drain()
    rows = email_rows(database, visit_id)
    assert len(rows) == 2 and all(r.status == PENDING and r.attempts == 0 for r in rows)
    with smtp_server() as smtp:
        later = post_office(database, settings_for(database.url, tmp_path, smtp.url))
        later.drain()
        assert len(smtp.inbox.to(address)) == 1
    assert all(r.status == SENT for r in email_rows(database, visit_id))


def test_refused_recipient_is_dead_lettered_with_the_reason(database: Database, tmp_path: Path) -> None:
    with smtp_server() as smtp:
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url))
        with domain(database) as ctx:
            technician = add_technician(ctx, "Rita")
            customer = add_customer(ctx, "Gone Away", email=f"nobody@{REFUSED_DOMAIN}")
            visit = book(ctx, customer, technician, VISIT + dt.timedelta(days=70))
            visit_id, tech_email = visit.id, technician.email
        post.drain()
        by_recipient = {r.payload["to"]: r for r in email_rows(database, visit_id)}
        refused = by_recipient[f"nobody@{REFUSED_DOMAIN}"]
        assert refused.status == DEAD and refused.attempts == 1
        assert "550" in refused.last_error and "mailbox unavailable" in refused.last_error
        assert by_recipient[tech_email].status == SENT and len(smtp.inbox.to(tech_email)) == 1


def test_fieldcal_worker_once_sends_over_smtp(database: Database, tmp_path: Path) -> None:
    with smtp_server() as smtp:
        with domain(database, DISPATCH) as ctx:
            technician = add_technician(ctx, "Cli")
            customer = add_customer(ctx, "Command Line Customer")
            book(ctx, customer, technician, VISIT + dt.timedelta(days=80))
            address = customer.email
        env = {**os.environ, "FIELDCAL_INSTANCE": str(tmp_path), "FIELDCAL_DATABASE_URL": database.url,
               "FIELDCAL_SECRET_KEYS": SECRET, "FIELDCAL_SMTP_URL": smtp.url,
               "FIELDCAL_BASE_URL": BASE_URL, "FIELDCAL_AUDIT_KEYS": AUDIT_KEY}
        result = subprocess.run([str(BIN / "fieldcal"), "worker", "--once"], env=env, text=True,
                                capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        (message,) = smtp.inbox.to(address)
        invite, parts = imip(message, "REQUEST")
        with database.read() as session:
            token = manage_token(parts.html)
            links.resolve(session, links.LinkSigner((SECRET,)), token, links.Purpose.MANAGE)
        assert invite.sequence == 0


def test_reassigned_then_cancelled_before_the_worker_runs(database: Database, tmp_path: Path) -> None:
    """Late rows render the visit as it is now: each technician gets one CANCEL naming them."""
    with smtp_server() as smtp:
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url))
        with domain(database) as ctx:
            first, second = add_technician(ctx, "Fay"), add_technician(ctx, "Gus")
            customer = add_customer(ctx, "Changing Plans")
            visit = book(ctx, customer, first, VISIT + dt.timedelta(days=90))
            visit_id = visit.id
            addresses = (first.email, second.email, customer.email)
        post.drain()
        with domain(database) as ctx:
            appointment = appointments.get_appointment(ctx.session, visit_id)
            appointments.reassign(ctx, appointment, second)
            appointments.cancel(ctx, appointment)
        post.drain()
        final_sequence = load(database, visit_id).sequence
        for address in addresses:
            cancel, _ = imip(smtp.inbox.to(address)[-1], "CANCEL")
            assert (cancel.status, cancel.sequence) == ("CANCELLED", final_sequence)
            assert cancel.attendees == [f"mailto:{address}"]
        assert [len(smtp.inbox.to(a)) for a in addresses] == [2, 1, 2]
