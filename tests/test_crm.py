"""Salesforce, HubSpot and Zoho CRM against fakes on loopback: requests checked against
../shared/contracts (docs-derived field lists and rules for Salesforce and HubSpot, the
OpenAPI document for Zoho CRM), times in UTC, and no duplicates when a push is retried."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

import pytest
from integrationkit import add, drain, worker
from mailkit import Clock, add_customer, add_technician, book, domain
from platformkit import (
    Recorded,
    contract,
    fake_platform,
    json_answer,
    openapi_document,
    validate_openapi,
)

from server import scheduling
from server.db import Database

DAY = dt.datetime(2031, 3, 9, 13, tzinfo=dt.UTC)
UTC_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def visit_lifecycle(platform_db: Database, clock: Clock, *, retry_first: bool = False) -> int:
    with domain(platform_db) as ctx:
        appointment = book(
            ctx,
            add_customer(ctx, "CRM Kunde GmbH", email="einkauf@kunde.example"),
            add_technician(ctx, "Tia"),
            DAY,
        )
        appointment_id = appointment.id
    drain(worker(platform_db, clock))
    with domain(platform_db) as ctx:
        scheduling.reschedule(
            ctx,
            scheduling.get_appointment(ctx.session, appointment_id),
            DAY + dt.timedelta(hours=1),
            DAY + dt.timedelta(hours=3),
        )
    drain(worker(platform_db, clock))
    with domain(platform_db) as ctx:
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, appointment_id))
    drain(worker(platform_db, clock))
    return appointment_id


# --------------------------------------------------------------------------- Salesforce

SF = contract("salesforce")
SF_FIELDS = set(SF["docs_derived_contract"]["jsforce_Fields$Event"]) | {"Who", "What"}
SF_PATH = re.compile(r"^/services/data/v\d+\.\d/sobjects/Event/(?P<field>[A-Za-z0-9_]+__c)/(?P<value>[^/]+)$")


class FakeSalesforce:
    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}

    def __call__(self, recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        match = SF_PATH.match(recorded.path)
        assert match and recorded.method == "PATCH", recorded.path
        key = match["value"]
        if key in self.events:
            self.events[key].update(recorded.json())
            return 204, {}, b""
        self.events[key] = {**recorded.json(), "Id": f"00U{len(self.events):012d}"}
        return json_answer(201, {"id": self.events[key]["Id"], "success": True, "errors": []})


def validate_salesforce(recorded: Recorded) -> None:
    body = recorded.json()
    assert set(body) <= SF_FIELDS, f"not Event fields: {set(body) - SF_FIELDS}"
    assert body["IsAllDayEvent"] is False and ("EndDateTime" in body or "DurationInMinutes" in body)
    assert UTC_STAMP.match(body["StartDateTime"]) and UTC_STAMP.match(body["EndDateTime"])
    assert recorded.header("Authorization") == "Bearer sf-token"


def test_salesforce_upserts_by_external_id(platform_env: dict[str, str], platform_db: Database) -> None:
    state = FakeSalesforce()
    with fake_platform(state) as fake:
        add(
            platform_env,
            "salesforce",
            "--set",
            f"base_url={fake.url}",
            "--set",
            "external_id_field=Fieldcal_UID__c",
            "--set",
            "account_external_field=Fieldcal_Customer__c",
            "--secret",
            "access_token=sf-token",
        )
        clock = Clock()
        fake.script.append(json_answer(503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "try later"}]))
        visit_lifecycle(platform_db, clock)
        clock.advance(minutes=30)
        drain(worker(platform_db, clock))
    assert len(state.events) == 1, "upsert by our id: retries and changes never duplicate"
    [event] = state.events.values()
    assert event["StartDateTime"] == "2031-03-09T14:00:00Z" and event["Subject"].startswith("[cancelled]")
    assert (
        event["What"]
        == {"attributes": {"type": "Account"}, "Fieldcal_Customer__c": event["What"]["Fieldcal_Customer__c"]}
        and event["ShowAs"] == "Free"
    )
    for recorded in fake.requests:
        validate_salesforce(recorded)


# ------------------------------------------------------------------------------ HubSpot

HS = contract("hubspot")["docs_derived_contract"]


class FakeHubSpot:
    def __init__(self) -> None:
        self.meetings: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count(501)

    def __call__(self, recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        path, body = recorded.path, recorded.json() if recorded.body else {}
        if path == "/crm/v3/objects/contacts/search":
            return json_answer(200, {"total": 1, "results": [{"id": "9001", "properties": {}}]})
        if path == "/crm/v3/objects/meetings/search":
            value = body["filterGroups"][0]["filters"][0]["value"]
            hits = [{"id": k} for k, m in self.meetings.items() if m["properties"]["fieldcal_uid"] == value]
            return json_answer(200, {"total": len(hits), "results": hits})
        if recorded.method == "POST":
            new = str(next(self.ids))
            self.meetings[new] = body
            return json_answer(201, {"id": new, "properties": body["properties"], "archived": False})
        meeting_id = path.rsplit("/", 1)[1]
        self.meetings[meeting_id]["properties"].update(body["properties"])
        return json_answer(200, {"id": meeting_id, "properties": self.meetings[meeting_id]["properties"]})


def validate_hubspot(recorded: Recorded) -> None:
    body = recorded.json()
    if recorded.path.endswith("/search"):
        assert recorded.method == "POST" and body["filterGroups"][0]["filters"][0]["operator"] == "EQ"
        return
    spec = HS["create"] if recorded.method == "POST" else HS["update"]
    assert recorded.path.startswith(spec["path"].split("{")[0]) and recorded.method == spec["method"]
    assert set(spec["body_required"]) <= set(body)
    assert set(body) <= set(spec["body_required"]) | set(spec.get("body_optional", []))
    properties = body["properties"]
    if recorded.method == "POST":
        assert set(HS["create"]["properties_required"]) <= set(properties)
        for association in body.get("associations", []):
            assert association["types"][0]["associationCategory"] == "HUBSPOT_DEFINED"
    for key in ("hs_timestamp", "hs_meeting_start_time", "hs_meeting_end_time"):
        assert UTC_STAMP.match(properties[key]), properties[key]
    assert recorded.header("Authorization") == "Bearer hs-token"


def test_hubspot_meeting_with_the_contact(platform_env: dict[str, str], platform_db: Database) -> None:
    state = FakeHubSpot()
    with fake_platform(state) as fake:
        add(platform_env, "hubspot", "--set", f"base_url={fake.url}", "--secret", "access_token=hs-token")
        visit_lifecycle(platform_db, Clock())
    [meeting] = state.meetings.values()
    assert meeting["associations"][0]["to"] == {"id": "9001"}
    properties = meeting["properties"]
    assert properties["hs_meeting_start_time"] == "2031-03-09T14:00:00Z"
    assert properties["hs_meeting_outcome"] == "CANCELED"
    for recorded in fake.requests:
        validate_hubspot(recorded)


# ----------------------------------------------------------------------------- Zoho CRM

ZC = contract("zoho_crm")


def zoho_crm_document(server: str) -> dict[str, Any]:
    """The published document; its security scheme lives in a file outside the contract, so
    the Authorization header is asserted on its own instead."""
    document = openapi_document(ZC["fragment"], server)
    document["components"].pop("securitySchemes", None)
    document.pop("security", None)
    for operations in document["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    return document


def test_zoho_crm_events(platform_env: dict[str, str], platform_db: Database) -> None:
    records = itertools.count(4876000000001)

    def answer(recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        if recorded.method == "POST":
            return json_answer(
                201,
                {"data": [{"code": "SUCCESS", "status": "success", "details": {"id": str(next(records))}}]},
            )
        return json_answer(200, {"data": [{"code": "SUCCESS", "status": "success", "details": {}}]})

    with fake_platform(answer) as fake:
        add(platform_env, "zoho-crm", "--set", f"base_url={fake.url}", "--secret", "access_token=zc-token")
        visit_lifecycle(platform_db, Clock())
    assert [r.method for r in fake.requests] == ["POST", "PUT", "DELETE"]
    record = fake.requests[1].json()["data"][0]
    assert record["Start_DateTime"] == "2031-03-09T14:00:00+00:00" and record["Event_Title"]
    assert fake.requests[2].path == "/crm/v8/Events/4876000000001"
    document = zoho_crm_document(fake.url)
    for recorded in fake.requests:
        assert recorded.header("Authorization") == "Zoho-oauthtoken zc-token"
        validate_openapi(document, recorded, fake.url)
