"""A remote visit's video link (Zoom, Google Meet) in the customer's email, end to end: the
outbox worker pushes the visit to a fake platform on loopback and sends mail to an SMTP
server on loopback. The confirmation is composed before the platform made the meeting, so
one follow-up carries the link; later messages carry it themselves; a customer not yet told
(a self-booking hold) gets it in the confirmation; no link is ever sent twice."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest
from fake_google import FakeGoogle
from icalkit import prop_int
from integrationkit import BASE_URL, KEY, add
from mailkit import Clock, SmtpServer, add_customer, add_technician, book, domain, settings_for, smtp_server
from platformkit import FakePlatform, Recorded, fake_platform, json_answer
from sqlalchemy import select

from server import integrations, outbox, scheduling
from server.db import Database
from server.delivery import Deliverer
from server.integrations import VIDEO_LINK
from server.models import Appointment, OutboxMessage, ServiceType
from server.notify.handlers import Notifier
from server.scheduling import booking
from server.vault import Vault
from server.worker import RetryPolicy, Worker

ZOOM_JOIN = "https://zoom.us/j/85746065432?pwd=Zk9x"


def meetings(recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
    if recorded.method == "POST":
        return json_answer(201, {"id": 85746065432, "join_url": ZOOM_JOIN, **recorded.json()})
    return 204, {}, b""


@pytest.fixture()
def zoom() -> Iterator[FakePlatform]:
    with fake_platform(meetings) as platform:
        yield platform


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def run_worker(database: Database, smtp: SmtpServer, instance: Path, clock: Clock, cycles: int = 20) -> None:
    """One worker with the notifier's and the platforms' handlers, as `fieldcal worker` runs."""
    settings = settings_for(database.url, instance, smtp.url)
    notifier = Notifier.from_settings(settings, database)
    notifier.clock = clock
    deliverer = Deliverer(database, Vault((KEY,)), BASE_URL, "dispatch@cal.example.test", clock=clock)
    worker = Worker(database, handlers={**notifier.handlers(), **deliverer.handlers()}, clock=clock,
                    on_dead=deliverer.on_dead,
                    policy=RetryPolicy(base_delay_s=30, max_delay_s=600, max_attempts=3))
    for _ in range(cycles):
        if worker.run_once().processed == 0:
            return
    raise AssertionError("the outbox did not settle")


def remote_visit(database: Database, day: dt.datetime, *, hold: bool = False) -> tuple[int, str]:
    with domain(database) as ctx:
        service = ServiceType(slug=f"video-{day:%Y%m%d%H}", name="Video triage", duration_minutes=45,
                              remote=True)
        ctx.session.add(service)
        ctx.session.flush()
        customer = add_customer(ctx, "Remote Works", timezone="America/New_York")
        appointment = book(ctx, customer, add_technician(ctx, "Vic"), day,
                           hold_minutes=30 if hold else None,
                           status="tentative" if hold else "confirmed")
        appointment.service_type_id = service.id
        ctx.session.flush()
        return appointment.id, customer.email or ""


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def invitation(message: EmailMessage) -> icalendar.Event:
    [part] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    calendar = icalendar.Calendar.from_ical(part.get_content())
    assert str(calendar["method"]) == "REQUEST"
    [event] = calendar.walk("VEVENT")
    assert isinstance(event, icalendar.Event), type(event)
    return event


def test_the_link_follows_the_confirmation_once_and_rides_with_later_mail(
        platform_env: dict[str, str], platform_db: Database, zoom: FakePlatform, smtp: SmtpServer,
        tmp_path: Path) -> None:
    add(platform_env, "zoom", "--set", f"base_url={zoom.url}/v2", "--secret", "access_token=zat")
    day = dt.datetime(2031, 5, 12, 14, tzinfo=dt.UTC)
    appointment_id, email = remote_visit(platform_db, day)
    clock = Clock()
    run_worker(platform_db, smtp, tmp_path, clock)
    confirmation, follow_up = smtp.inbox.to(email)
    assert confirmation["Subject"].startswith("Your compressor service visit is confirmed")
    assert ZOOM_JOIN not in text_of(confirmation)  # composed before Zoom made the meeting
    assert follow_up["Subject"].startswith("Your video call link: compressor service visit")
    assert f"Join the video call:\n{ZOOM_JOIN}" in text_of(follow_up)
    html_part = follow_up.get_body(preferencelist=("html",))
    assert html_part is not None and f'href="{ZOOM_JOIN}"' in str(html_part.get_content())
    first, later = invitation(confirmation), invitation(follow_up)
    assert str(later["uid"]) == str(first["uid"])
    assert prop_int(later, "sequence") == prop_int(first, "sequence")
    assert str(later["conference"]) == ZOOM_JOIN and later["conference"].params["FEATURE"] == "VIDEO"
    assert ZOOM_JOIN in str(later["description"])
    with domain(platform_db) as ctx:  # the same link queued again (a redelivery): nothing new
        outbox.enqueue(ctx.session, VIDEO_LINK, {"appointment_id": appointment_id},
                       idempotency_key=f"{VIDEO_LINK}:{appointment_id}:again")
        scheduling.reschedule(ctx, scheduling.get_appointment(ctx.session, appointment_id),
                              day + dt.timedelta(hours=1), day + dt.timedelta(hours=3))
    run_worker(platform_db, smtp, tmp_path, clock)
    mails = smtp.inbox.to(email)
    assert len(mails) == 3 and mails[2]["Subject"].startswith("Your compressor service visit has moved")
    assert ZOOM_JOIN in text_of(mails[2]) and str(invitation(mails[2])["conference"]) == ZOOM_JOIN
    assert [r.method for r in zoom.requests] == ["POST", "PATCH"]  # the meeting moved, same link
    with domain(platform_db) as ctx:
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, appointment_id))
    run_worker(platform_db, smtp, tmp_path, clock)
    cancelled = smtp.inbox.to(email)[3]
    assert "cancelled" in cancelled["Subject"] and ZOOM_JOIN not in text_of(cancelled)
    assert len(smtp.inbox.to(email)) == 4


def test_a_hold_confirmed_after_the_meeting_exists_carries_the_link_in_the_confirmation(
        platform_env: dict[str, str], platform_db: Database, zoom: FakePlatform, smtp: SmtpServer,
        tmp_path: Path) -> None:
    add(platform_env, "zoom", "--set", f"base_url={zoom.url}/v2", "--secret", "access_token=zat")
    day = dt.datetime(2031, 6, 2, 15, tzinfo=dt.UTC)
    appointment_id, email = remote_visit(platform_db, day, hold=True)
    clock = Clock()
    run_worker(platform_db, smtp, tmp_path, clock)  # the hold is pushed; the customer hears nothing
    assert smtp.inbox.to(email) == []
    with platform_db.read() as session:
        assert integrations.join_url(session, appointment_id) == ZOOM_JOIN
        [row] = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == VIDEO_LINK,
                                OutboxMessage.idempotency_key.like(f"{VIDEO_LINK}:{appointment_id}:%")))
        assert row.status == "sent"  # handled: nobody to tell yet
    with domain(platform_db) as ctx:
        appointment = ctx.session.get(Appointment, appointment_id)
        assert appointment is not None
        booking.confirm(ctx, appointment)
    run_worker(platform_db, smtp, tmp_path, clock)
    [confirmation] = smtp.inbox.to(email)
    assert confirmation["Subject"].startswith("Your compressor service visit is confirmed")
    assert f"Join the video call:\n{ZOOM_JOIN}" in text_of(confirmation)
    assert str(invitation(confirmation)["conference"]) == ZOOM_JOIN


def test_a_google_meet_link_reaches_the_customer(
        platform_env: dict[str, str], platform_db: Database, smtp: SmtpServer, tmp_path: Path) -> None:
    google = FakeGoogle()
    with fake_platform(google) as platform:
        add(platform_env, "google-calendar", "--set", f"base_url={platform.url}",
            "--set", "meet=true", "--secret", f"access_token={google.access_token}")
        day = dt.datetime(2031, 7, 7, 9, tzinfo=dt.UTC)
        appointment_id, email = remote_visit(platform_db, day)
        run_worker(platform_db, smtp, tmp_path, Clock())
    with platform_db.read() as session:
        link = integrations.join_url(session, appointment_id)
    assert link.startswith("https://meet.google.com/")
    confirmation, follow_up = smtp.inbox.to(email)
    assert link not in text_of(confirmation) and link in text_of(follow_up)
    assert str(invitation(follow_up)["conference"]) == link
