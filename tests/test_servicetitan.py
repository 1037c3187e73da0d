"""ServiceTitan against a stateful fake on loopback: every request validated with openapi-core
against the contract's Job Planning and Dispatch fragments; a visit becomes a job with its
appointment in UTC (a US DST day), a move reschedules it, a new technician is unassigned and
assigned through dispatch, a cancel unassigns and tells dispatch to cancel by hand; the
client-credentials token is fetched once, fetched again after a 401, and a 429's Retry-After
is honoured; ServiceTitan sends no webhooks we could verify, so every inbound request is a 401."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from integrationkit import BASE_URL, add, drain, run, worker
from mailkit import Clock, add_customer, add_technician, book, domain
from platformkit import (
    Answer,
    FakePlatform,
    Recorded,
    contract,
    fake_platform,
    json_answer,
    openapi_document,
    validate_openapi,
)
from sqlalchemy import select
from test_integrations import pushes

from server import directory, scheduling
from server.app import create_app
from server.config import load_settings
from server.db import Database
from server.models import Appointment, JobStatus, OutboxMessage

ST = contract("servicetitan")
TENANT = "4711"
APP_KEY = "ak1.test-app-key"
GUID = "3f2b8c1e-5d4a-4b7e-9c2f-1a2b3c4d5e6f"
JOB_PATH = re.compile(rf"^/jpm/v2/tenant/{TENANT}/jobs$")
RESCHEDULE = re.compile(rf"^/jpm/v2/tenant/{TENANT}/appointments/(\d+)/reschedule$")
ASSIGN = re.compile(rf"^/dispatch/v2/tenant/{TENANT}/appointment-assignments/(assign|unassign)-technicians$")
DAY = dt.datetime(2031, 11, 2, 13, tzinfo=dt.UTC)  # New York leaves summer time that morning: 08:00 EST


@dataclass
class FakeServiceTitan:
    """Jobs and appointments as ServiceTitan keeps them, and its client-credentials token."""

    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    appointments: dict[int, dict[str, Any]] = field(default_factory=dict)
    token: str = ""
    tokens_issued: int = 0
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(9001))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Recorded) -> Answer:
        with self.lock:
            if request.path == "/connect/token":
                form = request.form()
                assert form == {
                    "grant_type": "client_credentials",
                    "client_id": "cid",
                    "client_secret": "csecret",
                }
                self.tokens_issued += 1
                self.token = f"st-token-{self.tokens_issued}"
                return json_answer(
                    200, {"access_token": self.token, "expires_in": 900, "token_type": "Bearer"}
                )
            if (
                request.header("Authorization") != f"Bearer {self.token}"
                or request.header("ST-App-Key") != APP_KEY
            ):
                return json_answer(
                    401,
                    {
                        "type": "unauthorized",
                        "title": "Unauthorized",
                        "status": 401,
                        "traceId": "t",
                        "errors": {},
                        "data": {},
                    },
                )
            body = request.json()
            if JOB_PATH.match(request.path):
                job_id, appointment_id = next(self.ids), next(self.ids)
                [appointment] = body["appointments"]
                self.jobs[job_id] = {**body, "id": job_id}
                self.appointments[appointment_id] = {
                    "jobId": job_id,
                    "start": appointment["start"],
                    "end": appointment["end"],
                    "technicianIds": list(appointment.get("technicianIds", [])),
                }
                return json_answer(
                    200,
                    {
                        "id": job_id,
                        "jobNumber": str(job_id),
                        "firstAppointmentId": appointment_id,
                        "lastAppointmentId": appointment_id,
                        "appointmentCount": 1,
                    },
                )
            moved = RESCHEDULE.match(request.path)
            if moved:
                self.appointments[int(moved[1])].update(start=body["start"], end=body["end"])
                return json_answer(200, {"id": int(moved[1]), **self.appointments[int(moved[1])]})
            assigned = ASSIGN.match(request.path)
            assert assigned, request.path
            technicians = self.appointments[body["jobAppointmentId"]]["technicianIds"]
            for technician in body["technicianIds"]:
                if assigned[1] == "assign":
                    technicians.append(technician)
                else:
                    technicians.remove(technician)
            return json_answer(200, {"id": body["jobAppointmentId"]})


@pytest.fixture()
def titan() -> Iterator[tuple[FakeServiceTitan, FakePlatform]]:
    state = FakeServiceTitan()
    with fake_platform(state) as platform:
        yield state, platform


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def checked(platform: FakePlatform) -> list[str]:
    """Every request but the token's, validated against the fragment its path belongs to."""
    jpm = openapi_document(ST["fragment"], f"{platform.url}/jpm/v2")
    dispatch = openapi_document(ST["dispatch"]["fragment"], f"{platform.url}/dispatch/v2")
    seen = []
    for recorded in platform.requests:
        if recorded.path == "/connect/token":
            continue
        document = dispatch if recorded.path.startswith("/dispatch/") else jpm
        seen.append(validate_openapi(document, recorded, platform.url).split(" ", 1)[1].rsplit("/", 1)[-1])
    return seen


def connect(env: dict[str, str], platform: FakePlatform, *extra: str) -> int:
    return add(
        env,
        "servicetitan",
        "--set",
        f"base_url={platform.url}",
        "--set",
        f"token_url={platform.url}/connect/token",
        "--set",
        f"tenant={TENANT}",
        "--set",
        "business_unit_id=11",
        "--set",
        "job_type_id=22",
        "--set",
        "campaign_id=33",
        "--set",
        "customer_id=501",
        "--set",
        "location_id=601",
        "--set",
        f"application_guid={GUID}",
        "--secret",
        f"app_key={APP_KEY}",
        "--secret",
        "client_id=cid",
        "--secret",
        "client_secret=csecret",
        *extra,
    )


def test_a_visit_becomes_a_job_that_follows_time_and_technician(
    platform_env: dict[str, str], platform_db: Database, titan: tuple[FakeServiceTitan, FakePlatform]
) -> None:
    state, platform = titan
    with domain(platform_db) as ctx:
        ada = add_technician(ctx, "Ada", "America/New_York")
        bo = add_technician(ctx, "Bo", "America/New_York")
        customer_id = add_customer(ctx, "Titan Air LLC").id
    integration_id = connect(
        platform_env,
        platform,
        "--set",
        f"customers={customer_id}=502/602",
        "--set",
        f"technicians={ada.login}=71,{bo.login}=72",
    )
    clock = Clock()
    work = worker(platform_db, clock)
    with domain(platform_db) as ctx:
        appointment = book(ctx, directory.find_customer(ctx.session, customer_id), ada, DAY)
        appointment_id, uid = appointment.id, appointment.uid
    drain(work)
    [job] = state.jobs.values()
    assert (
        job["customerId"],
        job["locationId"],
        job["businessUnitId"],
        job["jobTypeId"],
        job["campaignId"],
    ) == (502, 602, 11, 22, 33), "the mapped customer, not the default"
    assert job["appointments"] == [
        {"start": "2031-11-02T13:00:00Z", "end": "2031-11-02T15:00:00Z", "technicianIds": [71]}
    ], "UTC, whatever the technician's zone says"
    assert job["externalData"] == {
        "applicationGuid": GUID,
        "externalData": [{"key": "fieldcal_uid", "value": uid}],
    }
    assert "Titan Air LLC" in job["summary"] and job["priority"] == "Normal"
    [appointment_there] = state.appointments.values()

    with domain(platform_db) as ctx:
        scheduling.reschedule(
            ctx,
            scheduling.get_appointment(ctx.session, appointment_id),
            DAY + dt.timedelta(hours=3),
            DAY + dt.timedelta(hours=5),
            technician=bo,
        )
    drain(work)
    assert (appointment_there["start"], appointment_there["end"]) == (
        "2031-11-02T16:00:00Z",
        "2031-11-02T18:00:00Z",
    )
    assert appointment_there["technicianIds"] == [72]
    with domain(platform_db) as ctx:  # a status change: nothing ServiceTitan holds changes
        scheduling.set_status(
            ctx, scheduling.get_appointment(ctx.session, appointment_id), JobStatus.EN_ROUTE
        )
    drain(work)
    assert checked(platform) == ["jobs", "reschedule", "unassign-technicians", "assign-technicians"]

    with domain(platform_db) as ctx:
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, appointment_id))
    drain(work)
    assert appointment_there["technicianIds"] == [], "the technician is freed there"
    dead = [row for row in pushes(platform_db, integration_id) if row.status == "dead"]
    assert len(dead) == 1 and f"cancel job {job['id']} in ServiceTitan" in dead[0].last_error
    assert checked(platform)[-1] == "unassign-technicians" and state.tokens_issued == 1


def test_401_fetches_a_new_token_and_429_waits(
    platform_env: dict[str, str], platform_db: Database, titan: tuple[FakeServiceTitan, FakePlatform]
) -> None:
    state, platform = titan
    integration_id = connect(platform_env, platform)
    clock = Clock()
    work = worker(platform_db, clock)
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Cy", "America/Chicago")
        first = book(ctx, add_customer(ctx, "First Inc"), technician, DAY)
    drain(work)
    assert state.tokens_issued == 1 and len(state.jobs) == 1
    state.token = "revoked-elsewhere"  # ServiceTitan no longer takes the token we hold
    with domain(platform_db) as ctx:
        scheduling.reschedule(
            ctx,
            scheduling.get_appointment(ctx.session, first.id),
            DAY + dt.timedelta(days=1),
            DAY + dt.timedelta(days=1, hours=2),
        )
    drain(work)
    assert state.tokens_issued == 2, "refused once: one new token, then the push went through"
    assert [a["start"] for a in state.appointments.values()] == ["2031-11-03T13:00:00Z"]

    platform.script.append(
        json_answer(
            429,
            {
                "type": "throttled",
                "title": "Too many requests",
                "status": 429,
                "traceId": "t",
                "errors": {},
                "data": {},
            },
            {"Retry-After": "90"},
        )
    )
    with domain(platform_db) as ctx:
        book(ctx, add_customer(ctx, "Second Inc"), technician, DAY + dt.timedelta(hours=4))
    drain(work)
    waiting = [row for row in pushes(platform_db, integration_id) if row.status == "pending"]
    assert len(waiting) == 1 and waiting[0].attempts == 0, "a 429 is not counted toward dead-lettering"
    assert waiting[0].next_attempt_at >= clock.now + dt.timedelta(seconds=85)
    clock.advance(seconds=91)
    drain(work)
    assert len(state.jobs) == 2 and all(row.status == "sent" for row in pushes(platform_db, integration_id))
    checked(platform)


def test_an_unmapped_customer_is_refused_with_the_setting_to_add(
    platform_env: dict[str, str], platform_db: Database, titan: tuple[FakeServiceTitan, FakePlatform]
) -> None:
    state, platform = titan
    integration_id = add(
        platform_env,
        "servicetitan",
        "--set",
        f"base_url={platform.url}",
        "--set",
        f"token_url={platform.url}/connect/token",
        "--set",
        f"tenant={TENANT}",
        "--set",
        "business_unit_id=11",
        "--set",
        "job_type_id=22",
        "--set",
        "campaign_id=33",
        "--secret",
        f"app_key={APP_KEY}",
        "--secret",
        "client_id=cid",
        "--secret",
        "client_secret=csecret",
    )
    with domain(platform_db) as ctx:
        customer = add_customer(ctx, "Nobody Mapped Co")
        book(ctx, customer, add_technician(ctx, "Di"), DAY)
        customer_id = customer.id
    drain(worker(platform_db, Clock()))
    [row] = pushes(platform_db, integration_id)
    assert row.status == "dead" and f"add {customer_id}=CUSTOMER_ID/LOCATION_ID" in row.last_error
    assert state.jobs == {}
    said = run(
        platform_env,
        "integration",
        "add",
        "servicetitan",
        "--name",
        "bad",
        "--set",
        "tenant=acme",
        "--set",
        "business_unit_id=1",
        "--set",
        "job_type_id=1",
        "--set",
        "campaign_id=1",
        code=1,
    )
    assert "tenant must be ServiceTitan's numeric id" in said


def test_inbound_requests_are_refused_and_change_nothing(
    platform_env: dict[str, str], platform_db: Database, titan: tuple[FakeServiceTitan, FakePlatform]
) -> None:
    _state, platform = titan
    integration_id = connect(platform_env, platform)
    client = create_app(settings=load_settings(platform_env)).test_client()
    with platform_db.read() as session:
        before = session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1))
        visits = len(session.scalars(select(Appointment)).all())
    answer = client.post(
        f"/hooks/servicetitan/{integration_id}",
        data=json.dumps({"eventType": "JobUpdated"}),
        content_type="application/json",
        headers={"Origin": BASE_URL},
    )
    assert answer.status_code == 401 and b"does not send us webhooks" in answer.data
    with platform_db.read() as session:
        assert session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1)) == before
        assert len(session.scalars(select(Appointment)).all()) == visits
    assert platform.requests == []
    said = run(platform_env, "integration", "connect", str(integration_id), code=1)
    assert "needs no sign-in" in said
