"""Calendly bookings taken in: the signature (the contract's test vector), the route, and the
booking made through the domain: customer by email, site from the booking form, service type
from the event type, a free qualified technician, the tray and an alert when nobody is free,
each event applied once, and a cancel that cancels the visit."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bookkit import EVERY_DAY, technician
from integrationkit import add, drain, remove_all, worker
from mailkit import Clock, add_customer, add_technician, book, domain, unique
from platformkit import Recorded, contract, fake_platform, json_answer, openapi_document, validate_openapi
from seeding import must_get
from sqlalchemy import select

from plugins.platforms.calendly import Calendly
from server.app import create_app
from server.config import load_settings
from server.db import Database
from server.errors import InvalidInput
from server.models import Appointment, AuditEntry, Customer, InboundRef, Job, OutboxMessage
from server.platforms import Config, Inbound, InvalidSignature
from server.scheduling import capacity
from server.scheduling.areas import add_service_area

CALENDLY = contract("calendly")
VECTOR = CALENDLY["webhook_signature"]["test_vectors"][0]
SECRET = "calendly-hook-key"
BERLIN = ZoneInfo("Europe/Berlin")


def at(stamp: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(stamp), dt.UTC)


def connector(secret: str) -> Calendly:
    return Calendly(Config(1, "calendly", {}, {"signing_key": secret}))


def test_vector_is_accepted_at_its_own_time() -> None:
    connector(VECTOR["secret"]).verify(
        Inbound("POST", "/hooks/calendly/1", VECTOR["headers"], VECTOR["body"].encode()),
        at(VECTOR["timestamp"]))


@pytest.mark.parametrize("case", ["flipped byte", "wrong secret", "no header", "no v1", "stale", "future"])
def test_vector_variants_are_refused(case: str) -> None:
    body, headers, secret, now = VECTOR["body"].encode(), dict(VECTOR["headers"]), VECTOR["secret"], at(
        VECTOR["timestamp"])
    if case == "flipped byte":
        body = body[:20] + bytes([body[20] ^ 1]) + body[21:]
    elif case == "wrong secret":
        secret = "not-the-key"
    elif case == "no header":
        headers = {}
    elif case == "no v1":
        headers = {"Calendly-Webhook-Signature": f"t={VECTOR['timestamp']}"}
    elif case == "stale":
        now += dt.timedelta(seconds=181)
    else:
        now -= dt.timedelta(seconds=181)
    with pytest.raises(InvalidSignature):
        connector(secret).verify(Inbound("POST", "/hooks/calendly/1", headers, body), now)


def signed(body: bytes, stamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    stamp = int(time.time()) if stamp is None else stamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Calendly-Webhook-Signature": f"t={stamp},v1={digest}", "Content-Type": "application/json"}


def tomorrow_at(hour: int) -> dt.datetime:
    day = dt.datetime.now(BERLIN).date() + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=BERLIN).astimezone(dt.UTC)


class FakeCalendly:
    """Scheduled events by uuid; every request recorded and checked against the contract."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}

    def add(self, uuid: str, starts_at: dt.datetime, event_type: str, location: str = "") -> None:
        self.events[uuid] = {
            "uri": f"https://api.calendly.com/scheduled_events/{uuid}", "name": "Compressor repair",
            "status": "active", "start_time": starts_at.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "end_time": (starts_at + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "event_type": f"https://api.calendly.com/event_types/{event_type}",
            "location": {"type": "physical", "location": location} if location else None,
            "invitees_counter": {"total": 1, "active": 1, "limit": 1},
            "created_at": "2026-11-30T10:00:00.000000Z", "updated_at": "2026-11-30T10:00:00.000000Z",
            "event_memberships": [{"user": "https://api.calendly.com/users/AAAAAAAAAAAAAAAA"}],
            "event_guests": []}

    def __call__(self, recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        uuid = recorded.path.rsplit("/", 1)[-1]
        if recorded.method == "GET" and uuid in self.events:
            return json_answer(200, {"resource": self.events[uuid]})
        return json_answer(404, {"title": "Resource Not Found", "message": "no such event"})


def invitee(event: str, uuid: str, email: str, answers: list[tuple[str, str]] | None = None,
            invitee_id: str = "INV1") -> bytes:
    payload: dict[str, Any] = {
        "uri": f"https://api.calendly.com/scheduled_events/{uuid}/invitees/{invitee_id}",
        "event": f"https://api.calendly.com/scheduled_events/{uuid}", "email": email, "name": "Greta Sample",
        "status": "canceled" if event == "invitee.canceled" else "active", "timezone": "Europe/Berlin",
        "text_reminder_number": "+49 30 1234567", "rescheduled": False,
        "questions_and_answers": [{"question": q, "answer": a, "position": i}
                                  for i, (q, a) in enumerate(answers or [])]}
    if event == "invitee.canceled":
        payload["cancellation"] = {"canceled_by": "Greta Sample", "reason": "found another date",
                                   "canceler_type": "invitee"}
    return json.dumps({"event": event, "created_at": "2026-11-30T10:00:00.000000Z",
                       "created_by": "https://api.calendly.com/users/AAAAAAAAAAAAAAAA",
                       "payload": payload}).encode()


def seed(platform_db: Database, prefix: str) -> tuple[str, str]:
    """One technician (Berlin, every day) with a skill, serving postcodes 10xxx; a service."""
    with domain(platform_db) as ctx:
        tech = technician(ctx, unique(f"{prefix}t"), "Tessa Tech", "Europe/Berlin", [f"{prefix}skill"],
                          EVERY_DAY)
        add_service_area(ctx, technician=tech, country="DE", postcode_prefix="10")
        capacity.add_service_type(ctx, f"{prefix}repair", "Compressor repair", duration_minutes=60,
                                  skills=[f"{prefix}skill"], min_notice_minutes=60, horizon_days=28)
        return tech.login, f"{prefix}repair"


def visits_of(platform_db: Database, email: str) -> list[Appointment]:
    with platform_db.read() as session:
        return list(session.scalars(select(Appointment).join(Job).join(Customer)
                                    .where(Customer.email == email).order_by(Appointment.id)))


def jobs_of(platform_db: Database, email: str) -> list[Job]:
    with platform_db.read() as session:
        return list(session.scalars(select(Job).join(Customer).where(Customer.email == email)))


def alerts(platform_db: Database) -> list[str]:
    with platform_db.read() as session:
        return [str(m.payload["text"]) for m in session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "platform.alert").order_by(OutboxMessage.id))]


def test_a_calendly_booking_becomes_a_visit_once_and_its_cancel_cancels_it(
        platform_env: dict[str, str], platform_db: Database) -> None:
    remove_all(platform_env)
    login, slug = seed(platform_db, unique("c"))
    fake = FakeCalendly()
    starts_at = tomorrow_at(10)
    fake.add("EVT1", starts_at, "TYPEREPAIR")
    email = f"{unique('greta')}@example.test"
    with fake_platform(fake) as platform:
        hook = add(platform_env, "calendly", "--set", f"base_url={platform.url}",
                   "--set", f"event_types=https://api.calendly.com/event_types/TYPEREPAIR={slug}",
                   "--secret", f"signing_key={SECRET}", "--secret", "access_token=pat-1")
        client = create_app(settings=load_settings(platform_env)).test_client()
        body = invitee("invitee.created", "EVT1", email,
                       [("Service address", "Hauptstraße 5\n10115 Berlin"),
                        ("What is wrong?", "It leaks oil")])
        first = client.post(f"/hooks/calendly/{hook}", data=body, headers=signed(body))
        again = client.post(f"/hooks/calendly/{hook}", data=body, headers=signed(body))
        assert (first.status_code, again.status_code) == (200, 200), first.data
        document = openapi_document(CALENDLY["fragment"], platform.url)
        checked = {validate_openapi(document, r, platform.url) for r in platform.requests}
        assert checked == {"GET /scheduled_events/EVT1"}
        assert all(r.header("Authorization") == "Bearer pat-1" for r in platform.requests)

    [visit] = visits_of(platform_db, email)
    with platform_db.read() as session:
        visit = must_get(session, Appointment, visit.id)
        assert visit is not None and visit.technician is not None
        assert (visit.technician.login, visit.starts_at, visit.status) == (login, starts_at, "confirmed")
        assert visit.ends_at == starts_at + dt.timedelta(hours=1)
        assert visit.service_type is not None and visit.service_type.slug == slug
        job = visit.job
        assert job.source == "calendly"
        assert job.site is not None and job.site.address == "Hauptstraße 5\n10115 Berlin"
        assert "It leaks oil" in job.problem and job.customer.phone == "+49 30 1234567"
        book_entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "appointment.book",
                                                              AuditEntry.entity_id == str(visit.id))).one()
        assert (book_entry.actor, book_entry.channel) == (f"integration:{hook}", "platform")
    assert len(jobs_of(platform_db, email)) == 1  # the second delivery changed nothing

    cancel = invitee("invitee.canceled", "EVT1", email)
    with fake_platform(fake) as platform:
        assert client.post(f"/hooks/calendly/{hook}", data=cancel, headers=signed(cancel)).status_code == 200
        assert client.post(f"/hooks/calendly/{hook}", data=cancel, headers=signed(cancel)).status_code == 200
        assert platform.requests == []  # a cancel needs nothing from Calendly
    [visit] = visits_of(platform_db, email)
    assert visit.status == "cancelled"
    with platform_db.read() as session:
        ref = session.scalars(select(InboundRef).where(InboundRef.integration_id == hook)).one()
        assert ref.state == "cancelled"
        cancels = session.scalars(select(AuditEntry).where(AuditEntry.action == "appointment.cancel",
                                                           AuditEntry.entity_id == str(visit.id))).all()
        assert len(cancels) == 1


def test_conflicts_land_in_the_tray_and_dispatch_is_alerted(
        platform_env: dict[str, str], platform_db: Database) -> None:
    remove_all(platform_env)
    _login, slug = seed(platform_db, unique("k"))
    add(platform_env, "slack", "--set", "channel=C1", "--set", "base_url=http://127.0.0.1:9",
        "--secret", "bot_token=xoxb-1", "--secret", "signing_secret=s")
    fake = FakeCalendly()
    starts_at = tomorrow_at(14)
    for uuid in ("A", "B", "C", "D"):
        fake.add(uuid, starts_at, "TYPEREPAIR")
    fake.add("E", starts_at + dt.timedelta(hours=3), "UNMAPPED")
    before = len(alerts(platform_db))
    emails = {uuid: f"{unique(uuid.lower())}@example.test" for uuid in "ABCDE"}
    answers = {"A": "Hauptstraße 5\n10115 Berlin", "B": "Hauptstraße 9\n10115 Berlin",
               "C": "Rue de Rivoli 1\n75001 Paris", "D": "", "E": "Hauptstraße 7\n10115 Berlin"}
    with fake_platform(fake) as platform:
        hook = add(platform_env, "calendly", "--set", f"base_url={platform.url}",
                   "--set", f"event_types=TYPEREPAIR={slug}", "--secret", f"signing_key={SECRET}",
                   "--secret", "access_token=pat-1")
        client = create_app(settings=load_settings(platform_env)).test_client()
        for uuid in "ABCDE":
            body = invitee("invitee.created", uuid, emails[uuid],
                           [("Address", answers[uuid])] if answers[uuid] else [])
            assert client.post(f"/hooks/calendly/{hook}", data=body, headers=signed(body)).status_code == 200

    [booked] = visits_of(platform_db, emails["A"])
    assert booked.status == "confirmed"
    for uuid in "BCDE":  # taken, outside every area, no address, no service mapped
        [job] = jobs_of(platform_db, emails[uuid])
        assert job.status == "new" and visits_of(platform_db, emails[uuid]) == []
    said = alerts(platform_db)[before:]
    assert len(said) == 4 and all("in the tray" in text for text in said)
    assert "is free" in said[0] and "is free" in said[1]
    assert "no service address" in said[2] and "no service type is mapped" in said[3]

    cancel = invitee("invitee.canceled", "B", emails["B"])
    assert client.post(f"/hooks/calendly/{hook}", data=cancel, headers=signed(cancel)).status_code == 200
    [job] = jobs_of(platform_db, emails["B"])
    assert job.status == "cancelled"


def test_unsigned_stale_or_tampered_requests_change_nothing(
        platform_env: dict[str, str], platform_db: Database) -> None:
    remove_all(platform_env)
    email = f"{unique('eve')}@example.test"
    hook = add(platform_env, "calendly", "--set", "base_url=http://127.0.0.1:9",
               "--secret", f"signing_key={SECRET}", "--secret", "access_token=pat-1")
    client = create_app(settings=load_settings(platform_env)).test_client()
    body = invitee("invitee.created", "X", email)
    refused = [
        client.post(f"/hooks/calendly/{hook}", data=body),
        client.post(f"/hooks/calendly/{hook}", data=body, headers=signed(body, int(time.time()) - 600)),
        client.post(f"/hooks/calendly/{hook}", data=body + b" ", headers=signed(body)),
        client.post(f"/hooks/calendly/{hook}", data=body, headers=signed(body, secret="other")),
    ]
    assert [r.status_code for r in refused] == [401, 401, 401, 401]
    assert jobs_of(platform_db, email) == []
    # signed, but Calendly cannot be reached to read the event: it is asked to retry
    unreachable = client.post(f"/hooks/calendly/{hook}", data=body, headers=signed(body))
    assert unreachable.status_code == 503 and jobs_of(platform_db, email) == []


def test_a_calendly_integration_is_never_sent_our_visits(platform_env: dict[str, str],
                                                         platform_db: Database) -> None:
    remove_all(platform_env)
    hook = add(platform_env, "calendly", "--set", "base_url=http://127.0.0.1:9", "--secret", "signing_key=k")
    with domain(platform_db) as ctx:
        customer = add_customer(ctx, "Druckluft AG")
        book(ctx, customer, add_technician(ctx, "Pia"), tomorrow_at(16), hours=1)
    drain(worker(platform_db, Clock()))
    with platform_db.read() as session:
        fanned = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "platform.fanout",
                                                             OutboxMessage.status == "sent")).all()
        pushed = session.scalars(select(OutboxMessage).where(
            OutboxMessage.idempotency_key.like(f"push:{hook}:%"))).all()
    assert fanned and pushed == []
    with pytest.raises(InvalidInput, match="event_types"):
        Calendly.validate_settings({"event_types": "nonsense"}, {})
