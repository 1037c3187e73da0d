"""Airtable, Freshdesk and monday.com against fakes on loopback: requests checked against
../shared/contracts (docs-derived rules for Airtable and Freshdesk; GraphQL mutations
validated with graphql-core against monday's published SDL), upserts without duplicates,
the job's progress carried along, and the platforms' inbound checks."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from typing import Any

import pytest
from graphql import build_schema, graphql_sync
from integrationkit import add, drain, worker
from mailkit import Clock, add_customer, add_technician, book, domain
from platformkit import Recorded, contract, fake_platform, json_answer

from plugins.platforms.records import Airtable, Monday
from server import scheduling
from server.db import Database
from server.models import JobStatus
from server.platforms import Config, Inbound, InvalidSignature

DAY = dt.datetime(2031, 10, 26, 0, 30, tzinfo=dt.UTC)


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def lifecycle(platform_db: Database, *, finish: str) -> None:
    clock = Clock()
    with domain(platform_db) as ctx:
        appointment = book(
            ctx, add_customer(ctx, "Record GmbH", email="it@record.example"), add_technician(ctx, "Uma"), DAY
        )
        appointment_id = appointment.id
    drain(worker(platform_db, clock))
    with domain(platform_db) as ctx:
        found = scheduling.get_appointment(ctx.session, appointment_id)
        if finish == "completed":
            scheduling.set_status(ctx, found, JobStatus.EN_ROUTE)
        else:
            scheduling.reschedule(ctx, found, DAY + dt.timedelta(hours=1), DAY + dt.timedelta(hours=3))
    drain(worker(platform_db, clock))
    with domain(platform_db) as ctx:
        found = scheduling.get_appointment(ctx.session, appointment_id)
        if finish == "completed":
            scheduling.set_status(ctx, found, JobStatus.COMPLETED)
        else:
            scheduling.cancel(ctx, found)
    drain(worker(platform_db, clock))


# ----------------------------------------------------------------------------- Airtable

AIRTABLE = contract("airtable")
AT_BODY = set(AIRTABLE["docs_derived_contract"]["request_body"])


class FakeAirtable:
    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count(1)

    def __call__(self, recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        body = recorded.json()
        merge_on = body["performUpsert"]["fieldsToMergeOn"][0]
        out = []
        for record in body["records"]:
            key = record["fields"][merge_on]
            if key not in self.records:
                self.records[key] = {"id": f"rec{next(self.ids):014d}", "fields": {}}
            self.records[key]["fields"].update(record["fields"])
            out.append(self.records[key])
        return json_answer(200, {"records": out})


def validate_airtable(recorded: Recorded) -> None:
    assert recorded.method == "PATCH" and re.match(r"^/v0/app[A-Za-z0-9]+/[^/]+$", recorded.path)
    body = recorded.json()
    assert set(body) <= AT_BODY, set(body) - AT_BODY
    assert body["typecast"] is False and 1 <= len(body["records"]) <= 10
    assert all(set(r) <= {"id", "fields"} for r in body["records"])
    assert recorded.header("Authorization") == "Bearer pat-1"


def test_airtable_upserts_one_record_per_visit(platform_env: dict[str, str], platform_db: Database) -> None:
    state = FakeAirtable()
    with fake_platform(state) as fake:
        add(
            platform_env,
            "airtable",
            "--set",
            f"base_url={fake.url}",
            "--set",
            "base_id=appVISITS0001",
            "--set",
            "table=Visits",
            "--set",
            "field_start=Begins",
            "--secret",
            "access_token=pat-1",
        )
        lifecycle(platform_db, finish="cancelled")
    [record] = state.records.values()
    assert record["fields"]["Begins"] == "2031-10-26T01:30:00Z" and record["fields"]["Status"] == "cancelled"
    assert len(fake.requests) == 3
    for recorded in fake.requests:
        validate_airtable(recorded)


def test_airtable_mac_vectors() -> None:
    vector = AIRTABLE["webhook_signature"]["test_vectors"][0]
    connector = Airtable(Config(1, "airtable", {}, {"mac_secret_base64": vector["macSecretBase64"]}))
    body = vector["body"].encode()
    connector.verify(Inbound("POST", "/", vector["headers"], body), dt.datetime.now(dt.UTC))
    for headers, payload in [
        (vector["headers"], body + b" "),
        ({}, body),
        ({"X-Airtable-Content-MAC": "hmac-sha256=" + "0" * 64}, body),
    ]:
        with pytest.raises(InvalidSignature):
            connector.verify(Inbound("POST", "/", headers, payload), dt.datetime.now(dt.UTC))


# ---------------------------------------------------------------------------- Freshdesk

FD = contract("freshdesk")["docs_derived_contract"]
FD_FIELDS = (
    set(FD["one_of_required"])
    | set(FD["required_with_defaults"])
    | {name.split(" ")[0] for name in FD["optional"]}
)


def validate_freshdesk(recorded: Recorded) -> None:
    body = recorded.json()
    assert set(body) <= FD_FIELDS, f"undocumented attributes: {set(body) - FD_FIELDS}"
    if recorded.method == "POST":
        assert recorded.path == "/api/v2/tickets" and set(body) & set(FD["one_of_required"])
        assert body["priority"] in (1, 2, 3, 4) and body["source"] in (1, 2, 3, 7, 9, 10)
    else:
        assert re.match(r"^/api/v2/tickets/\d+$", recorded.path) and recorded.method == "PUT"
    assert body["status"] in (2, 3, 4, 5)
    assert recorded.header("Authorization").startswith("Basic ")


def test_freshdesk_ticket_follows_the_job(platform_env: dict[str, str], platform_db: Database) -> None:
    with fake_platform(lambda r: json_answer(201 if r.method == "POST" else 200, {"id": 4711})) as fake:
        add(platform_env, "freshdesk", "--set", f"base_url={fake.url}", "--secret", "api_key=fd-key")
        lifecycle(platform_db, finish="completed")
    create, road, done = fake.requests
    assert create.json()["email"] == "it@record.example" and create.json()["status"] == 3
    assert "2031-10-26T00:30:00Z" in create.json()["description"]
    assert "en route" in road.json()["description"] and done.json()["status"] == 4, "resolved with the job"
    for recorded in fake.requests:
        validate_freshdesk(recorded)


# ------------------------------------------------------------------------------- monday

MONDAY = contract("monday")["sdl_excerpts"]
SCHEMA = build_schema(
    "\n".join(
        [
            MONDAY["scalar JSON"],
            "enum PositionRelative { before_at after_at }",
            "type Item { id: ID! }",  # the published Item has dozens of fields; our mutations read its id
            "type Query { item: Item }",
            "type Mutation {",
            MONDAY["Mutation.create_item"],
            MONDAY["Mutation.change_column_value"],
            MONDAY["Mutation.change_multiple_column_values"],
            "}",
        ]
    )
)


def validate_monday(recorded: Recorded) -> dict[str, Any]:
    body = recorded.json()
    result = graphql_sync(
        SCHEMA,
        body["query"],
        variable_values=body["variables"],
        root_value={
            "create_item": lambda *_a, **_k: {"id": "1"},
            "change_multiple_column_values": lambda *_a, **_k: {"id": "1"},
        },
    )
    assert not result.errors, result.errors
    assert recorded.header("Authorization") == "mon-token" and re.match(
        r"^\d{4}-\d\d$", recorded.header("API-Version")
    )
    return dict(body["variables"])


def test_monday_items_with_utc_date_columns(platform_env: dict[str, str], platform_db: Database) -> None:
    def answer(recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        field = (
            "create_item" if "create_item" in recorded.json()["query"] else "change_multiple_column_values"
        )
        return json_answer(200, {"data": {field: {"id": "5550001"}}})

    with fake_platform(answer) as fake:
        add(
            platform_env,
            "monday",
            "--set",
            f"base_url={fake.url}/v2",
            "--set",
            "board_id=1234567",
            "--set",
            "date_column=date4",
            "--set",
            "status_column=status",
            "--secret",
            "api_token=mon-token",
        )
        lifecycle(platform_db, finish="completed")
    created, *changes = (validate_monday(r) for r in fake.requests)
    values = json.loads(created["values"])
    assert values["date4"] == {"date": "2031-10-26", "time": "00:30:00"}, "UTC, not Berlin's 02:30"
    assert json.loads(changes[-1]["values"])["status"] == {"label": "completed"}
    assert all(c["item"] == "5550001" for c in changes) and fake.requests[0].path == "/v2"


def test_monday_answers_only_the_challenge() -> None:
    connector = Monday(Config(1, "monday", {}, {}))
    challenge = contract("monday")["webhook_signature"]["challenge"]
    body = json.dumps(challenge["request_body"]).encode()
    connector.verify(Inbound("POST", "/", {}, body), dt.datetime.now(dt.UTC))
    assert json.loads(connector.receive(Inbound("POST", "/", {}, body)).body) == challenge["request_body"]
    with pytest.raises(InvalidSignature):
        connector.verify(
            Inbound("POST", "/", {}, b'{"event": {"type": "create_item"}}'), dt.datetime.now(dt.UTC)
        )
