"""Reminders before visits: the worker's periodic scan, the outbox, a real SMTP server; both databases."""

from __future__ import annotations

import datetime as dt
import functools
import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailkit import (
    BASE_URL,
    Clock,
    add_customer,
    add_technician,
    book,
    domain,
    email_rows,
    mime_parts,
    outbox_rows,
    parse_calendar,
    post_office,
    settings_for,
    smtp_server,
)

from server.db import Database
from server.errors import ConfigError
from server.migrate import upgrade
from server.notify.reminders import KIND, parse_offsets, scan
from server.scheduling import appointments
from server.worker import SENT, Periodic

OFFSETS = parse_offsets("24h,2h")


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    upgrade(db)
    try:
        yield db
    finally:
        db.dispose()


def reminders_of(database: Database, *appointment_ids: int) -> list[tuple[int, str]]:
    return sorted((r.payload["appointment_id"], r.payload["offset"]) for r in outbox_rows(database, KIND)
                  if r.payload["appointment_id"] in appointment_ids)


def test_offsets_parse_and_fail_clearly() -> None:
    assert parse_offsets("24h,2h") == (dt.timedelta(hours=24), dt.timedelta(hours=2))
    assert parse_offsets(" 90m, 2d ,90m") == (dt.timedelta(days=2), dt.timedelta(minutes=90))
    assert parse_offsets("") == ()
    for bad in ("24", "2 weeks", "0h", "-2h"):
        with pytest.raises(ConfigError, match="FIELDCAL_REMINDERS"):
            parse_offsets(bad)


def test_reminders_go_out_once_per_horizon(database: Database, tmp_path: Path) -> None:
    with smtp_server() as smtp:
        clock = Clock()
        chore = Periodic("reminder scan", 0, functools.partial(scan, database, OFFSETS))
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url), clock,
                           periodic=(chore,))
        t0 = clock.now.replace(second=0, microsecond=0)
        with domain(database) as ctx:
            technician = add_technician(ctx, "Remy")
            other = add_technician(ctx, "Ola")
            customer = add_customer(ctx, "Reminded Customer")
            silent = add_customer(ctx, "No Address", email="")
            soon = book(ctx, customer, technician, t0 + dt.timedelta(hours=3), 1)
            tomorrow = book(ctx, customer, technician, t0 + dt.timedelta(hours=23), 1, window_hours=2)
            later = book(ctx, customer, technician, t0 + dt.timedelta(hours=30), 1)
            dropped = book(ctx, customer, other, t0 + dt.timedelta(hours=20), 1)
            appointments.cancel(ctx, dropped)
            held = book(ctx, customer, other, t0 + dt.timedelta(hours=22), 1, status="tentative",
                        hold_minutes=15)
            no_email = book(ctx, silent, other, t0 + dt.timedelta(hours=10), 1)
            ids = {"soon": soon.id, "tomorrow": tomorrow.id, "later": later.id}
            quiet = (dropped.id, held.id, no_email.id)
            address = customer.email
        post.drain()  # the confirmations (and a first scan at t0: every visit was booked inside
        confirmations = len(smtp.inbox.to(address))  # its current horizon, so no reminder yet)
        assert reminders_of(database, *ids.values(), *quiet) == []

        expected: list[tuple[int, str]] = []
        for hours, newly in ((1.5, (ids["soon"], "2h")), (6.5, (ids["later"], "24h")),
                             (21.5, (ids["tomorrow"], "2h")), (28.5, (ids["later"], "2h"))):
            clock.set(t0 + dt.timedelta(hours=hours))
            post.drain()
            expected.append(newly)
            assert reminders_of(database, *ids.values(), *quiet) == sorted(expected), f"at t0+{hours}h"
            assert len(smtp.inbox.to(address)) == confirmations + len(expected)
            post.drain()  # scanning again adds nothing
            assert scan(database, OFFSETS, clock.now) == 0
            assert len(smtp.inbox.to(address)) == confirmations + len(expected)
        clock.set(t0 + dt.timedelta(hours=31))
        post.drain()
        assert reminders_of(database, *ids.values(), *quiet) == sorted(expected)  # past visits: none
        assert all(r.status == SENT for r in outbox_rows(database, KIND)
                   if r.payload["appointment_id"] in ids.values())

        reminder = smtp.inbox.to(address)[confirmations + 2]  # the 2 h one of "tomorrow"
        assert reminder["Subject"] == "Reminder: your compressor service visit on " + _span(
            t0 + dt.timedelta(hours=23), t0 + dt.timedelta(hours=25))
        parts = mime_parts(reminder)
        assert parts.calendar_part is None  # no METHOD: a reminder is no invitation
        assert parts.attachment.get_filename() == "visit.ics"
        invite = parse_calendar(parts.attachment.get_content().decode("utf-8"))
        assert invite.method is None and invite.status == "CONFIRMED"
        assert invite.dtstart == t0 + dt.timedelta(hours=23)
        links = [html.unescape(u) for u in re.findall(r'href="([^"]+)"', parts.html)]
        assert links and links[0].startswith(f"{BASE_URL}/m/") and links[0] in parts.text


def _span(start: dt.datetime, end: dt.datetime) -> str:
    from server.notify.imip import span

    return span(start, end, "Europe/Berlin")


def test_moved_or_cancelled_visits_get_no_stale_reminder(database: Database, tmp_path: Path) -> None:
    with smtp_server() as smtp:
        clock = Clock()
        post = post_office(database, settings_for(database.url, tmp_path, smtp.url), clock)
        t1 = (clock.now + dt.timedelta(days=100)).replace(second=0, microsecond=0)
        with domain(database) as ctx:
            technician = add_technician(ctx, "Mo")
            customer = add_customer(ctx, "Mover")
            moving = book(ctx, customer, technician, t1 + dt.timedelta(hours=30), 1)
            going = book(ctx, customer, technician, t1 + dt.timedelta(hours=28), 1)
            moving_id, going_id, address = moving.id, going.id, customer.email
        post.drain()
        confirmations = len(smtp.inbox.to(address))

        clock.set(t1 + dt.timedelta(hours=6.5))
        assert scan(database, OFFSETS, clock.now) == 2
        with domain(database) as ctx:  # before the worker gets to them: one moves, one is cancelled
            appointments.reschedule(ctx, appointments.get_appointment(ctx.session, moving_id),
                                    t1 + dt.timedelta(hours=40), t1 + dt.timedelta(hours=41))
            appointments.cancel(ctx, appointments.get_appointment(ctx.session, going_id))
        post.drain()
        after_changes = smtp.inbox.to(address)[confirmations:]
        subjects = [m["Subject"] for m in after_changes]
        assert len(subjects) == 2 and "has moved" in subjects[0] and "is cancelled" in subjects[1]
        assert email_rows(database, going_id)[-1].payload["method"] == "CANCEL"
        assert scan(database, OFFSETS, clock.now) == 0  # the new time is 33.5 h away

        clock.set(t1 + dt.timedelta(hours=16.5))
        assert scan(database, OFFSETS, clock.now) == 1  # fresh reminder for the new time
        post.drain()
        last = smtp.inbox.to(address)[-1]
        assert last["Subject"].startswith("Reminder")
        invite = parse_calendar(mime_parts(last).attachment.get_content().decode("utf-8"))
        assert invite.dtstart == t1 + dt.timedelta(hours=40)
        keys = [r.idempotency_key for r in outbox_rows(database, KIND)
                if r.payload["appointment_id"] == moving_id]
        assert len(keys) == 2 and keys[0] != keys[1]
        assert all(r.status == SENT for r in outbox_rows(database, KIND)
                   if r.payload["appointment_id"] in (moving_id, going_id))
