"""Acuity appointments taken in: the form signature (the contract's vector), the contract's own
inbound samples (scheduled, rescheduled, canceled) fetched and applied through the domain,
a move that keeps the technician, a move nobody can take kept with an alert, replays."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from integrationkit import add, remove_all
from mailkit import add_customer, book, domain, unique
from platformkit import Recorded, contract, fake_platform, json_answer
from sqlalchemy import select
from test_calendly import alerts, seed, tomorrow_at, visits_of

from plugins.platforms.acuity import Acuity
from server import directory
from server.app import create_app
from server.config import load_settings
from server.db import Database
from server.models import Appointment
from server.platforms import Config, Inbound, InvalidSignature

ACUITY = contract("acuity")
VECTOR = ACUITY["webhook_signature"]["test_vectors"][0]
SAMPLES = ACUITY["inbound_samples"]
KEY = "acuity-api-key"
BERLIN = ZoneInfo("Europe/Berlin")


def connector(secret: str) -> Acuity:
    return Acuity(Config(1, "acuity", {"user_id": "42"}, {"api_key": secret}))


def test_vector_is_accepted() -> None:
    request = Inbound("POST", "/hooks/acuity/1", VECTOR["headers"], VECTOR["body"].encode())
    connector(VECTOR["secret"]).verify(request, dt.datetime.now(dt.UTC))


@pytest.mark.parametrize("case", ["flipped byte", "wrong key", "unsigned"])
def test_vector_variants_are_refused(case: str) -> None:
    body, headers, secret = VECTOR["body"].encode(), dict(VECTOR["headers"]), VECTOR["secret"]
    if case == "flipped byte":
        body = body.replace(b"123456789", b"123456788")
    elif case == "wrong key":
        secret = "other"
    else:
        headers = {}
    with pytest.raises(InvalidSignature):
        connector(secret).verify(Inbound("POST", "/hooks/acuity/1", headers, body), dt.datetime.now(dt.UTC))


def signed(body: bytes, secret: str = KEY) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"x-acuity-signature": digest, "Content-Type": "application/x-www-form-urlencoded"}


class FakeAcuity:
    """Appointments by id, as `GET /api/v1/appointments/{id}` returns them."""

    def __init__(self) -> None:
        self.appointments: dict[str, dict[str, Any]] = {}

    def put(self, appointment_id: str, starts_at: dt.datetime, email: str, type_id: str = "5678",
            canceled: bool = False) -> None:
        self.appointments[appointment_id] = {
            "id": int(appointment_id), "firstName": "Greta", "lastName": "Sample", "email": email,
            "phone": "+49 30 7654321",
            "datetime": starts_at.astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M:%S%z"),
            "duration": "60", "type": "Compressor repair", "appointmentTypeID": int(type_id),
            "calendarID": 1234, "timezone": "Europe/Berlin", "location": "", "notes": "Side door",
            "canceled": canceled,
            "forms": [{"id": 1, "name": "Service", "values": [
                {"id": 1, "fieldID": 11, "name": "Service address", "value": "Hauptstraße 5\n10115 Berlin"},
                {"id": 2, "fieldID": 12, "name": "Compressor", "value": "Kaeser SK 22"}]}]}

    def __call__(self, recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        found = re.fullmatch(r"/api/v1/appointments/(\d+)", recorded.path)
        if recorded.method == "GET" and found and found[1] in self.appointments:
            return json_answer(200, self.appointments[found[1]])
        return json_answer(404, {"status_code": 404, "message": "not found", "error": "not_found"})


def check_requests(requests: list[Recorded]) -> None:
    """What the docs say: GET /api/v1/appointments/{id}, HTTP Basic with user id : API key."""
    expected = "Basic " + base64.b64encode(f"42:{KEY}".encode()).decode()
    for recorded in requests:
        assert recorded.method == "GET" and re.fullmatch(r"/api/v1/appointments/\d+", recorded.path)
        assert recorded.header("Authorization") == expected and recorded.body == b""


def test_scheduled_rescheduled_and_canceled_samples_follow_the_visit(
        platform_env: dict[str, str], platform_db: Database) -> None:
    remove_all(platform_env)
    login, slug = seed(platform_db, unique("a"))
    add(platform_env, "slack", "--set", "channel=C1", "--set", "base_url=http://127.0.0.1:9",
        "--secret", "bot_token=xoxb-1", "--secret", "signing_secret=s")
    fake = FakeAcuity()
    email = f"{unique('greta')}@example.test"
    first, later, blocked = tomorrow_at(9), tomorrow_at(11), tomorrow_at(15)
    fake.put("123456789", first, email)
    with fake_platform(fake) as platform:
        hook = add(platform_env, "acuity", "--set", f"base_url={platform.url}/api/v1", "--set", "user_id=42",
                   "--set", f"appointment_types=5678={slug}", "--secret", f"api_key={KEY}")
        client = create_app(settings=load_settings(platform_env)).test_client()

        def post(sample: str) -> int:
            body = SAMPLES[sample]["body"].encode()
            return client.post(f"/hooks/acuity/{hook}", data=body, headers=signed(body)).status_code

        assert (post("scheduled"), post("scheduled")) == (200, 200)  # a replay books nothing more
        [visit] = visits_of(platform_db, email)
        assert (visit.starts_at, visit.status) == (first, "confirmed")
        assert visit.ends_at == first + dt.timedelta(hours=1)

        fake.put("123456789", later, email)
        assert post("rescheduled") == 200
        [moved] = visits_of(platform_db, email)
        assert (moved.id, moved.starts_at, moved.technician_id) == (visit.id, later, visit.technician_id)

        with domain(platform_db) as ctx:  # someone else takes the technician at 15:00
            other = add_customer(ctx, "Other Customer")
            book(ctx, other, directory.find_user(ctx.session, login), blocked, hours=1)
        fake.put("123456789", blocked, email)
        before = len(alerts(platform_db))
        assert post("rescheduled") == 200
        [kept] = visits_of(platform_db, email)
        assert kept.starts_at == later  # never double-booked: kept, and dispatch told
        [said] = alerts(platform_db)[before:]
        assert f"visit #{visit.id} was moved on acuity but stays" in said

        assert (post("canceled"), post("canceled")) == (200, 200)
        [gone] = visits_of(platform_db, email)
        assert gone.status == "cancelled"
        check_requests(platform.requests)
        assert len(platform.requests) == 4  # scheduled twice, rescheduled twice; a cancel reads nothing
    with platform_db.read() as session:
        job = session.get(Appointment, gone.id)
        assert job is not None and job.job.source == "acuity" and "Kaeser SK 22" in job.job.problem
        assert job.job.site is not None and job.job.site.address == "Hauptstraße 5\n10115 Berlin"
        assert session.scalars(select(Appointment).where(Appointment.job_id == job.job_id)).all() == [job]


def test_unsigned_or_tampered_forms_change_nothing(platform_env: dict[str, str],
                                                   platform_db: Database) -> None:
    remove_all(platform_env)
    hook = add(platform_env, "acuity", "--set", "base_url=http://127.0.0.1:9/api/v1", "--set", "user_id=42",
               "--secret", f"api_key={KEY}")
    client = create_app(settings=load_settings(platform_env)).test_client()
    body = SAMPLES["scheduled"]["body"].encode()
    answers = [client.post(f"/hooks/acuity/{hook}", data=body),
               client.post(f"/hooks/acuity/{hook}", data=body + b"&x=1", headers=signed(body)),
               client.post(f"/hooks/acuity/{hook}", data=body, headers=signed(body, "other"))]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert client.post(f"/hooks/acuity/{hook}", data=body, headers=signed(body)).status_code == 503
    bad = b"action=scheduled&id=abc"
    assert client.post(f"/hooks/acuity/{hook}", data=bad, headers=signed(bad)).status_code == 400
