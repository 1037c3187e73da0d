"""Google Calendar against a stateful fake on loopback: every request checked against the
discovery document in ../shared/contracts, times right on DST days in three zones, one event
per visit under retries (timeout after commit, two workers), OAuth (PKCE, refresh once,
invalid_grant), read-back with syncToken (moved, refused and reverted, 410 → full resync),
push notifications, and Meet links."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from fake_google import FakeGoogle
from integrationkit import BASE_URL, add, drain, run, worker
from mailkit import Clock, add_customer, add_technician, book, domain
from platformkit import FakePlatform, contract, fake_platform, validate_discovery
from sqlalchemy import select

from server import integrations, scheduling
from server.app import create_app
from server.config import load_settings
from server.db import Database
from server.models import Appointment, AuditEntry, ServiceType

CONTRACT = contract("google_calendar")
DOCUMENT = {
    "methods": {**CONTRACT["fragment"]["methods"], **CONTRACT["incremental_sync"]["methods"]},
    "schemas": {**CONTRACT["fragment"]["schemas"], **CONTRACT["incremental_sync"].get("schemas", {})},
    "parameters": CONTRACT["fragment"]["parameters"],
}
REQUIRED = {"calendar.events.insert": ["start", "end"], "calendar.events.update": ["start", "end"]}


@pytest.fixture()
def google() -> Iterator[tuple[FakeGoogle, FakePlatform]]:
    state = FakeGoogle()
    with fake_platform(state) as platform:
        yield state, platform


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def connect(env: dict[str, str], platform: FakePlatform, *extra: str) -> int:
    return add(
        env,
        "google-calendar",
        "--set",
        f"base_url={platform.url}",
        "--set",
        f"token_url={platform.url}/token",
        "--set",
        f"auth_url={platform.url}/auth",
        "--set",
        "calendar_id=dispatch@example.test",
        "--secret",
        "access_token=at-1",
        "--secret",
        "refresh_token=rt-1",
        "--secret",
        "client_id=cid",
        "--secret",
        "client_secret=cs",
        "--secret",
        "channel_token=chan-tok",
        *extra,
    )


def checked(platform: FakePlatform) -> list[str]:
    """Validate every API request the fake received; returns the method ids in order."""
    return [
        validate_discovery(DOCUMENT, r, required_fields=REQUIRED)
        for r in platform.requests
        if r.path != "/token"
    ]


def appointment_of(database: Database, appointment_id: int) -> Appointment:
    with database.read() as session:
        found = session.get(Appointment, appointment_id)
        assert found is not None
        session.expunge(found)
        return found


@pytest.mark.parametrize(
    ("zone", "day", "local_start", "offset"),
    [
        (
            "Europe/Berlin",
            dt.datetime(2031, 3, 30, 8, tzinfo=dt.UTC),
            "10:00:00",
            "+02:00",
        ),  # summer time starts
        ("America/New_York", dt.datetime(2031, 3, 9, 14, tzinfo=dt.UTC), "10:00:00", "-04:00"),
        (
            "Australia/Sydney",
            dt.datetime(2031, 4, 6, 0, tzinfo=dt.UTC),
            "10:00:00",
            "+10:00",
        ),  # summer time ends
    ],
)
def test_visits_become_events_with_the_right_local_times(
    platform_env: dict[str, str],
    platform_db: Database,
    google: tuple[FakeGoogle, FakePlatform],
    zone: str,
    day: dt.datetime,
    local_start: str,
    offset: str,
) -> None:
    state, platform = google
    connect(platform_env, platform)
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Ana", zone)
        email = technician.email
        appointment = book(ctx, add_customer(ctx, "Druckluft AG"), technician, day)
        uid, appointment_id = appointment.uid, appointment.id
    drain(worker(platform_db, Clock()))
    assert checked(platform) == ["events.insert"]
    [event] = state.events.values()
    assert event["start"]["dateTime"].endswith(f"T{local_start}{offset}"), event["start"]
    assert event["start"]["timeZone"] == zone and event["end"]["timeZone"] == zone
    assert dt.datetime.fromisoformat(event["start"]["dateTime"]) == day
    assert event["iCalUID"] == uid and event["extendedProperties"]["private"]["fieldcal_uid"] == uid
    assert event["summary"] == "Annual service — Druckluft AG" and "10115 Berlin" in event["location"]
    assert event["attendees"] == [{"email": email, "displayName": "Ana Tester"}]
    assert platform.requests[0].query["sendUpdates"] == "none"
    with domain(platform_db) as ctx:
        scheduling.reschedule(
            ctx,
            scheduling.get_appointment(ctx.session, appointment_id),
            day + dt.timedelta(hours=3),
            day + dt.timedelta(hours=5),
        )
    drain(worker(platform_db, Clock()))
    with domain(platform_db) as ctx:
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, appointment_id))
    drain(worker(platform_db, Clock()))
    assert checked(platform) == ["events.insert", "events.patch", "events.delete"]
    assert dt.datetime.fromisoformat(event["start"]["dateTime"]) == day + dt.timedelta(hours=3)
    assert event["status"] == "cancelled" and len(state.events) == 1


def test_a_timeout_after_commit_does_not_duplicate(
    platform_env: dict[str, str], platform_db: Database, google: tuple[FakeGoogle, FakePlatform]
) -> None:
    state, platform = google
    connect(platform_env, platform)
    state.slow_after_insert_s = 2.5
    clock = Clock()
    work = worker(platform_db, clock, timeout_s=1.0)
    with domain(platform_db) as ctx:
        book(
            ctx,
            add_customer(ctx, "Slow GmbH"),
            add_technician(ctx, "Tim"),
            dt.datetime(2031, 5, 5, 8, tzinfo=dt.UTC),
        )
    drain(work)
    assert len(state.events) == 1, "Google committed the insert; we timed out"
    clock.advance(minutes=5)
    drain(work)
    assert len(state.events) == 1, "the retry found the event by our UID instead of inserting again"
    assert checked(platform) == ["events.insert", "events.list", "events.patch"]


def test_two_workers_refresh_once_and_create_one_event_each(
    platform_env: dict[str, str], platform_db: Database, google: tuple[FakeGoogle, FakePlatform]
) -> None:
    state, platform = google
    connect(platform_env, platform)
    state.access_token = "at-rotated-elsewhere"  # ours (at-1) is now refused with 401
    state.refresh_delay_s = 0.3
    with domain(platform_db) as ctx:
        for day in (6, 7, 8, 9):
            book(
                ctx,
                add_customer(ctx, "Twin KG"),
                add_technician(ctx, "Uli"),
                dt.datetime(2031, 5, day, 8, tzinfo=dt.UTC),
            )
    workers = [worker(platform_db, Clock()) for _ in range(2)]
    for work in workers:
        work.batch_size = 2
    threads = [threading.Thread(target=drain, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    drain(workers[0])
    assert state.refreshes == 1, "two workers, one refresh"
    assert len(state.events) == 4 and len({e["iCalUID"] for e in state.events.values()}) == 4
    form = next(r for r in platform.requests if r.path == "/token").form()
    assert form == {
        "grant_type": "refresh_token",
        "refresh_token": "rt-1",
        "client_id": "cid",
        "client_secret": "cs",
    }


def test_invalid_grant_asks_for_reconnect_and_keeps_pushes(
    platform_env: dict[str, str], platform_db: Database, google: tuple[FakeGoogle, FakePlatform]
) -> None:
    state, platform = google
    integration_id = connect(platform_env, platform)
    state.access_token, state.grant_revoked = "at-other", True
    with domain(platform_db) as ctx:
        book(
            ctx,
            add_customer(ctx, "Revoked AG"),
            add_technician(ctx, "Vera"),
            dt.datetime(2031, 5, 12, 8, tzinfo=dt.UTC),
        )
    drain(worker(platform_db, Clock()))
    shown = json.loads(run(platform_env, "integration", "show", str(integration_id), "--json"))
    assert shown["status"] == "needs_reconnect" and "invalid_grant" in shown["last_error"]
    assert shown["pending"] == 1 and shown["dead_letters"] == 0 and state.events == {}


def test_connect_with_pkce(
    platform_env: dict[str, str], platform_db: Database, google: tuple[FakeGoogle, FakePlatform]
) -> None:
    _state, platform = google
    integration_id = add(
        platform_env,
        "google-calendar",
        "--set",
        f"base_url={platform.url}",
        "--set",
        f"token_url={platform.url}/token",
        "--set",
        f"auth_url={platform.url}/auth",
        "--secret",
        "client_id=cid",
        "--secret",
        "client_secret=cs",
    )
    url = run(platform_env, "integration", "connect", str(integration_id)).strip()
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert url.startswith(f"{platform.url}/auth?") and query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == f"{BASE_URL}/integrations/oauth/callback"
    assert query["access_type"] == "offline" and query["client_id"] == "cid"
    client = create_app(settings=load_settings(platform_env)).test_client()
    assert (
        client.get(f"/integrations/oauth/callback?state={query['state']}x&code=the-code").status_code == 400
    )
    answer = client.get(f"/integrations/oauth/callback?state={query['state']}&code=the-code")
    assert answer.status_code == 200, answer.data
    form = next(r for r in platform.requests if r.path == "/token").form()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest()).rstrip(b"=")
    assert challenge.decode() == query["code_challenge"], "the verifier matches the challenge we sent"
    again = client.get(f"/integrations/oauth/callback?state={query['state']}&code=the-code")
    assert again.status_code == 400, "a state is good for one sign-in"


def test_moves_in_google_are_read_back_through_the_domain(
    platform_env: dict[str, str], platform_db: Database, google: tuple[FakeGoogle, FakePlatform]
) -> None:
    state, platform = google
    integration_id = connect(platform_env, platform)
    start = dt.datetime(2031, 6, 2, 8, tzinfo=dt.UTC)
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Wim")
        first = book(ctx, add_customer(ctx, "Erst AG"), technician, start)
        second = book(ctx, add_customer(ctx, "Zweit AG"), technician, start + dt.timedelta(hours=4))
        first_id, second_id = first.id, second.id
    work = worker(platform_db, Clock())
    drain(work)
    run(platform_env, "integration", "pull", str(integration_id))
    drain(work)  # the first read-back: a full listing, nothing to change
    ev_first, ev_second = (
        e["id"] for e in sorted(state.events.values(), key=lambda e: e["start"]["dateTime"])
    )
    state.move(ev_first, "2031-06-02T11:00:00+02:00", "2031-06-02T13:00:00+02:00")  # 09:00-11:00 UTC: free
    state.move(ev_second, "2031-06-02T10:30:00+02:00", "2031-06-02T12:30:00+02:00")  # onto the first: refused
    pushes_before = len([r for r in platform.requests if r.method == "PATCH"])
    client = create_app(settings=load_settings(platform_env)).test_client()
    notified = client.post(
        f"/hooks/google-calendar/{integration_id}",
        headers={
            "X-Goog-Channel-Token": "chan-tok",
            "X-Goog-Resource-State": "exists",
            "X-Goog-Channel-ID": "c1",
        },
    )
    assert notified.status_code == 200
    assert (
        client.post(
            f"/hooks/google-calendar/{integration_id}",
            headers={"X-Goog-Channel-Token": "wrong", "X-Goog-Resource-State": "exists"},
        ).status_code
        == 401
    )
    drain(work)
    moved = appointment_of(platform_db, first_id)
    assert moved.starts_at == dt.datetime(2031, 6, 2, 9, tzinfo=dt.UTC)
    kept = appointment_of(platform_db, second_id)
    assert kept.starts_at == start + dt.timedelta(hours=4), "the overlapping move was refused"
    reverted = state.events[ev_second]
    assert dt.datetime.fromisoformat(reverted["start"]["dateTime"]) == kept.starts_at
    assert reverted["description"].startswith("This visit was not moved:")
    patches = [r for r in platform.requests if r.method == "PATCH"][pushes_before:]
    assert len(patches) == 1, "the accepted move is not pushed back to Google; the refused one is reverted"
    with platform_db.read() as session:
        actors = session.scalars(
            select(AuditEntry.actor).where(
                AuditEntry.entity_id == str(first_id), AuditEntry.action == "appointment.reschedule"
            )
        )
        assert list(actors) == [f"integration:{integration_id}"]
    checked(platform)
    state.stale_tokens.add(state.sync_token())
    run(platform_env, "integration", "pull", str(integration_id))
    events_before = len(state.events)
    drain(work)
    assert len(state.events) == events_before, "a full resync after 410 creates nothing"
    assert appointment_of(platform_db, first_id).starts_at == moved.starts_at


def test_remote_service_types_get_a_meet_link(
    platform_env: dict[str, str], platform_db: Database, google: tuple[FakeGoogle, FakePlatform]
) -> None:
    state, platform = google
    connect(platform_env, platform, "--set", "meet=true")
    with domain(platform_db) as ctx:
        remote = ServiceType(
            slug=f"video-{id(state)}", name="Video triage", duration_minutes=30, remote=True
        )
        ctx.session.add(remote)
        ctx.session.flush()
        technician = add_technician(ctx, "Xia")
        job_customer = add_customer(ctx, "Remote Ltd")
        appointment = book(ctx, job_customer, technician, dt.datetime(2031, 6, 9, 8, tzinfo=dt.UTC))
        appointment.service_type_id = remote.id
        ctx.session.flush()
        appointment_id = appointment.id
    drain(worker(platform_db, Clock()))
    [request] = [r for r in platform.requests if r.method == "POST"]
    assert request.query["conferenceDataVersion"] == "1"
    assert request.json()["conferenceData"]["createRequest"]["conferenceSolutionKey"] == {
        "type": "hangoutsMeet"
    }
    checked(platform)
    with platform_db.read() as session:
        assert integrations.join_url(session, appointment_id) == "https://meet.google.com/ev1-abc"
    issued = json.loads(run(platform_env, "link", "new", "share", f"appointment:{appointment_id}", "--json"))
    page = create_app(settings=load_settings(platform_env)).test_client().get(
        issued["url"].removeprefix(BASE_URL))
    assert page.status_code == 200 and b'href="https://meet.google.com/ev1-abc"' in page.data
