"""Email test kit: a real SMTP server on loopback (aiosmtpd), a clock, seeding, iMIP checks."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import icalendar
from aiosmtpd.controller import Controller
from ical.calendar_stream import IcsCalendarStream
from icalkit import prop_datetime, prop_int
from sqlalchemy import select

from server import directory
from server.actors import Actor
from server.config import Settings
from server.context import Context
from server.db import Database
from server.models import Appointment, AppointmentStatus, Customer, Job, OutboxMessage, Role, User
from server.notify.handlers import Notifier
from server.scheduling import appointments
from server.worker import RetryPolicy, Stats, Worker

REFUSED_DOMAIN = "refused.example.test"
BASE_URL = "https://fieldcal.example.test"
SECRET = "notify-tests-" + "k" * 40
DISPATCH = Actor(name="dispatch", channel="cli", role="dispatcher")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Inbox:
    """What the SMTP server accepted: (envelope recipient, parsed message, raw bytes)."""

    received: list[tuple[str, EmailMessage, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.endswith("@" + REFUSED_DOMAIN):
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.content)
        message = BytesParser(policy=policy.default).parsebytes(raw)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((rcpt, message, raw))
        return "250 2.0.0 accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for rcpt, m, _raw in self.received if rcpt.lower() == address.lower()]


class SmtpServer:
    """aiosmtpd on 127.0.0.1; stop() and start() again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=5"

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port,
                                      ready_timeout=10)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    @property
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)

    def set(self, moment: dt.datetime) -> None:
        self.offset = moment - dt.datetime.now(dt.UTC)


def settings_for(database_url: str, instance: Path, smtp_url: str = "") -> Settings:
    return Settings(instance_path=instance, database_url=database_url, secret_keys=(SECRET,),
                    base_url=BASE_URL, smtp_url=smtp_url, business_phone="+1 555 0100")


@dataclass
class Post:
    """A notifier and a worker on one database, sharing one clock."""

    database: Database
    settings: Settings
    clock: Clock
    notifier: Notifier
    worker: Worker

    def drain(self, max_cycles: int = 20) -> Stats:
        total = Stats()
        for _ in range(max_cycles):
            stats = self.worker.run_once()
            total.add(stats)
            if stats.processed == 0:
                return total
        raise AssertionError("the outbox did not settle")


def post_office(database: Database, settings: Settings, clock: Clock | None = None,
                **worker_options: Any) -> Post:
    clock = clock or Clock()
    notifier = Notifier.from_settings(settings, database)
    notifier.clock = clock
    worker = Worker(database, handlers=notifier.handlers(), clock=clock,
                    policy=RetryPolicy(base_delay_s=30, max_delay_s=600, max_attempts=5),
                    **worker_options)
    return Post(database, settings, clock, notifier, worker)


@contextmanager
def domain(database: Database, actor: Actor = DISPATCH, organizer: str = "") -> Iterator[Context]:
    with database.write() as session:
        yield Context(session, actor, organizer or "dispatch@fieldcal.example.test")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def add_technician(ctx: Context, first: str, timezone: str = "Europe/Berlin") -> User:
    login = unique(first.lower())
    return directory.add_user(ctx, login, name=f"{first} Tester", email=f"{login}@crew.example.test",
                              role=Role.TECHNICIAN, timezone=timezone)


def add_customer(ctx: Context, name: str, email: str | None = None,
                 timezone: str = "Europe/Berlin") -> Customer:
    address = email if email is not None else f"{unique('customer')}@example.test"
    return directory.add_customer(ctx, name, email=address, timezone=timezone,
                                  address="Hauptstraße 1\n10115 Berlin", compressor_make="Kaeser",
                                  compressor_model="SK 22")


def book(ctx: Context, customer: Customer, technician: User | None, starts_at: dt.datetime,
         hours: float = 2, *, title: str = "Annual service", status: str = AppointmentStatus.CONFIRMED,
         window_hours: float | None = None, hold_minutes: int | None = None) -> Appointment:
    job = directory.add_job(ctx, customer, title, problem="Pressure drops under load")
    ends_at = starts_at + dt.timedelta(hours=hours)
    window = (starts_at, starts_at + dt.timedelta(hours=window_hours)) if window_hours else None
    hold_until = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=hold_minutes)
                  if hold_minutes is not None else None)
    return appointments.book(ctx, job, technician, starts_at, ends_at,
                             status=AppointmentStatus(status), window=window, hold_until=hold_until,
                             booking_key=unique("key-") if hold_minutes is not None else None)


def email_rows(database: Database, appointment_id: int) -> list[OutboxMessage]:
    with database.read() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")
                               .order_by(OutboxMessage.id)).all()
        return [r for r in rows if r.payload.get("appointment_id") == appointment_id]


def outbox_rows(database: Database, kind: str) -> list[OutboxMessage]:
    with database.read() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)
                                    .order_by(OutboxMessage.id)))


def job_of(database: Database, appointment_id: int) -> Job:
    with database.read() as session:
        appointment = session.get(Appointment, appointment_id)
        assert appointment is not None
        return appointment.job


@dataclass(frozen=True)
class Invite:
    """The calendar part of one iMIP message, parsed strictly twice."""

    method: str | None
    uid: str
    sequence: int
    status: str | None
    dtstart: dt.datetime
    organizer: str | None
    attendees: list[str]
    url: str | None
    text: str


def parse_calendar(text: str) -> Invite:
    calendar = icalendar.Calendar.from_ical(text)
    strict = IcsCalendarStream.calendar_from_ics(text)  # raises on anything malformed
    events = [c for c in calendar.walk("VEVENT")]
    assert len(events) == 1 and len(strict.events) == 1
    event = events[0]
    assert str(strict.events[0].uid) == str(event["uid"])
    method = str(calendar["method"]) if "method" in calendar else None
    assert (strict.method or None) == method
    attendees = event.get("attendee", [])
    if not isinstance(attendees, list):
        attendees = [attendees]
    return Invite(
        method=method,
        uid=str(event["uid"]),
        sequence=prop_int(event, "sequence"),
        status=str(event["status"]) if "status" in event else None,
        dtstart=prop_datetime(event, "dtstart"),
        organizer=str(event["organizer"]) if "organizer" in event else None,
        attendees=[str(a) for a in attendees],
        url=str(event["url"]) if "url" in event else None,
        text=text,
    )


@dataclass(frozen=True)
class Parts:
    text: str
    html: str
    calendar_part: EmailMessage | None
    attachment: EmailMessage


def mime_parts(message: EmailMessage) -> Parts:
    """The tree must be exactly mixed > [alternative > [plain, html, (calendar)], attachment]."""
    assert message.get_content_type() == "multipart/mixed"
    top = list(message.iter_parts())
    assert [p.get_content_type() for p in top] == ["multipart/alternative", "application/ics"]
    alternative, attachment = top
    inner = list(alternative.iter_parts())
    kinds = [p.get_content_type() for p in inner]
    assert kinds[:2] == ["text/plain", "text/html"], kinds
    assert len(inner) in (2, 3)
    calendar_part = inner[2] if len(inner) == 3 else None
    if calendar_part is not None:
        assert kinds[2] == "text/calendar"
    assert attachment.get_content_disposition() == "attachment"
    return Parts(text=inner[0].get_content(), html=inner[1].get_content(),
                 calendar_part=calendar_part, attachment=attachment)  # type: ignore[arg-type]


def imip(message: EmailMessage, method: str) -> tuple[Invite, Parts]:
    """Check one iMIP message end to end and return its parsed calendar."""
    parts = mime_parts(message)
    assert parts.calendar_part is not None, "no text/calendar alternative"
    part = parts.calendar_part
    assert part.get_param("method") == method
    assert str(part.get_param("charset")).lower() == "utf-8"
    text = part.get_content()
    invite = parse_calendar(text)
    assert invite.method == method == part.get_param("method")
    assert parts.attachment.get_filename() == "invite.ics"
    attached = parts.attachment.get_content()
    attached_text = attached.decode("utf-8") if isinstance(attached, bytes) else attached
    assert attached_text == text
    return invite, parts
