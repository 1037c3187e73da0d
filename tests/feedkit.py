"""Seed data and strict checks for the feed and share-page tests."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field

import icalendar
from ical.calendar_stream import IcsCalendarStream

from server import calendars, directory, links, scheduling
from server.actors import SYSTEM
from server.context import Context
from server.db import Database
from server.migrate import upgrade
from server.models import Role, utcnow

ORGANIZER = "dispatch@example.test"
EVIL = "Evil\r\nEND:VEVENT\rBEGIN:VEVENT\nX-INJECT:1\x00\x07 <script>alert(1)</script> javascript:alert(2)"


def day(offset: int, hour: int = 9) -> dt.datetime:
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=offset, hours=hour)


@dataclass
class FeedSeed:
    tokens: dict[str, str] = field(default_factory=dict)
    link_ids: dict[str, int] = field(default_factory=dict)
    appointments: dict[str, int] = field(default_factory=dict)
    customers: dict[str, int] = field(default_factory=dict)


def seed_feeds(database: Database, signer: links.LinkSigner) -> FeedSeed:
    upgrade(database)
    seed = FeedSeed()
    with database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        alice = directory.add_user(ctx, "alice", name="Alice Berg", email="alice@example.test",
                                   role=Role.TECHNICIAN, timezone="Europe/Berlin")
        bob = directory.add_user(ctx, "bob", name="Bob Stone", email="bob@example.test",
                                 role=Role.TECHNICIAN, timezone="America/New_York")
        team = directory.add_team(ctx, "north", "North")
        directory.add_member(ctx, team, alice)
        acme = directory.add_customer(ctx, "ACME Compressed Air", email="ops@acme.test",
                                      timezone="America/New_York", address="1 Harbour Road, Portsmouth")
        evil = directory.add_customer(ctx, EVIL, email="evil@example.test",
                                      address=f"{EVIL} street")
        seed.customers = {"acme": acme.id, "evil": evil.id}
        acme_job = directory.add_job(ctx, acme, "Screw compressor overheats", problem="Trips at 90°C")
        evil_job = directory.add_job(ctx, evil, EVIL, problem=EVIL)
        plans = {
            "acme_soon": (acme_job, alice, 1),
            "acme_later": (acme_job, alice, 8),
            "acme_bob": (acme_job, bob, 2),
            "evil": (evil_job, alice, 3),
            "old": (acme_job, alice, -45),
            "far": (acme_job, alice, 170),
            "too_far": (acme_job, alice, 200),
        }
        for name, (job, tech, offset) in plans.items():
            starts = day(offset)
            appointment = scheduling.book(ctx, job, tech, starts, starts + dt.timedelta(hours=2),
                                          window=(starts, starts + dt.timedelta(hours=4)))
            seed.appointments[name] = appointment.id
        personal = calendars.require_collection(session, calendars.personal_path("alice"))
        calendars.put_item(ctx, personal, "dentist.ics", _event(
            "dentist-1", day(4, 14), "Dentist (private)", location="Secret Clinic", rrule="FREQ=WEEKLY"))
        subjects = {
            "tech": ("technician:alice", None),
            "team": ("team:north", None),
            "customer": (f"customer:{acme.id}", None),
            "evil": (f"customer:{evil.id}", None),
            "appointment": (f"appointment:{seed.appointments['acme_soon']}", None),
            "tech_fb": ("technician:alice", links.LinkAudience.FREEBUSY),
            "team_fb": ("team:north", links.LinkAudience.FREEBUSY),
        }
        for name, (subject_text, audience) in subjects.items():
            subject = links.parse_subject(session, subject_text)
            link = links.issue(ctx, links.Purpose.FEED, subject, audience=audience)
            seed.link_ids[name] = link.id
            seed.tokens[name] = signer.dumps(link)
    return seed


def _event(uid: str, start: dt.datetime, summary: str, *, location: str = "",
           rrule: str = "") -> str:
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", "BEGIN:VEVENT", f"UID:{uid}",
        "DTSTAMP:20260101T000000Z",
        f"DTSTART;TZID=Europe/Berlin:{start:%Y%m%dT%H%M%S}",
        f"DTEND;TZID=Europe/Berlin:{start + dt.timedelta(hours=1):%Y%m%dT%H%M%S}",
        f"SUMMARY:{summary}",
    ]
    if location:
        lines.append(f"LOCATION:{location}")
    if rrule:
        lines.append(f"RRULE:{rrule}")
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def strict_parse(body: bytes) -> icalendar.Calendar:
    """Both parsers must accept the feed, and its bytes must be well-formed iCalendar."""
    text = body.decode("utf-8")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", ""), "bare LF or CR in the feed"
    for line in text.split("\r\n"):
        assert len(line.encode("utf-8")) <= 75, f"line longer than 75 octets: {line!r}"
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", line), f"control character in {line!r}"
    IcsCalendarStream.calendar_from_ics(text)
    calendar = icalendar.Calendar.from_ical(text)
    tzids = set(re.findall(r";TZID=([^:;]+)", text))
    defined = {str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")}
    assert tzids <= defined, f"TZIDs without VTIMEZONE: {tzids - defined}"
    assert "METHOD:" not in text
    return calendar


def new_key() -> str:
    return secrets.token_urlsafe(32)
