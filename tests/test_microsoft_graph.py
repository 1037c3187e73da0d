"""Microsoft Graph and Office 365 against a stateful fake on loopback: every request checked
with openapi-core against ../shared/contracts (microsoft_graph, office365), local wall times
with the zone on DST days, lookup by our UID on retries, a refresh that rotates the refresh
token, delta read-back (moved, deleted, 410 → full resync) and change notifications."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator

import pytest
from fake_graph import FakeGraph
from integrationkit import add, drain, run, worker
from mailkit import Clock, add_customer, add_technician, book, domain
from platformkit import FakePlatform, contract, fake_platform, openapi_document, validate_openapi
from sqlalchemy import select

from server import scheduling
from server.app import create_app
from server.config import load_settings
from server.db import Database
from server.models import Appointment, Integration, OutboxMessage
from server.vault import Vault

GRAPH = contract("microsoft_graph")
O365 = contract("office365")
PLATFORMS = ["microsoft-graph", "office365"]
OWNER = {"microsoft-graph": "/v1.0/me", "office365": "/v1.0/users/anna@example.test/calendars/team-north"}


@pytest.fixture()
def graph() -> Iterator[tuple[FakeGraph, FakePlatform]]:
    state = FakeGraph()
    with fake_platform(state) as platform:
        state.url = platform.url
        yield state, platform


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def connect(env: dict[str, str], platform_name: str, fake: FakePlatform) -> int:
    extra = (
        ["--set", "user_id=anna@example.test", "--set", "calendar_id=team-north"]
        if (platform_name == "office365")
        else []
    )
    return add(
        env,
        platform_name,
        "--set",
        f"base_url={fake.url}/v1.0",
        "--set",
        f"token_url={fake.url}/token",
        "--secret",
        "access_token=gat-1",
        "--secret",
        "refresh_token=grt-1",
        "--secret",
        "client_id=c",
        "--secret",
        "client_secret=s",
        "--secret",
        "client_state=fc-state",
        *extra,
    )


def me_as_users(path: str) -> str:
    """/me/events/{id} is /users/{me}/calendar(s)/…/events/{id}: the contract documents it there."""
    return re.sub(r"^/v1\.0/me/events/", "/v1.0/users/me/calendars/calendar/events/", path)


def delta_path(path: str) -> str:
    return path.replace("/calendarView/delta", "/calendarView/microsoft.graph.delta()")


def as_documented(path: str) -> str:
    return delta_path(me_as_users(path))


def checked(fake: FakePlatform, platform_name: str) -> list[str]:
    server = f"{fake.url}/v1.0"
    graph_doc = openapi_document(GRAPH["fragment"], server, GRAPH["incremental_sync"]["fragment"])
    o365_doc = openapi_document(O365["fragment"], server, O365["incremental_sync"]["fragment"])
    seen = []
    for recorded in fake.requests:
        if recorded.path == "/token":
            continue
        item = recorded.path.startswith("/v1.0/me/events/")
        document = o365_doc if platform_name == "office365" or item else graph_doc
        seen.append(validate_openapi(document, recorded, fake.url, as_documented).split(" ")[0])
    return seen


def when(value: dict[str, str]) -> tuple[str, str]:
    return value["dateTime"], value["timeZone"]


def appointment_of(database: Database, appointment_id: int) -> Appointment:
    with database.read() as session:
        found = session.get(Appointment, appointment_id)
        assert found is not None
        session.expunge(found)
        return found


@pytest.mark.parametrize("platform_name", PLATFORMS)
def test_visits_become_events_in_local_wall_time(
    platform_env: dict[str, str],
    platform_db: Database,
    graph: tuple[FakeGraph, FakePlatform],
    platform_name: str,
) -> None:
    state, fake = graph
    connect(platform_env, platform_name, fake)
    day = dt.datetime(2031, 10, 26, 9, tzinfo=dt.UTC)  # Europe/London leaves summer time that night
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Ivy", "Europe/London")
        appointment = book(ctx, add_customer(ctx, "Compressed Ltd"), technician, day)
        uid, appointment_id = appointment.uid, appointment.id
    clock = Clock()
    drain(worker(platform_db, clock))
    [event] = state.events.values()
    assert fake.requests[0].path == f"{OWNER[platform_name]}/events"
    assert when(event["start"]) == ("2031-10-26T09:00:00", "Europe/London"), "GMT again"
    assert when(event["end"]) == ("2031-10-26T11:00:00", "Europe/London")
    assert event["singleValueExtendedProperties"][0]["value"] == uid and event["transactionId"] == uid
    assert (
        event["subject"] == "Annual service — Compressed Ltd" and event["attendees"][0]["type"] == "required"
    )
    with domain(platform_db) as ctx:
        scheduling.reschedule(
            ctx,
            scheduling.get_appointment(ctx.session, appointment_id),
            day - dt.timedelta(days=1),
            day - dt.timedelta(days=1, hours=-2),
        )
    drain(worker(platform_db, clock))
    assert when(event["start"]) == ("2031-10-25T10:00:00", "Europe/London"), "BST, +01:00"
    with domain(platform_db) as ctx:
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, appointment_id))
    drain(worker(platform_db, clock))
    assert checked(fake, platform_name) == ["POST", "PATCH", "DELETE"]
    assert event.get("@removed") and len(state.events) == 1


@pytest.mark.parametrize("platform_name", PLATFORMS)
def test_refresh_keeps_the_rotated_refresh_token(
    platform_env: dict[str, str],
    platform_db: Database,
    graph: tuple[FakeGraph, FakePlatform],
    platform_name: str,
) -> None:
    state, fake = graph
    integration_id = connect(platform_env, platform_name, fake)
    state.access_token = "gat-expired-elsewhere"
    with domain(platform_db) as ctx:
        book(
            ctx,
            add_customer(ctx, "Rotate plc"),
            add_technician(ctx, "Jon"),
            dt.datetime(2031, 7, 1, 8, tzinfo=dt.UTC),
        )
    drain(worker(platform_db, Clock()))
    assert state.refreshes == 1 and len(state.events) == 1
    with platform_db.read() as session:
        row = session.get(Integration, integration_id)
        assert row is not None
        secrets = Vault((platform_env["FIELDCAL_CREDENTIAL_KEYS"],)).open(row.secrets)
    assert (
        secrets["refresh_token"] == "grt-2" and secrets["access_token"] == "gat-2" and secrets["expires_at"]
    )
    checked(fake, platform_name)


@pytest.mark.parametrize("platform_name", PLATFORMS)
def test_delta_read_back_and_notifications(
    platform_env: dict[str, str],
    platform_db: Database,
    graph: tuple[FakeGraph, FakePlatform],
    platform_name: str,
) -> None:
    state, fake = graph
    integration_id = connect(platform_env, platform_name, fake)
    start = dt.datetime(2031, 7, 7, 7, tzinfo=dt.UTC)
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Kay", "Europe/Berlin")
        moved_id = book(ctx, add_customer(ctx, "Delta GmbH"), technician, start).id
        deleted_id = book(ctx, add_customer(ctx, "Gone GmbH"), technician, start + dt.timedelta(hours=5)).id
    work = worker(platform_db, Clock())
    drain(work)
    run(platform_env, "integration", "pull", str(integration_id))
    drain(work)
    by_subject = {e["subject"]: e["id"] for e in state.events.values()}
    state.move(
        by_subject["Annual service — Delta GmbH"],
        "2031-07-07T12:00:00",
        "2031-07-07T14:00:00",
        "Europe/Berlin",
    )
    with state.lock:
        state.events[by_subject["Annual service — Gone GmbH"]]["@removed"] = {"reason": "deleted"}
        state.touch(by_subject["Annual service — Gone GmbH"])
    client = create_app(settings=load_settings(platform_env)).test_client()
    hook = f"/hooks/{platform_name}/{integration_id}"
    handshake = client.post(f"{hook}?validationToken=Validation%3A%20abc")
    assert handshake.status_code == 200 and handshake.data == b"Validation: abc"
    assert handshake.content_type.startswith("text/plain")
    sample = GRAPH["inbound_samples"]["change_notification"]["request_body"]
    wrong = client.post(hook, data=json.dumps(sample), content_type="application/json")
    assert wrong.status_code == 401, "the sample's clientState is not ours"
    ours = json.loads(json.dumps(sample))
    ours["value"][0]["clientState"] = "fc-state"
    assert client.post(hook, data=json.dumps(ours), content_type="application/json").status_code == 202
    drain(work)
    assert appointment_of(platform_db, moved_id).starts_at == dt.datetime(2031, 7, 7, 10, tzinfo=dt.UTC)
    assert appointment_of(platform_db, deleted_id).status == "confirmed", "deleted there, restored here"
    live = [e for e in state.events.values() if not e.get("@removed")]
    assert len(live) == 2, "the deleted event was created again"
    state.stale_tokens.add(state.latest_token())
    run(platform_env, "integration", "pull", str(integration_id))
    before = len(state.events)
    drain(work)
    assert len(state.events) == before, "410 → a full resync that creates nothing"
    with platform_db.read() as session:
        pulls = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "platform.pull")).all()
        assert pulls and all(p.status == "sent" for p in pulls)
    assert "GET" in checked(fake, platform_name)
