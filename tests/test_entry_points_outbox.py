"""End to end from each entry point to the inbox: a CalDAV move, a booking confirm, a
manage-page cancel and a CLI move each write exactly one notification row, and the
worker (`fieldcal worker --once`, run twice) delivers exactly one email per recipient."""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from bookkit import BookingSeed, details, hidden, seed_booking, slot_values
from davkit import ICS, dav_request, get_item, moved
from live import AUDIT_KEY, HTTP_TIMEOUT_S, LiveServer
from mailkit import SmtpServer
from seeding import Seed, at
from sqlalchemy import func, select

from server.db import Database
from server.models import Appointment, Customer, Job, OutboxMessage

pytestmark = pytest.mark.slow

KEYS = secrets.token_urlsafe(32)
BIN = Path(sys.executable).parent
CHANGED = "appointment.changed"


@dataclass
class Line:
    server: LiveServer
    smtp: SmtpServer
    db: Database
    booking: BookingSeed

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCAL_")}
        env.update({"FIELDCAL_INSTANCE": str(self.server.instance),
                    "FIELDCAL_DATABASE_URL": self.server.database_url, "FIELDCAL_SECRET_KEYS": KEYS,
                    "FIELDCAL_SMTP_URL": self.smtp.url, "FIELDCAL_BASE_URL": self.server.base,
                    "FIELDCAL_AUDIT_KEYS": AUDIT_KEY, "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100"})
        return env

    def fieldcal(self, *args: str) -> str:
        done = subprocess.run([str(BIN / "fieldcal"), *args], env=self.env(), capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def last_row(self) -> int:
        with self.db.read() as session:
            return session.scalar(select(func.max(OutboxMessage.id))) or 0

    def rows_after(self, last: int) -> list[OutboxMessage]:
        with self.db.read() as session:
            return list(session.scalars(select(OutboxMessage).where(OutboxMessage.id > last)
                                        .order_by(OutboxMessage.id)))

    def customer_email(self, appointment_id: int) -> str:
        with self.db.read() as session:
            return session.scalars(select(Customer.email).join(Job, Job.customer_id == Customer.id)
                                   .join(Appointment, Appointment.job_id == Job.id)
                                   .where(Appointment.id == appointment_id)).one()


@pytest.fixture(scope="module")
def line(seed: Seed, db: Database, database_url: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    booking_seed = seed_booking(db, prefix="e2e-")
    smtp = SmtpServer()
    smtp.start()
    server = LiveServer(database_url, tmp_path_factory.mktemp("e2e"), {
        "FIELDCAL_SECRET_KEYS": KEYS, "FIELDCAL_SMTP_URL": smtp.url, "FIELDCAL_BOOKING_RATE": "100000"})
    try:
        server.start()
    except RuntimeError as exc:
        smtp.stop()
        pytest.fail(str(exc), pytrace=False)
    try:
        current = Line(server, smtp, db, booking_seed)
        current.fieldcal("worker", "--once")  # the seed's own mail goes out first
        yield current
    finally:
        server.stop()
        smtp.stop()


def one_notification_one_email(line: Line, before: int, appointment_id: int) -> None:
    """Exactly one notification row for the change; once the worker ran (twice), exactly one
    email to each recipient, the customer among them."""
    changes = [r for r in line.rows_after(before) if r.kind == CHANGED]
    assert len(changes) == 1, [(r.kind, r.payload.get("action")) for r in changes]
    assert changes[0].payload["appointment_id"] == appointment_id
    received = len(line.smtp.inbox.received)
    line.fieldcal("worker", "--once")
    line.fieldcal("worker", "--once")
    emails = [r for r in line.rows_after(before) if r.kind == "email"]
    recipients = [str(r.payload["to"]) for r in emails]
    assert emails and len(recipients) == len(set(recipients)), recipients
    assert all(r.payload.get("appointment_id") == appointment_id for r in emails)
    delivered = [rcpt for rcpt, _message, _raw in line.smtp.inbox.received[received:]]
    assert sorted(delivered) == sorted(recipients), "one email per row, none twice"
    assert line.customer_email(appointment_id) in delivered


def book_through_the_pages(line: Line) -> tuple[int, str]:
    """Details, picker, hold (measured apart), then the confirm: (appointment id, manage path)."""
    slug, base = line.booking.repair, line.server
    email = f"e2e-{secrets.token_hex(3)}@example.test"
    first = requests.post(base.url(f"/book/{slug}/details"), data=details(email), timeout=HTTP_TIMEOUT_S)
    monday = dt.date.fromisoformat(hidden(first.text, "week")) + dt.timedelta(days=7)
    picker = requests.post(base.url(f"/book/{slug}/slots"), timeout=HTTP_TIMEOUT_S,
                           data={"details": hidden(first.text, "details"), "week": monday.isoformat()})
    held = requests.post(base.url(f"/book/{slug}/hold"), allow_redirects=False, timeout=HTTP_TIMEOUT_S,
                         data={"details": hidden(first.text, "details"), "key": hidden(first.text, "key"),
                               "slot": slot_values(picker.text)[secrets.randbelow(20)]})
    assert held.status_code == 303, held.text[:300]
    hold_url = base.url(held.headers["Location"]) if held.headers["Location"].startswith("/") \
        else held.headers["Location"]
    hold_page = requests.get(hold_url, timeout=HTTP_TIMEOUT_S)
    line.fieldcal("worker", "--once")  # whatever the hold itself queued is settled first
    with line.db.read() as session:
        appointment_id = session.scalars(select(Appointment.id).join(Job).join(Customer)
                                         .where(Customer.email == email)).one()
    before = line.last_row()
    done = requests.post(hold_url + "/confirm", data={"csrf": hidden(hold_page.text, "csrf")},
                         timeout=HTTP_TIMEOUT_S)
    assert done.status_code == 200 and "Your visit is booked" in done.text
    one_notification_one_email(line, before, appointment_id)
    manage = re.search(r'href="[^"]*(/m/[^"]+)"', done.text)
    assert manage
    return appointment_id, manage.group(1)


def test_booking_confirm_then_manage_cancel(line: Line) -> None:
    appointment_id, manage_path = book_through_the_pages(line)
    page = requests.get(line.server.url(manage_path), timeout=HTTP_TIMEOUT_S)
    before = line.last_row()
    cancelled = requests.post(line.server.url(f"{manage_path}/cancel"),
                              data={"csrf": hidden(page.text, "csrf")}, allow_redirects=False,
                              timeout=HTTP_TIMEOUT_S)
    assert cancelled.status_code == 303, cancelled.text[:300]
    one_notification_one_email(line, before, appointment_id)


def test_caldav_move_by_the_technician(line: Line, seed: Seed) -> None:
    alice = seed.technicians["alice"]
    visit = seed.jobs["alice"][2]  # Filter change, Friday 08:00-10:00
    path = f"/dav/alice/jobs/{visit.href}"
    current = get_item(line.server, alice, path)
    before = line.last_row()
    response = dav_request(line.server, "PUT", path, alice.auth,
                           body=moved(current.text, at(4, 13), at(4, 15)),
                           headers={**ICS, "If-Match": current.headers["ETag"]})
    assert response.status_code in (201, 204), response.text
    one_notification_one_email(line, before, visit.appointment_id)


def test_cli_move_by_the_dispatcher(line: Line, seed: Seed) -> None:
    visit = seed.jobs["bob"][0]
    before = line.last_row()
    line.fieldcal("appointment", "move", str(visit.appointment_id), "--start",
                  (visit.starts_at + dt.timedelta(days=1)).isoformat())
    one_notification_one_email(line, before, visit.appointment_id)
