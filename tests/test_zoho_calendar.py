"""Zoho Calendar against a fake on loopback: every request checked against the docs-derived
contract in ../shared/contracts/zoho_calendar.json (eventdata as a JSON query parameter, UTC
times as yyyyMMdd'T'HHmmss'Z', the etag on updates and deletes, the Zoho-oauthtoken header),
the mapping on a DST day, and a refresh that keeps the refresh token Zoho does not resend."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from integrationkit import add, drain, worker
from mailkit import Clock, add_customer, add_technician, book, domain
from platformkit import FakePlatform, Recorded, contract, fake_platform, json_answer

from server import scheduling
from server.db import Database
from server.models import Integration
from server.vault import Vault

CONTRACT = contract("zoho_calendar")
FIELDS = CONTRACT["docs_derived_contract"]["eventdata (query param, JSON)"]
ZOHO_TIME = re.compile(r"^\d{8}T\d{6}Z$")
PATH = re.compile(r"^/api/v1/calendars/(?P<calendar>[^/]+)/events(?:/(?P<uid>[^/]+))?$")


def validate(recorded: Recorded, token: str) -> str:
    """The contract, as Zoho documents it: returns "METHOD"."""
    match = PATH.match(recorded.path)
    assert match, recorded.path
    assert recorded.header("Authorization") == f"Zoho-oauthtoken {token}"
    if recorded.method == "DELETE":
        assert match["uid"] and recorded.header("etag"), "a delete names the event and its etag"
        return "DELETE"
    assert recorded.method in ("POST", "PUT") and not recorded.body, "eventdata travels in the query"
    assert set(recorded.query) == {"eventdata"}
    data = json.loads(recorded.query["eventdata"])
    assert set(data) <= set(FIELDS) | {"etag"}, f"fields not in the contract: {set(data) - set(FIELDS)}"
    when = data["dateandtime"]
    assert ZOHO_TIME.match(when["start"]) and ZOHO_TIME.match(when["end"]), when
    assert isinstance(data["title"], str) and len(data.get("location", "")) <= 255
    assert len(data.get("description", "")) <= 10000 and isinstance(data.get("isallday", False), bool)
    for attendee in data.get("attendees", []):
        assert set(attendee) <= {"email", "permission", "attendance"} and "@" in attendee["email"]
    if recorded.method == "PUT":
        assert match["uid"] and data.get("etag"), "an update names the event's etag"
    return recorded.method


class FakeZoho:
    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.etags = itertools.count(1000)
        self.token = "zat-1"
        self.refreshes = 0

    def __call__(self, recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        if recorded.path == "/oauth/v2/token":
            self.refreshes += 1
            self.token = f"zat-{self.refreshes + 1}"
            return json_answer(
                200,
                {
                    "access_token": self.token,
                    "expires_in": 3600,
                    "token_type": "Bearer",
                    "api_domain": "https://www.zohoapis.com",
                },
            )
        if recorded.header("Authorization") != f"Zoho-oauthtoken {self.token}":
            return json_answer(401, {"error": {"code": "INVALID_OAUTHTOKEN"}})
        match = PATH.match(recorded.path)
        assert match
        if recorded.method == "DELETE":
            assert self.events[match["uid"]]["etag"] == recorded.header("etag"), "stale etag"
            del self.events[match["uid"]]
            return json_answer(200, {"events": [{"uid": match["uid"]}]})
        data = json.loads(recorded.query["eventdata"])
        uid = match["uid"] or f"zev{len(self.events) + 1}@zoho.com"
        if recorded.method == "PUT" and self.events[uid]["etag"] != data["etag"]:
            return json_answer(400, {"error": {"code": "ETAG_MISMATCH"}})
        self.events[uid] = {**data, "uid": uid, "etag": str(next(self.etags))}
        return json_answer(200, {"events": [self.events[uid]]})


@pytest.fixture()
def zoho() -> Iterator[tuple[FakeZoho, FakePlatform]]:
    state = FakeZoho()
    with fake_platform(state) as platform:
        yield state, platform


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def test_events_in_zoho(
    platform_env: dict[str, str], platform_db: Database, zoho: tuple[FakeZoho, FakePlatform]
) -> None:
    state, platform = zoho
    add(
        platform_env,
        "zoho-calendar",
        "--set",
        f"base_url={platform.url}/api/v1",
        "--set",
        "calendar_uid=cal1",
        "--secret",
        "access_token=zat-1",
    )
    day = dt.datetime(2031, 3, 30, 7, tzinfo=dt.UTC)  # Berlin changes its clocks this morning
    with domain(platform_db) as ctx:
        appointment = book(ctx, add_customer(ctx, "Zoho GmbH"), add_technician(ctx, "Nia"), day)
        appointment_id = appointment.id
    clock = Clock()
    drain(worker(platform_db, clock))
    [event] = state.events.values()
    assert event["dateandtime"] == {
        "start": "20310330T070000Z",
        "end": "20310330T090000Z",
        "timezone": "Europe/Berlin",
    }
    assert event["title"] == "Annual service — Zoho GmbH" and "10115 Berlin" in event["location"]
    with domain(platform_db) as ctx:
        scheduling.reschedule(
            ctx,
            scheduling.get_appointment(ctx.session, appointment_id),
            day + dt.timedelta(hours=2),
            day + dt.timedelta(hours=4),
        )
    drain(worker(platform_db, clock))
    [event] = state.events.values()
    assert event["dateandtime"]["start"] == "20310330T090000Z"
    with domain(platform_db) as ctx:
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, appointment_id))
    drain(worker(platform_db, clock))
    assert state.events == {}
    assert [validate(r, "zat-1") for r in platform.requests] == ["POST", "PUT", "DELETE"]


def test_refresh_keeps_the_refresh_token(
    platform_env: dict[str, str], platform_db: Database, zoho: tuple[FakeZoho, FakePlatform]
) -> None:
    state, platform = zoho
    integration_id = add(
        platform_env,
        "zoho-calendar",
        "--set",
        f"base_url={platform.url}/api/v1",
        "--set",
        "calendar_uid=cal1",
        "--set",
        f"token_url={platform.url}/oauth/v2/token",
        "--secret",
        "access_token=zat-old",
        "--secret",
        "refresh_token=zrt-keep",
        "--secret",
        "client_id=c",
        "--secret",
        "client_secret=s",
    )
    with domain(platform_db) as ctx:
        book(
            ctx,
            add_customer(ctx, "Keep AG"),
            add_technician(ctx, "Ola"),
            dt.datetime(2031, 9, 1, 8, tzinfo=dt.UTC),
        )
    drain(worker(platform_db, Clock()))
    assert state.refreshes == 1 and len(state.events) == 1
    with platform_db.read() as session:
        row = session.get(Integration, integration_id)
        assert row is not None
        secrets = Vault((platform_env["FIELDCAL_CREDENTIAL_KEYS"],)).open(row.secrets)
    assert secrets["refresh_token"] == "zrt-keep" and secrets["access_token"] == "zat-2"
    assert validate(platform.requests[-1], "zat-2") == "POST"
