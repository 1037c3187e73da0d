"""Jobber against a GraphQL fake on loopback that executes every document with graphql-core
against an SDL built from the contract's `schema_excerpt_transcribed` (plus the few read
fields transcribed below from the same source file): jobCreate on a DST night, the webhook
signature (the contract's vector; flipped, unsigned, wrong key → 401 and nothing changed),
a VISIT_UPDATE read back as a reschedule through the domain that is not pushed back, a move
the rules refuse, refreshed tokens after a 401 and a 429's Retry-After."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from graphql import build_schema, graphql_sync
from integrationkit import add, drain, worker
from mailkit import Clock, add_customer, add_technician, book, domain
from platformkit import Answer, FakePlatform, Recorded, contract, fake_platform, json_answer
from sqlalchemy import select
from test_integrations import pushes

from plugins.platforms.jobber import Jobber
from server import directory, scheduling
from server.app import create_app
from server.config import load_settings
from server.db import Database
from server.models import Appointment, AuditEntry, Integration, JobStatus
from server.platforms import Config, Inbound, InvalidSignature
from server.vault import Vault

JOBBER = contract("jobber")
EXCERPT = JOBBER["schema_excerpt_transcribed"]
VECTOR = JOBBER["webhook_signature"]["test_vectors"][0]
SECRET = VECTOR["secret"]
DAY = dt.datetime(2031, 10, 25, 22, 30, tzinfo=dt.UTC)  # 00:30 in Berlin on the night summer time ends

# Read from the contract's source file (api-evangelist/jobber graphql/jobber-introspection.json,
# commit 71f87237) with the same index, to type the read side the excerpt names but does not
# spell out: Query.visit (offset 3284000), Visit.id/startAt/endAt (4484000-4500000),
# VisitConnection.nodes (4500000). Job.id and MutationErrors.message follow the file's shape for
# every object (`id: EncodedId!`; QueryErrors at 3300000 has `message: String!`).
READ_SIDE = """
type Query { visit(id: EncodedId!): Visit }
type Visit { id: EncodedId! startAt: ISO8601DateTime endAt: ISO8601DateTime }
type VisitConnection { nodes: [Visit!]! }
type Job {
  id: EncodedId!
  visits(first: Int, after: String, filter: VisitFilterAttributes, sort: [VisitsSortInput!],
         timezone: Timezone): VisitConnection!
}
type MutationErrors { message: String! }
"""
INPUTS = (
    "JobCreateAttributes",
    "JobInvoicingAttributes",
    "TimeframeAttributes",
    "JobCreateLineItemAttributes",
)


def schema_sdl() -> str:
    """The excerpt as SDL. Types it names without transcribing (enums whose values it does not
    list, inputs we never send) become opaque scalars: they type-check only as present."""
    parts = [f"scalar {name}" for name in EXCERPT["scalars"]]
    used: set[str] = set()
    for name in INPUTS:
        fields = {key: kind.split(" (")[0] for key, kind in EXCERPT[name].items()}
        used |= {re.sub(r"[\[\]!]", "", kind) for kind in fields.values()}
        parts.append(f"input {name} {{\n" + "\n".join(f"  {k}: {v}" for k, v in fields.items()) + "\n}")
    payload = EXCERPT["JobCreatePayload"]
    parts.append(f"type JobCreatePayload {{ job: {payload['job']} userErrors: {payload['userErrors']} }}")
    mutation = EXCERPT["Mutation.jobCreate"]
    parts.append(f"type Mutation {{ jobCreate(input: {mutation['args']['input']}): {mutation['returns']} }}")
    parts.append(READ_SIDE)
    declared = set(EXCERPT["scalars"]) | set(INPUTS) | {"Int", "Float", "String", "Boolean", "ID"}
    used |= {"VisitFilterAttributes", "VisitsSortInput"}
    parts += [f"scalar {name}" for name in sorted(used - declared)]
    return "\n".join(parts)


SCHEMA = build_schema(schema_sdl())


def gid(kind: str, number: int) -> str:
    return base64.b64encode(f"gid://Jobber/{kind}/{number}".encode()).decode()


@dataclass
class FakeJobber:
    """Jobs and their visits; every document runs against SCHEMA, or the test fails."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    visits: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_token: str = "jat-1"
    refresh_token: str = "jrt-1"
    refreshes: int = 0
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Recorded) -> Answer:
        if request.path == "/api/oauth/token":
            form = request.form()
            assert form["grant_type"] == "refresh_token" and form["refresh_token"] == self.refresh_token
            with self.lock:
                self.refreshes += 1
                self.access_token, self.refresh_token = (
                    f"jat-{self.refreshes + 1}",
                    f"jrt-{self.refreshes + 1}",
                )
            return json_answer(200, {"access_token": self.access_token, "refresh_token": self.refresh_token})
        assert request.path == "/api/graphql" and request.method == "POST"
        assert request.header("Content-Type").startswith("application/json"), "form bodies are refused"
        if request.header("Authorization") != f"Bearer {self.access_token}":
            return json_answer(401, {"message": "Unauthorized"})
        body = request.json()
        with self.lock:
            result = graphql_sync(
                SCHEMA,
                body["query"],
                variable_values=body["variables"],
                root_value={"jobCreate": self.job_create, "visit": self.visit},
            )
        assert not result.errors, result.errors
        return json_answer(200, {"data": result.data})

    def job_create(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:
        number = next(self.numbers)
        # date only: no time yet
        visit: dict[str, Any] = {"id": gid("Visit", number), "startAt": None, "endAt": None}
        self.visits[visit["id"]] = visit
        job: dict[str, Any] = {"id": gid("Job", number), "input": input,
                               "visits": lambda *_a, **_k: {"nodes": [visit]}}
        self.jobs[job["id"]] = job
        return {"job": job, "userErrors": []}

    def visit(self, _info: Any, id: str) -> dict[str, Any] | None:
        return self.visits.get(id)

    def move(self, visit_id: str, start: dt.datetime, end: dt.datetime) -> None:
        with self.lock:
            self.visits[visit_id].update(
                startAt=start.isoformat().replace("+00:00", "Z"), endAt=end.isoformat().replace("+00:00", "Z")
            )


@pytest.fixture()
def jobber() -> Iterator[tuple[FakeJobber, FakePlatform]]:
    state = FakeJobber()
    with fake_platform(state) as platform:
        yield state, platform


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def connect(env: dict[str, str], platform: FakePlatform, *extra: str) -> int:
    return add(
        env,
        "jobber",
        "--set",
        f"base_url={platform.url}/api/graphql",
        "--set",
        f"token_url={platform.url}/api/oauth/token",
        "--set",
        "invoicing_type=FIXED_PRICE",
        "--set",
        "invoicing_schedule=ON_COMPLETION",
        "--set",
        "property_id=prop-default",
        "--secret",
        "client_id=jc",
        "--secret",
        f"client_secret={SECRET}",
        "--secret",
        "access_token=jat-1",
        "--secret",
        "refresh_token=jrt-1",
        *extra,
    )


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"X-Jobber-Hmac-SHA256": digest, "Content-Type": "application/json"}


def visit_of(database: Database, appointment_id: int) -> Appointment:
    with database.read() as session:
        found = session.get(Appointment, appointment_id)
        assert found is not None
        session.expunge(found)
        return found


def test_the_vector_is_accepted_and_its_variants_refused() -> None:
    connector = Jobber(Config(1, "jobber", {}, {"client_secret": SECRET}))
    body = VECTOR["body"].encode()
    connector.verify(Inbound("POST", "/hooks/jobber/1", VECTOR["headers"], body), dt.datetime.now(dt.UTC))
    flipped = body.replace(b"VISIT_UPDATE", b"VISIT_UPDATF")
    for headers, raw, secret in (
        (VECTOR["headers"], flipped, SECRET),
        ({}, body, SECRET),
        (VECTOR["headers"], body, "another-secret"),
    ):
        with pytest.raises(InvalidSignature):
            Jobber(Config(1, "jobber", {}, {"client_secret": secret})).verify(
                Inbound("POST", "/hooks/jobber/1", headers, raw), dt.datetime.now(dt.UTC)
            )


def test_a_visit_becomes_a_job_and_a_move_in_jobber_comes_back_through_the_rules(
    platform_env: dict[str, str], platform_db: Database, jobber: tuple[FakeJobber, FakePlatform]
) -> None:
    state, platform = jobber
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Jo", "Europe/Berlin")
        customer_id = add_customer(ctx, "Jobber Kunde GmbH").id
    integration_id = connect(platform_env, platform, "--set", f"properties={customer_id}=prop-77")
    clock = Clock()
    work = worker(platform_db, clock)
    with domain(platform_db) as ctx:
        appointment = book(ctx, directory.find_customer(ctx.session, customer_id), technician, DAY)
        appointment_id, uid = appointment.id, appointment.uid
        other_id = book(ctx, add_customer(ctx, "Someone Else"), technician, DAY + dt.timedelta(days=2)).id
    drain(work)
    first = next(job for job in state.jobs.values() if job["input"]["propertyId"] == "prop-77")
    sent = first["input"]
    assert sent["timeframe"] == {"startAt": "2031-10-26"}, "Berlin's date, not UTC's 25th"
    assert (
        sent["instructions"].startswith("2031-10-26 00:30–02:30 (Europe/Berlin)")
        and uid in sent["instructions"]
    )
    assert sent["invoicing"] == {"invoicingType": "FIXED_PRICE", "invoicingSchedule": "ON_COMPLETION"}
    assert sent["title"] == "Annual service — Jobber Kunde GmbH"
    visit_id = first["visits"]()["nodes"][0]["id"]
    assert visit_id == json.loads(VECTOR["body"])["data"]["webHookEvent"]["itemId"], (
        "the vector names our visit"
    )

    with domain(platform_db) as ctx:  # a status change: Jobber's visit has no time yet, nothing to say
        scheduling.set_status(
            ctx, scheduling.get_appointment(ctx.session, appointment_id), JobStatus.EN_ROUTE
        )
    drain(work)
    assert all(row.status == "sent" for row in pushes(platform_db, integration_id))

    client = create_app(settings=load_settings(platform_env)).test_client()
    hook = f"/hooks/jobber/{integration_id}"
    moved_to = dt.datetime(2031, 10, 27, 9, tzinfo=dt.UTC)
    state.move(visit_id, moved_to, moved_to + dt.timedelta(hours=2))
    body = VECTOR["body"].encode()
    reads = len(platform.requests)
    for tampered in (
        client.post(hook, data=body.replace(b"10:00:00Z", b"10:00:01Z"), headers=signed(body)),
        client.post(hook, data=body, headers={"Content-Type": "application/json"}),
        client.post(hook, data=body, headers=signed(body, "not-the-secret")),
    ):
        assert tampered.status_code == 401
    assert len(platform.requests) == reads and visit_of(platform_db, appointment_id).starts_at == DAY

    assert (
        client.post(
            hook, data=body, headers=VECTOR["headers"] | {"Content-Type": "application/json"}
        ).status_code
        == 200
    )
    assert visit_of(platform_db, appointment_id).starts_at == moved_to, "moved through the domain"
    before = len(pushes(platform_db, integration_id))
    drain(work)
    assert len(pushes(platform_db, integration_id)) == before, "a change from Jobber is not pushed back to it"
    with platform_db.read() as session:
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "appointment.reschedule", AuditEntry.entity_id == str(appointment_id)
            )
        ).all()[-1]
        assert entry.actor == f"integration:{integration_id}" and entry.channel == "platform"
    sequence = visit_of(platform_db, appointment_id).sequence
    assert (
        client.post(
            hook, data=body, headers=VECTOR["headers"] | {"Content-Type": "application/json"}
        ).status_code
        == 200
    )
    assert visit_of(platform_db, appointment_id).sequence == sequence, "delivered again: nothing changes"

    # a move in Jobber onto the technician's other visit: refused here, and dispatch is told
    taken = visit_of(platform_db, other_id)
    state.move(visit_id, taken.starts_at, taken.ends_at)
    assert (
        client.post(
            hook, data=body, headers=VECTOR["headers"] | {"Content-Type": "application/json"}
        ).status_code
        == 200
    )
    assert visit_of(platform_db, appointment_id).starts_at == moved_to, "the rules refused the overlap"
    drain(work)
    dead = [row for row in pushes(platform_db, integration_id) if row.status == "dead"]
    assert (
        len(dead) == 1 and "move it to 2031-10-27 10:00–12:00 (Europe/Berlin) in Jobber" in dead[0].last_error
    )


def test_401_refreshes_the_rotated_token_and_429_waits(
    platform_env: dict[str, str], platform_db: Database, jobber: tuple[FakeJobber, FakePlatform]
) -> None:
    state, platform = jobber
    integration_id = connect(platform_env, platform)
    state.access_token = "jat-revoked"  # the stored token was revoked: one refresh, then the push
    clock = Clock()
    work = worker(platform_db, clock)
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Kit", "America/Denver")
        book(ctx, add_customer(ctx, "Refresh LLC"), technician, DAY)
    drain(work)
    assert state.refreshes == 1 and len(state.jobs) == 1
    platform.script.append(json_answer(429, {"message": "Too many requests"}, {"Retry-After": "45"}))
    with domain(platform_db) as ctx:
        book(ctx, add_customer(ctx, "Later LLC"), technician, DAY + dt.timedelta(hours=5))
    drain(work)
    [waiting] = [row for row in pushes(platform_db, integration_id) if row.status == "pending"]
    assert waiting.attempts == 0 and waiting.next_attempt_at >= clock.now + dt.timedelta(seconds=40)
    clock.advance(seconds=46)
    drain(work)
    assert len(state.jobs) == 2 and state.refreshes == 1
    assert all(job["input"]["propertyId"] == "prop-default" for job in state.jobs.values())


def test_a_webhook_after_the_token_expired_refreshes_before_reading(
    platform_env: dict[str, str], platform_db: Database, jobber: tuple[FakeJobber, FakePlatform]
) -> None:
    state, platform = jobber
    integration_id = connect(platform_env, platform)
    with domain(platform_db) as ctx:
        appointment_id = book(ctx, add_customer(ctx, "Expired Ltd"), add_technician(ctx, "Lu"), DAY).id
    drain(worker(platform_db, Clock()))
    [visit_id] = state.visits
    vault = Vault((platform_env["FIELDCAL_CREDENTIAL_KEYS"],))
    with platform_db.write() as session:  # the token we hold ran out an hour ago
        row = session.get(Integration, integration_id)
        assert row is not None
        past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
        row.secrets = vault.seal({**vault.open(row.secrets), "expires_at": past})
    state.access_token = "jat-only-after-refresh"
    state.refresh_token = "jrt-1"
    moved_to = dt.datetime(2031, 10, 27, 9, tzinfo=dt.UTC)
    state.move(visit_id, moved_to, moved_to + dt.timedelta(hours=2))
    client = create_app(settings=load_settings(platform_env)).test_client()
    body = VECTOR["body"].encode()
    answer = client.post(f"/hooks/jobber/{integration_id}", data=body, headers=signed(body))
    assert answer.status_code == 200 and state.refreshes == 1
    assert visit_of(platform_db, appointment_id).starts_at == moved_to
