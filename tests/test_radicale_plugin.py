"""The Radicale plugins in process: werkzeug's test client against the composed WSGI app.

Each module run uses one seeded database (SQLite, and PostgreSQL when it is
reachable); tests that change data make a technician of their own.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import io
import sys
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import icalendar
import pytest
from davkit import calendar_query, parse_multistatus, sync_collection, sync_token_of
from icalkit import prop_datetime
from live import AUDIT_KEY
from seeding import (
    WEEK,
    Account,
    Seed,
    at,
    domain,
    fresh_technician,
    items_of,
    personal_event,
    row_counts,
)
from sqlalchemy import select
from werkzeug.test import Client, TestResponse

from plugins.radicale.storage import Storage
from server import calendars, changes, directory, scheduling
from server.config import Settings, load_settings
from server.db import Database, get_database
from server.models import (
    Appointment,
    AuditEntry,
    Collection,
    CollectionKind,
    Credential,
    PartStat,
    Role,
)
from server.web.guards import BodyLimit, XmlGuard

REPO = Path(__file__).resolve().parents[1]
MAX_BODY = 64 * 1024
DAY = dt.timedelta(days=1)
ICS = {"Content-Type": "text/calendar; charset=utf-8"}
XML = {"Content-Type": "application/xml; charset=utf-8"}


def load_wsgi() -> ModuleType:
    """wsgi.py lives at the top of the repository, next to radicale.config."""
    if "wsgi" not in sys.modules:
        spec = importlib.util.spec_from_file_location("wsgi", REPO / "wsgi.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["wsgi"] = module
        spec.loader.exec_module(module)
    return sys.modules["wsgi"]


def settings_for(url: str, instance: Path, **extra: str) -> Settings:
    return load_settings({
        "FIELDCAL_INSTANCE": str(instance),
        "FIELDCAL_DATABASE_URL": url,
        "FIELDCAL_SECRET_KEYS": "test-key-for-the-plugin-tests",
        "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
        "FIELDCAL_ORGANIZER_EMAIL": "dispatch@example.test",
        "FIELDCAL_MAX_BODY_BYTES": str(MAX_BODY),
        "FIELDCAL_DAV_AUTH_DELAY": "0",
        "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100",
        **extra,
    })


class Dav:
    """A logged-in (or anonymous) caller of the composed app."""

    def __init__(self, client: Client, account: Account | None) -> None:
        self.client = client
        self.account = account

    def __call__(self, method: str, path: str, body: str | bytes | None = None,
                 **headers: str) -> TestResponse:
        all_headers = {k.replace("_", "-"): v for k, v in headers.items()}
        if self.account is not None:
            token = f"{self.account.login}:{self.account.password}".encode()
            all_headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.client.open(urllib.parse.quote(path), method=method, headers=all_headers,
                                data=data)


@pytest.fixture(scope="module")
def app(seed: Seed, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_wsgi().create_wsgi_app(settings_for(database_url, tmp_path_factory.mktemp("inst")))


@pytest.fixture(scope="module")
def client(app: Any) -> Client:
    return Client(app)


@pytest.fixture(scope="module")
def db(database_url: str, seed: Seed) -> Database:
    return get_database(database_url)


def as_user(client: Client, account: Account | None) -> Dav:
    return Dav(client, account)


def hrefs(response: TestResponse) -> set[str]:
    return {r.href for r in parse_multistatus(response.data)}


def fresh(db: Database, seed: Seed, prefix: str, day: int = 14) -> tuple[Account, Any]:
    made = fresh_technician(db, seed, prefix, [(at(day, 9), at(day, 10))])
    return made.account, made.booked[0]


def vevent(text: str) -> icalendar.cal.Component:
    return next(iter(icalendar.Calendar.from_ical(text).walk("VEVENT")))


def collection_row(db: Database, path: str) -> Collection:
    with db.read() as session:
        return calendars.require_collection(session, path)


# --------------------------------------------------------------------------- composition


def test_storage_plugins_share_one_database(app: Any, database_url: str) -> None:
    dav = app.app.app.app.app.mounts["/dav"].app  # ClientAddress > BodyLimit > XmlGuard > ...
    assert isinstance(dav._storage, Storage)
    assert dav._storage.database is get_database(database_url)
    assert dav._sharing._storage.database is dav._storage.database
    assert dav.configuration.get("auth", "type") == "plugins.radicale.auth"


def test_importing_wsgi_has_no_side_effects() -> None:
    module = load_wsgi()
    assert not [name for name, value in vars(module).items()
                if callable(value) and getattr(value, "__module__", "") == "flask.app"]
    assert callable(module.create_wsgi_app)


def test_well_known_redirects(client: Client) -> None:
    for method in ("GET", "PROPFIND"):
        response = client.open("/.well-known/caldav", method=method)
        assert response.status_code == 301
        assert response.headers["Location"] == "/dav/"


# --------------------------------------------------------------------------- discovery, rights


def test_anonymous_and_wrong_password_get_401(client: Client, seed: Seed) -> None:
    assert as_user(client, None)("PROPFIND", "/dav/alice/", Depth="0").status_code == 401
    alice = seed.technicians["alice"]
    wrong = Account(alice.login, "not-the-password", alice.email, alice.role)
    assert as_user(client, wrong)("PROPFIND", "/dav/alice/", Depth="0").status_code == 401


def test_root_lists_only_what_the_technician_may_see(client: Client, seed: Seed) -> None:
    response = as_user(client, seed.technicians["alice"])("PROPFIND", "/dav/", Depth="1")
    assert response.status_code == 207
    assert hrefs(response) == {"/dav/", "/dav/alice/", "/dav/team-north/"}


def test_dispatcher_sees_every_home(client: Client, seed: Seed) -> None:
    response = as_user(client, seed.dispatcher)("PROPFIND", "/dav/", Depth="1")
    found = hrefs(response)
    assert {"/dav/alice/", "/dav/bob/", "/dav/carol/", "/dav/dispatch/", "/dav/team-north/",
            f"/dav/customer-{seed.customer_ids[0]}/"} <= found


def test_home_holds_jobs_personal_the_team_view_and_the_customers(client: Client, seed: Seed) -> None:
    response = as_user(client, seed.technicians["alice"])("PROPFIND", "/dav/alice/", Depth="1")
    assert hrefs(response) == {"/dav/alice/", "/dav/alice/jobs/", "/dav/alice/personal/",
                               "/dav/alice/team-north~schedule/", "/dav/alice/customers/"}
    carol = as_user(client, seed.technicians["carol"])("PROPFIND", "/dav/carol/", Depth="1")
    assert hrefs(carol) == {"/dav/carol/", "/dav/carol/jobs/", "/dav/carol/personal/",
                            "/dav/carol/customers/"}


def test_other_people_and_customer_views_are_refused(client: Client, seed: Seed) -> None:
    carol = as_user(client, seed.technicians["carol"])
    customer = f"/dav/customer-{seed.customer_ids[0]}/appointments/"
    for path in ("/dav/alice/personal/", "/dav/alice/jobs/", "/dav/team-north/schedule/",
                 customer, "/dav/alice/personal/dentist.ics"):
        for method in ("GET", "PROPFIND"):
            assert carol(method, path, Depth="0").status_code in (403, 404), (path, method)
    assert as_user(client, seed.dispatcher)("GET", customer).status_code == 200


def test_path_traversal_does_not_escape(client: Client, seed: Seed) -> None:
    carol = seed.technicians["carol"]
    token = base64.b64encode(f"{carol.login}:{carol.password}".encode()).decode()
    for raw in ("/dav/carol/../alice/personal/dentist.ics",
                "/dav/carol/personal/%2e%2e/%2e%2e/alice/personal/dentist.ics",
                "/dav/carol/personal/..%2f..%2falice%2fpersonal%2fdentist.ics"):
        response = client.open(raw, method="GET", headers={"Authorization": f"Basic {token}"})
        assert response.status_code in (400, 403, 404), raw
        assert b"Dentist" not in response.data


def test_team_members_read_the_team_view(client: Client, seed: Seed) -> None:
    response = as_user(client, seed.technicians["bob"])(
        "REPORT", "/dav/team-north/schedule/", calendar_query(WEEK - 7 * DAY, WEEK + 14 * DAY),
        Depth="1", **XML)
    assert response.status_code == 207
    uids = {vevent(r.calendar_data)["UID"] for r in parse_multistatus(response.data)}
    assert {b.uid for b in seed.jobs["alice"] + seed.jobs["bob"]} == uids


def test_revoked_password_stops_working(client: Client, db: Database, seed: Seed) -> None:
    account, _ = fresh(db, seed, "revoke")
    dav = as_user(client, account)
    assert dav("PROPFIND", f"/dav/{account.login}/", Depth="0").status_code == 207
    with domain(db) as ctx:
        user = directory.find_user(ctx.session, account.login)
        credential = ctx.session.scalars(
            select(Credential).where(Credential.user_id == user.id)).one()
        directory.revoke_password(ctx, credential.id)
    assert dav("PROPFIND", f"/dav/{account.login}/", Depth="0").status_code == 401


# --------------------------------------------------------------------------- reading


def test_item_and_collection_etags(client: Client, db: Database, seed: Seed) -> None:
    alice = as_user(client, seed.technicians["alice"])
    booked = seed.jobs["alice"][0]
    response = alice("GET", f"/dav/alice/jobs/{booked.href}")
    assert response.status_code == 200
    stored = items_of(db, "alice/jobs")[booked.href]
    assert response.headers["ETag"] == stored.etag
    assert response.get_data(as_text=True) == stored.text
    row = collection_row(db, "alice/jobs")
    listing = alice("GET", "/dav/alice/jobs/")
    assert listing.headers["ETag"] == f'"{row.id}-{row.sync_seq}"'


def test_whole_calendar_get_concatenates_stored_items(
    client: Client, db: Database, seed: Seed
) -> None:
    account, _ = fresh(db, seed, "wholecal")
    dav = as_user(client, account)
    zone = (
        "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
        "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"
        "END:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nTZOFFSETFROM:+0100\r\n"
        "TZOFFSETTO:+0200\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n"
        "END:VTIMEZONE\r\n"
    )
    for n in (1, 2):
        text = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n" + zone +
            f"BEGIN:VEVENT\r\nUID:tz-{n}@example.test\r\nDTSTAMP:20310101T000000Z\r\n"
            f"DTSTART;TZID=Europe/Berlin:2031031{n}T090000\r\n"
            f"DTEND;TZID=Europe/Berlin:2031031{n}T100000\r\nSUMMARY:Zone {n}\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        assert dav("PUT", f"/dav/{account.login}/personal/tz-{n}.ics", text, **ICS).status_code == 201
    response = dav("GET", f"/dav/{account.login}/personal/")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.count("BEGIN:VTIMEZONE") == 1
    assert "X-WR-CALNAME:Personal" in body
    calendar = icalendar.Calendar.from_ical(body)
    assert {str(e["UID"]) for e in calendar.walk("VEVENT")} == {"tz-1@example.test",
                                                               "tz-2@example.test"}
    jobs = dav("GET", f"/dav/{account.login}/jobs/").get_data(as_text=True)
    assert len(icalendar.Calendar.from_ical(jobs).walk("VEVENT")) == 1


def test_time_range_query_and_recurrence_expansion(client: Client, seed: Seed) -> None:
    alice = as_user(client, seed.technicians["alice"])
    week = alice("REPORT", "/dav/alice/jobs/", calendar_query(WEEK, WEEK + 7 * DAY),
                 Depth="1", **XML)
    assert week.status_code == 207
    uids = {str(vevent(r.calendar_data)["UID"]) for r in parse_multistatus(week.data)}
    assert uids == seed.week_uids("alice")
    expanded = alice("REPORT", "/dav/alice/personal/",
                     calendar_query(WEEK, WEEK + 21 * DAY, expand=True), Depth="1", **XML)
    assert expanded.status_code == 207
    by_href = {r.href.rsplit("/", 1)[-1]: r for r in parse_multistatus(expanded.data)}
    assert set(by_href) == {seed.recurring_href, "dentist.ics"}
    events = icalendar.Calendar.from_ical(by_href[seed.recurring_href].calendar_data).walk(
        "VEVENT")
    assert sorted(prop_datetime(e, "DTSTART") for e in events) == [at(1, 7), at(8, 7), at(15, 7)]
    outside = alice("REPORT", "/dav/alice/personal/",
                    calendar_query(WEEK + 60 * DAY, WEEK + 67 * DAY), Depth="1", **XML)
    assert hrefs(outside) == set()


def test_multiget_reports_missing_hrefs(client: Client, seed: Seed) -> None:
    alice = as_user(client, seed.technicians["alice"])
    body = (
        '<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget xmlns:D="DAV:" '
        'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop>'
        "<D:href>/dav/alice/personal/dentist.ics</D:href>"
        "<D:href>/dav/alice/personal/nothing-here.ics</D:href></C:calendar-multiget>"
    )
    response = alice("REPORT", "/dav/alice/personal/", body, Depth="1", **XML)
    status = {r.href: r.status for r in parse_multistatus(response.data)}
    assert status == {"/dav/alice/personal/dentist.ics": 200,
                      "/dav/alice/personal/nothing-here.ics": 404}


# --------------------------------------------------------------------------- sync


def test_sync_delta_is_exactly_the_changed_hrefs(client: Client, db: Database, seed: Seed) -> None:
    account, _ = fresh(db, seed, "sync")
    dav = as_user(client, account)
    path = f"/dav/{account.login}/personal/"
    for name in ("a", "b", "c"):
        text = personal_event(f"{name}-{account.login}@example.test", name, at(20, 9), at(20, 10))
        assert dav("PUT", f"{path}{name}.ics", text, **ICS).status_code == 201
    first = dav("REPORT", path, sync_collection(), Depth="1", **XML)
    assert {h.rsplit("/", 1)[-1] for h in hrefs(first)} == {"a.ics", "b.ics", "c.ics"}
    token = sync_token_of(first.data)
    edited = personal_event(f"b-{account.login}@example.test", "b2", at(20, 9), at(20, 10))
    assert dav("PUT", f"{path}b.ics", edited, **ICS).status_code == 204
    assert dav("DELETE", f"{path}c.ics").status_code == 200
    delta = dav("REPORT", path, sync_collection(token), Depth="1", **XML)
    statuses = {r.href.rsplit("/", 1)[-1]: r.status for r in parse_multistatus(delta.data)}
    assert statuses == {"b.ics": 200, "c.ics": 404}
    again = dav("REPORT", path, sync_collection(sync_token_of(delta.data)), Depth="1", **XML)
    assert hrefs(again) == set()


def test_bad_and_expired_sync_tokens(client: Client, db: Database, seed: Seed) -> None:
    account, _ = fresh(db, seed, "expire")
    dav = as_user(client, account)
    path = f"/dav/{account.login}/personal/"
    token = sync_token_of(dav("REPORT", path, sync_collection(), Depth="1", **XML).data)
    other = collection_row(db, f"{account.login}/jobs")
    for bad in ("http://radicale.org/ns/sync/x", "nonsense", f"{token[:-1]}999",
                token.rsplit("/", 1)[0] + f"/{other.id}-0"):
        response = dav("REPORT", path, sync_collection(bad), Depth="1", **XML)
        assert response.status_code == 403 and b"valid-sync-token" in response.data, bad
    for n in range(3):
        text = personal_event(f"e{n}-{account.login}@example.test", "e", at(21, 9), at(21, 10))
        dav("PUT", f"{path}e{n}.ics", text, **ICS)
    with domain(db) as ctx:
        row = calendars.require_collection(ctx.session, f"{account.login}/personal")
        assert changes.prune(ctx.session, row, keep=1, older_than=dt.timedelta(0)) > 0
    response = dav("REPORT", path, sync_collection(token), Depth="1", **XML)
    assert response.status_code == 403 and b"valid-sync-token" in response.data


# --------------------------------------------------------------------------- personal writes


def test_personal_put_if_match_and_uid_conflict(client: Client, db: Database, seed: Seed) -> None:
    account, _ = fresh(db, seed, "ifmatch")
    dav = as_user(client, account)
    path = f"/dav/{account.login}/personal/note.ics"
    uid = f"note-{account.login}@example.test"
    created = dav("PUT", path, personal_event(uid, "v1", at(22, 9), at(22, 10)), **ICS)
    assert created.status_code == 201
    etag = created.headers["ETag"]
    assert etag == items_of(db, f"{account.login}/personal")["note.ics"].etag
    v2 = dav("PUT", path, personal_event(uid, "v2", at(22, 9), at(22, 10)), If_Match=etag, **ICS)
    assert v2.status_code == 204
    before = row_counts(db)
    stale = dav("PUT", path, personal_event(uid, "v3", at(22, 9), at(22, 10)), If_Match=etag,
                **ICS)
    assert stale.status_code == 412
    assert dav("PUT", path, personal_event(uid, "v3", at(22, 9), at(22, 10)), If_None_Match="*",
               **ICS).status_code == 412
    assert dav("DELETE", path, If_Match=etag).status_code == 412
    conflict = dav("PUT", f"/dav/{account.login}/personal/other.ics",
                   personal_event(uid, "dup", at(22, 9), at(22, 10)), **ICS)
    assert conflict.status_code == 409
    assert b"no-uid-conflict" in conflict.data
    assert row_counts(db) == before
    assert "SUMMARY:v2" in items_of(db, f"{account.login}/personal")["note.ics"].text


def test_malformed_icalendar_is_400_with_a_reason(client: Client, db: Database, seed: Seed) -> None:
    account, _ = fresh(db, seed, "malformed")
    dav = as_user(client, account)
    before = row_counts(db)
    cases = {
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:2031\r\n": "",
        "this is not a calendar": "",
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTODO\r\nSUMMARY:no uid\r\n"
        "END:VTODO\r\nBEGIN:VEVENT\r\nUID:y\r\nDTSTART:20310101T000000Z\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n": "",
    }
    for text in cases:
        response = dav("PUT", f"/dav/{account.login}/personal/bad.ics", text, **ICS)
        assert response.status_code == 400, text
        reason = response.get_data(as_text=True).strip()
        assert reason and reason != "Bad Request", reason
    assert row_counts(db) == before


def test_unicode_href_round_trip(client: Client, db: Database, seed: Seed) -> None:
    account, _ = fresh(db, seed, "unicode")
    dav = as_user(client, account)
    href = "Zahnärzt événement 日本.ics"
    path = f"/dav/{account.login}/personal/{href}"
    text = personal_event(f"u-{account.login}@example.test", "Café", at(23, 9), at(23, 10))
    assert dav("PUT", path, text, **ICS).status_code == 201
    assert href in items_of(db, f"{account.login}/personal")
    assert "Café" in dav("GET", path).get_data(as_text=True)
    listing = dav("PROPFIND", f"/dav/{account.login}/personal/", Depth="1")
    assert f"/dav/{account.login}/personal/{href}" in hrefs(listing)
    assert dav("DELETE", path).status_code == 200
    assert href not in items_of(db, f"{account.login}/personal")


def test_mkcalendar_proppatch_move_and_delete(client: Client, db: Database, seed: Seed) -> None:
    account, booked = fresh(db, seed, "mkcal")
    dav = as_user(client, account)
    home = f"/dav/{account.login}"
    body = (
        '<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" '
        'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>Time off'
        "</D:displayname></D:prop></D:set></C:mkcalendar>"
    )
    assert dav("MKCALENDAR", f"{home}/time-off/", body, **XML).status_code == 201
    row = collection_row(db, f"{account.login}/time-off")
    assert row.kind == CollectionKind.CALENDAR
    assert row.props["D:displayname"] == "Time off"
    assert as_user(client, seed.technicians["carol"])(
        "MKCALENDAR", f"{home}/sneaky/", body, **XML).status_code == 403

    patch = (
        '<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
        "<D:displayname>Holidays</D:displayname></D:prop></D:set></D:propertyupdate>"
    )
    assert dav("PROPPATCH", f"{home}/time-off/", patch, **XML).status_code == 207
    assert collection_row(db, f"{account.login}/time-off").props["D:displayname"] == "Holidays"

    text = personal_event(f"trip-{account.login}@example.test", "Trip", at(24, 9), at(24, 17))
    assert dav("PUT", f"{home}/personal/trip.ics", text, **ICS).status_code == 201
    moved = dav("MOVE", f"{home}/personal/trip.ics",
                Destination=f"http://localhost{home}/time-off/trip.ics")
    assert moved.status_code == 201, moved.get_data(as_text=True)
    assert "trip.ics" not in items_of(db, f"{account.login}/personal")
    assert "trip.ics" in items_of(db, f"{account.login}/time-off")
    job_move = dav("MOVE", f"{home}/jobs/{booked.href}",
                   Destination=f"http://localhost{home}/personal/{booked.href}")
    assert job_move.status_code == 403
    assert b"jobs calendar" in job_move.data.lower()

    kept = dav("DELETE", f"{home}/personal/")
    assert kept.status_code == 403 and b"cannot be deleted" in kept.data
    assert dav("DELETE", f"{home}/time-off/").status_code == 200
    with db.read() as session:
        assert calendars.get_collection(session, f"{account.login}/time-off") is None


# --------------------------------------------------------------------------- job writes


def test_new_event_in_jobs_is_refused(client: Client, db: Database, seed: Seed) -> None:
    account, _ = fresh(db, seed, "newjob")
    before = row_counts(db)
    response = as_user(client, account)(
        "PUT", f"/dav/{account.login}/jobs/mine.ics",
        personal_event("mine@example.test", "Mine", at(25, 9), at(25, 10)), **ICS)
    assert response.status_code == 403
    assert b"personal" in response.data
    assert row_counts(db) == before


def test_job_edits(client: Client, db: Database, seed: Seed) -> None:
    account, booked = fresh(db, seed, "jobedit", day=26)
    dav = as_user(client, account)
    path = f"/dav/{account.login}/jobs/{booked.href}"
    original = dav("GET", path).get_data(as_text=True)

    renamed = original.replace("SUMMARY:", "SUMMARY:Free beer ")
    response = dav("PUT", path, renamed, **ICS)
    assert response.status_code == 204 and "ETag" not in response.headers
    assert dav("GET", path).get_data(as_text=True) == original

    event = vevent(original)
    event["ATTENDEE"].params["PARTSTAT"] = "ACCEPTED"
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//t//EN")
    calendar.add("version", "2.0")
    calendar.add_component(event)
    assert dav("PUT", path, calendar.to_ical().decode(), **ICS).status_code == 204
    with db.read() as session:
        appointment = session.get(Appointment, booked.appointment_id)
        assert appointment is not None and appointment.partstat == PartStat.ACCEPTED
        entries = session.scalars(select(AuditEntry).where(
            AuditEntry.entity == "appointment", AuditEntry.action == "appointment.accept",
            AuditEntry.entity_id == str(booked.appointment_id))).all()
        assert [(e.actor, e.channel) for e in entries] == [(account.login, "caldav")]


def test_overlapping_move_is_409_and_changes_nothing(
    client: Client, db: Database, seed: Seed
) -> None:
    made = fresh_technician(db, seed, "overlap", [(at(27, 9), at(27, 10)), (at(27, 11), at(27, 12))])
    dav = as_user(client, made.account)
    first, _second = made.booked
    path = f"/dav/{made.account.login}/jobs/{first.href}"
    original = dav("GET", path).get_data(as_text=True)
    moved = original.replace("DTSTART:20310330T090000Z", "DTSTART:20310330T110000Z").replace(
        "DTEND:20310330T100000Z", "DTEND:20310330T120000Z")
    assert moved != original
    before = row_counts(db)
    response = dav("PUT", path, moved, **ICS)
    assert response.status_code == 409
    assert b"slot" in response.data.lower()
    assert row_counts(db) == before
    assert dav("GET", path).get_data(as_text=True) == original


def test_delete_of_a_job_declines_it(client: Client, db: Database, seed: Seed) -> None:
    account, booked = fresh(db, seed, "decline", day=28)
    dav = as_user(client, account)
    assert dav("DELETE", f"/dav/{account.login}/jobs/{booked.href}").status_code == 200
    with db.read() as session:
        appointment = scheduling.get_appointment(session, booked.appointment_id)
        assert appointment.technician_id is None
        assert appointment.status != "cancelled"
    assert booked.href not in items_of(db, f"{account.login}/jobs")
    assert dav("GET", f"/dav/{account.login}/jobs/{booked.href}").status_code == 404


def test_views_refuse_writes_with_a_message(client: Client, db: Database, seed: Seed) -> None:
    view = "/dav/team-north/schedule/"
    existing = next(iter(items_of(db, "team-north/schedule")))
    before = row_counts(db)
    text = personal_event("view@example.test", "x", at(29, 9), at(29, 10))
    bob = as_user(client, seed.technicians["bob"])
    assert bob("PUT", f"{view}new.ics", text, **ICS).status_code == 403
    assert bob("DELETE", f"{view}{existing}").status_code == 403
    dispatcher = as_user(client, seed.dispatcher)
    refused = dispatcher("PUT", f"{view}new.ics", text, **ICS)
    assert refused.status_code == 403 and b"read-only view" in refused.data
    assert dispatcher("DELETE", f"{view}{existing}").status_code == 403
    assert row_counts(db) == before


# --------------------------------------------------------------------------- aliases in homes

PROPFIND_NAMES = (
    '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:" '
    'xmlns:CS="http://calendarserver.org/ns/"><D:prop><D:resourcetype/><D:displayname/>'
    "<D:getetag/><CS:getctag/><D:sync-token/><D:current-user-privilege-set/></D:prop>"
    "</D:propfind>"
)


def listing(dav: Dav, path: str) -> dict[str, dict[str, Any]]:
    """href -> {displayname, etag, ctag, token, write} of a depth-1 PROPFIND."""
    import xml.etree.ElementTree as ET

    response = dav("PROPFIND", path, PROPFIND_NAMES, Depth="1", **XML)
    assert response.status_code == 207, response.status_code
    found: dict[str, dict[str, Any]] = {}
    for node in ET.fromstring(response.data).iter("{DAV:}response"):
        href = urllib.parse.unquote(node.findtext("{DAV:}href", default=""))
        found[href] = {
            "displayname": node.findtext(".//{DAV:}displayname") or None,
            "etag": node.findtext(".//{DAV:}getetag"),
            "ctag": node.findtext(".//{http://calendarserver.org/ns/}getctag"),
            "token": node.findtext(".//{DAV:}sync-token"),
            "write": node.find(".//{DAV:}privilege/{DAV:}write-content") is not None,
        }
    return found


def active_technicians(db: Database) -> dict[str, str]:
    from server.models import User

    with db.read() as session:
        return dict(session.execute(select(User.login, User.name).where(
            User.role == Role.TECHNICIAN, User.active.is_(True))).all())


def team_names(db: Database) -> dict[str, str]:
    from server.models import Team

    with db.read() as session:
        return dict(session.execute(select(Team.slug, Team.name)).all())


def test_dispatcher_home_lists_every_technicians_calendars_and_the_teams(
    client: Client, db: Database, seed: Seed
) -> None:
    found = listing(as_user(client, seed.dispatcher), "/dav/dispatch/")
    expected: dict[str, str | None] = {"/dav/dispatch/": None}
    for login, name in active_technicians(db).items():
        expected[f"/dav/dispatch/{login}~jobs/"] = f"{name}: Jobs"
        expected[f"/dav/dispatch/{login}~personal/"] = f"{name}: Personal"
    for slug, name in team_names(db).items():
        expected[f"/dav/dispatch/team-{slug}~schedule/"] = f"{name} schedule"
    assert {href: entry["displayname"] for href, entry in found.items()} == expected
    assert {"/dav/dispatch/alice~jobs/", "/dav/dispatch/carol~personal/",
            "/dav/dispatch/team-north~schedule/"} <= set(found)
    assert not any("customer-" in href for href in found)
    # writable where the target is, read-only for views
    assert found["/dav/dispatch/bob~jobs/"]["write"]
    assert found["/dav/dispatch/bob~personal/"]["write"]
    assert not found["/dav/dispatch/team-north~schedule/"]["write"]
    # by URL: a customer view in the dispatcher's home, read-only
    customer = f"/dav/dispatch/customer-{seed.customer_ids[0]}~appointments/"
    by_url = listing(as_user(client, seed.dispatcher), customer)
    assert by_url[customer]["displayname"] == "Acme Compressed Air: appointments"
    assert not by_url[customer]["write"]


def test_technician_home_lists_the_team_view_read_only(client: Client, seed: Seed) -> None:
    found = listing(as_user(client, seed.technicians["bob"]), "/dav/bob/")
    assert {href: entry["displayname"] for href, entry in found.items()} == {
        "/dav/bob/": None, "/dav/bob/jobs/": "Jobs", "/dav/bob/personal/": "Personal",
        "/dav/bob/team-north~schedule/": "North team schedule", "/dav/bob/customers/": "Customers"}
    assert found["/dav/bob/jobs/"]["write"]
    assert not found["/dav/bob/team-north~schedule/"]["write"]
    assert not found["/dav/bob/customers/"]["write"]


def test_alias_is_its_target(client: Client, db: Database, seed: Seed) -> None:
    dispatcher = as_user(client, seed.dispatcher)
    for alias, target in (("/dav/dispatch/alice~jobs/", "/dav/alice/jobs/"),
                          ("/dav/dispatch/alice~personal/", "/dav/alice/personal/"),
                          ("/dav/dispatch/team-north~schedule/", "/dav/team-north/schedule/")):
        through, direct = listing(dispatcher, alias), listing(dispatcher, target)
        assert {h.removeprefix(alias) for h in through} == {h.removeprefix(target) for h in direct}
        for key in ("etag", "ctag", "token"):
            assert through[alias][key] == direct[target][key], (alias, key)
        row = collection_row(db, target.removeprefix("/dav/").rstrip("/"))
        assert through[alias]["etag"] == f'"{row.id}-{row.sync_seq}"'
        for href in direct:
            if href != target:
                item = href.removeprefix(target)
                assert through[alias + item]["etag"] == direct[href]["etag"]
        whole = dispatcher("GET", alias)
        assert whole.status_code == 200 and whole.headers["ETag"] == through[alias]["etag"]
        uids = {str(e["UID"]) for e in icalendar.Calendar.from_ical(whole.data).walk("VEVENT")}
        same = {str(e["UID"])
                for e in icalendar.Calendar.from_ical(dispatcher("GET", target).data).walk("VEVENT")}
        assert uids == same and uids


def test_queries_through_an_alias(client: Client, db: Database, seed: Seed) -> None:
    dispatcher = as_user(client, seed.dispatcher)
    week = dispatcher("REPORT", "/dav/dispatch/alice~jobs/", calendar_query(WEEK, WEEK + 7 * DAY),
                      Depth="1", **XML)
    assert week.status_code == 207
    responses = parse_multistatus(week.data)
    assert {r.href for r in responses} == {
        f"/dav/dispatch/alice~jobs/{uid}.ics" for uid in seed.week_uids("alice")}
    assert {str(vevent(r.calendar_data)["UID"]) for r in responses} == seed.week_uids("alice")
    expanded = dispatcher("REPORT", "/dav/dispatch/alice~personal/",
                          calendar_query(WEEK, WEEK + 21 * DAY, expand=True), Depth="1", **XML)
    by_href = {r.href: r for r in parse_multistatus(expanded.data)}
    breakfast = f"/dav/dispatch/alice~personal/{seed.recurring_href}"
    assert set(by_href) == {breakfast, "/dav/dispatch/alice~personal/dentist.ics"}
    events = icalendar.Calendar.from_ical(by_href[breakfast].calendar_data).walk("VEVENT")
    assert sorted(prop_datetime(e, "DTSTART") for e in events) == [at(1, 7), at(8, 7), at(15, 7)]
    multiget = (
        '<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget xmlns:D="DAV:" '
        'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop>'
        f"<D:href>/dav/alice/team-north~schedule/{seed.jobs['bob'][0].href}</D:href>"
        "<D:href>/dav/alice/team-north~schedule/nothing.ics</D:href></C:calendar-multiget>"
    )
    alice = as_user(client, seed.technicians["alice"])
    got = alice("REPORT", "/dav/alice/team-north~schedule/", multiget, Depth="1", **XML)
    status = {r.href: r.status for r in parse_multistatus(got.data)}
    assert status == {f"/dav/alice/team-north~schedule/{seed.jobs['bob'][0].href}": 200,
                      "/dav/alice/team-north~schedule/nothing.ics": 404}
    item = alice("GET", f"/dav/alice/team-north~schedule/{seed.jobs['bob'][0].href}")
    assert item.status_code == 200
    assert item.headers["ETag"] == items_of(db, "team-north/schedule")[
        seed.jobs["bob"][0].href].etag


def test_sync_through_an_alias(client: Client, db: Database, seed: Seed) -> None:
    made = fresh_technician(db, seed, "aliassync", [(at(31, 9), at(31, 10)), (at(31, 11), at(31, 12))])
    first, second = made.booked
    dispatcher = as_user(client, seed.dispatcher)
    alias = f"/dav/dispatch/{made.account.login}~jobs/"
    start = dispatcher("REPORT", alias, sync_collection(), Depth="1", **XML)
    assert hrefs(start) == {alias + first.href, alias + second.href}
    token = sync_token_of(start.data)
    direct = as_user(client, made.account)("REPORT", f"/dav/{made.account.login}/jobs/",
                                            sync_collection(), Depth="1", **XML)
    assert sync_token_of(direct.data) == token
    with domain(db) as ctx:
        scheduling.reschedule(ctx, scheduling.get_appointment(ctx.session, second.appointment_id),
                              at(31, 14), at(31, 15))
    delta = dispatcher("REPORT", alias, sync_collection(token), Depth="1", **XML)
    assert hrefs(delta) == {alias + second.href}
    with domain(db) as ctx:
        scheduling.reassign(ctx, scheduling.get_appointment(ctx.session, first.appointment_id), None)
    gone = dispatcher("REPORT", alias, sync_collection(sync_token_of(delta.data)), Depth="1", **XML)
    assert {r.href: r.status for r in parse_multistatus(gone.data)} == {alias + first.href: 404}


def test_dispatcher_writes_through_an_alias(client: Client, db: Database, seed: Seed) -> None:
    made = fresh_technician(db, seed, "aliaswrite", [(at(32, 9), at(32, 10)), (at(32, 11), at(32, 12))])
    login, (mover, other) = made.account.login, made.booked
    dispatcher = as_user(client, seed.dispatcher)
    path = f"/dav/dispatch/{login}~jobs/{mover.href}"
    original = dispatcher("GET", path)
    assert original.status_code == 200
    text = original.get_data(as_text=True)
    clash = text.replace("DTSTART:20310404T090000Z", "DTSTART:20310404T113000Z").replace(
        "DTEND:20310404T100000Z", "DTEND:20310404T123000Z")
    assert clash != text
    before = row_counts(db)
    refused = dispatcher("PUT", path, clash, If_Match=original.headers["ETag"], **ICS)
    assert refused.status_code == 409 and b"slot" in refused.data.lower()
    assert row_counts(db) == before
    moved = text.replace("DTSTART:20310404T090000Z", "DTSTART:20310404T140000Z").replace(
        "DTEND:20310404T100000Z", "DTEND:20310404T150000Z")
    response = dispatcher("PUT", path, moved, If_Match=original.headers["ETag"], **ICS)
    assert response.status_code == 204, response.get_data(as_text=True)
    with db.read() as session:
        appointment = scheduling.get_appointment(session, mover.appointment_id)
        assert (appointment.starts_at, appointment.technician_id is not None) == (at(32, 14), True)
        entries = session.scalars(select(AuditEntry).where(
            AuditEntry.entity == "appointment", AuditEntry.action == "appointment.reschedule",
            AuditEntry.entity_id == str(mover.appointment_id))).all()
        assert [(e.actor, e.channel) for e in entries] == [("dispatch", "caldav")]
    own_view = as_user(client, made.account)("GET", f"/dav/{login}/jobs/{mover.href}")
    assert "DTSTART:20310404T140000Z" in own_view.get_data(as_text=True)

    personal = f"/dav/dispatch/{login}~personal/"
    event = personal_event(f"course-{login}@example.test", "Course", at(33, 8), at(33, 12))
    assert dispatcher("PUT", f"{personal}course.ics", event, **ICS).status_code == 201
    assert "course.ics" in items_of(db, f"{login}/personal")
    assert dispatcher("DELETE", f"{personal}course.ics").status_code == 200
    assert "course.ics" not in items_of(db, f"{login}/personal")
    assert dispatcher("DELETE", f"/dav/dispatch/{login}~jobs/{other.href}").status_code == 200
    with db.read() as session:
        assert scheduling.get_appointment(session, other.appointment_id).technician_id is None


def test_aliases_refuse_writes_and_changes_to_themselves(
    client: Client, db: Database, seed: Seed
) -> None:
    existing = seed.jobs["bob"][0].href
    before = row_counts(db)
    bob_row = collection_row(db, "bob/jobs")
    text = personal_event("alias-view@example.test", "x", at(29, 9), at(29, 10))
    patch = (
        '<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
        "<D:displayname>Mine</D:displayname></D:prop></D:set></D:propertyupdate>"
    )
    alice = as_user(client, seed.technicians["alice"])
    team = "/dav/alice/team-north~schedule/"
    for response in (alice("PUT", f"{team}new.ics", text, **ICS),
                     alice("DELETE", f"{team}{existing}"),
                     alice("PUT", f"{team}{existing}", text, **ICS),
                     alice("PROPPATCH", team, patch, **XML),
                     alice("DELETE", team)):
        assert response.status_code == 403
        assert b"read-only view" in response.data, response.data
    dispatcher = as_user(client, seed.dispatcher)
    assert b"read-only view" in dispatcher("PUT", "/dav/dispatch/team-north~schedule/new.ics",
                                           text, **ICS).data
    for response in (dispatcher("DELETE", "/dav/dispatch/bob~jobs/"),
                     dispatcher("DELETE", "/dav/dispatch/bob~personal/"),
                     dispatcher("PROPPATCH", "/dav/dispatch/bob~jobs/", patch, **XML)):
        assert response.status_code == 403, response.status_code
        assert b"'bob/jobs'" in response.data or b"'bob/personal'" in response.data, response.data
    mkcalendar = (
        '<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" '
        'xmlns:C="urn:ietf:params:xml:ns:caldav"/>'
    )
    for who, path in ((dispatcher, "/dav/dispatch/bob~jobs/"), (dispatcher, "/dav/dispatch/x~y/"),
                      (alice, "/dav/alice/team-north~schedule/"), (alice, "/dav/alice/a~b/")):
        refused = who("MKCALENDAR", path, mkcalendar, **XML)
        assert refused.status_code == 403 and b"reserved" in refused.data, path
    assert row_counts(db) == before
    assert collection_row(db, "bob/jobs").props == bob_row.props
    with db.read() as session:
        assert calendars.get_collection(session, "dispatch/x~y") is None


def test_aliases_follow_the_rights_of_their_target(client: Client, db: Database, seed: Seed) -> None:
    with domain(db) as ctx:
        directory.add_team(ctx, "south", "South team")
    southerner = fresh_technician(db, seed, "south", [], team_slug="south").account
    south = as_user(client, southerner)
    mine = listing(south, f"/dav/{southerner.login}/")
    assert f"/dav/{southerner.login}/team-south~schedule/" in mine
    assert f"/dav/{southerner.login}/team-north~schedule/" not in mine
    refused = [
        f"/dav/{southerner.login}/team-north~schedule/",  # not a member
        f"/dav/{southerner.login}/alice~jobs/",  # another technician's calendars
        f"/dav/{southerner.login}/alice~personal/",
        f"/dav/{southerner.login}/customer-{seed.customer_ids[0]}~appointments/",
        "/dav/alice/team-north~schedule/",  # someone else's home
        f"/dav/alice/team-north~schedule/{seed.jobs['bob'][0].href}",
    ]
    for path in refused:
        for method in ("GET", "PROPFIND"):
            response = south(method, path, Depth="0")
            assert response.status_code in (403, 404), (path, method, response.status_code)
            assert seed.jobs["bob"][0].uid.encode() not in response.data
    report = south("REPORT", f"/dav/{southerner.login}/team-north~schedule/",
                   calendar_query(WEEK - 7 * DAY, WEEK + 14 * DAY), Depth="1", **XML)
    assert report.status_code in (403, 404)
    # an alias resolves only where its home would list it
    dispatcher = as_user(client, seed.dispatcher)
    assert dispatcher("PROPFIND", "/dav/carol/alice~jobs/", Depth="0").status_code == 404
    assert dispatcher("PROPFIND", "/dav/alice/alice~jobs/", Depth="0").status_code == 404
    assert dispatcher("PROPFIND", "/dav/dispatch/nobody~jobs/", Depth="0").status_code == 404


def test_dispatcher_home_listing_does_not_grow_queries_with_technicians(
    client: Client, db: Database, seed: Seed
) -> None:
    from sqlalchemy import event

    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.split(None, 1)[0].upper() == "SELECT":
            statements.append(statement)

    dispatcher = as_user(client, seed.dispatcher)

    def queries_for_listing() -> tuple[int, int]:
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            found = listing(dispatcher, "/dav/dispatch/")
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        return len(statements), len(found)

    listing(dispatcher, "/dav/dispatch/")  # credential last-used stamp out of the way
    before, listed_before = queries_for_listing()
    for n in range(20):
        fresh_technician(db, seed, f"many{n}", [(at(34, 9), at(34, 10))], team_slug="north")
    after, listed_after = queries_for_listing()
    assert listed_after == listed_before + 40
    assert after == before, statements
    # login (credential, role, teams), Radicale's principal check, then the home:
    # its principal, its own calendars, its aliases
    assert after <= 7, statements


# --------------------------------------------------------------------------- guards


def collect(app: Any, environ: dict[str, Any]) -> tuple[str, bytes]:
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        seen["status"] = status

    body = b"".join(app(environ, start_response))
    return seen["status"], body


class Exploding(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        raise AssertionError("the body must not be read")


def echo(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(len(data)).encode()]


def test_body_limit_refuses_before_reading() -> None:
    guard = BodyLimit(echo, 100)
    status, _ = collect(guard, {"REQUEST_METHOD": "PUT", "CONTENT_LENGTH": "101",
                                "wsgi.input": Exploding()})
    assert status.startswith("413")
    chunked = {"REQUEST_METHOD": "PUT", "HTTP_TRANSFER_ENCODING": "chunked",
               "wsgi.input": io.BytesIO(b"x" * 5000)}
    assert collect(guard, chunked)[0].startswith("413")
    small = {"REQUEST_METHOD": "PUT", "HTTP_TRANSFER_ENCODING": "chunked",
             "wsgi.input": io.BytesIO(b"y" * 60)}
    assert collect(guard, small) == ("200 OK", b"60")


def test_oversized_put_is_413(client: Client, seed: Seed) -> None:
    response = as_user(client, seed.technicians["alice"])(
        "PUT", "/dav/alice/personal/huge.ics", "X" * (MAX_BODY + 1), **ICS)
    assert response.status_code == 413


def test_xml_entities_are_refused_quickly(client: Client, seed: Seed) -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{"&lol" + str(i - 1) + ";" if i > 1 else "&lol;"}' * 10
                  + '">' for i in range(1, 10))
        + ']><D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&lol9;</D:displayname>'
        "</D:prop></D:propfind>"
    )
    xxe = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           '<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&e;</D:displayname></D:prop>'
           "</D:propfind>")
    alice = as_user(client, seed.technicians["alice"])
    for body in (bomb, xxe):
        started = time.monotonic()
        response = alice("PROPFIND", "/dav/alice/", body, Depth="0", **XML)
        assert response.status_code == 400
        assert time.monotonic() - started < 1.0
    utf16 = '<?xml version="1.0" encoding="utf-16"?><D:propfind xmlns:D="DAV:"/>'.encode("utf-16")
    assert alice("PROPFIND", "/dav/alice/", utf16, Depth="0", **XML).status_code == 400


def test_xml_guard_passes_plain_xml() -> None:
    status, body = collect(XmlGuard(echo), {
        "REQUEST_METHOD": "PROPFIND", "CONTENT_LENGTH": "24",
        "wsgi.input": io.BytesIO(b'<propfind xmlns="DAV:"/>')})
    assert (status, body) == ("200 OK", b"24")


def test_forwarded_headers_keep_paths_intact(client: Client, db: Database, seed: Seed) -> None:
    with domain(db) as ctx:
        made = directory.add_user(ctx, "dave", name="Dave D", email="dave@example.test",
                                  role=Role.TECHNICIAN)
        _, password = directory.issue_password(ctx, made)
    dave = Account("dave", password, "dave@example.test", "technician")
    forwarded = {"X_Forwarded_For": "203.0.113.9", "X_Forwarded_Proto": "https",
                 "X_Forwarded_Host": "cal.example.test"}
    response = as_user(client, dave)("PROPFIND", "/dav/dave/", Depth="1", **forwarded)
    assert response.status_code == 207
    assert "/dav/dave/jobs/" in hrefs(response)
    prefixed = as_user(client, dave)("PROPFIND", "/dav/dave/", Depth="0",
                                     X_Forwarded_Prefix="/fieldcal", **forwarded)
    assert hrefs(prefixed) == {"/fieldcal/dav/dave/"}


def test_many_items_stream_and_query_by_index(client: Client, db: Database, seed: Seed) -> None:
    account, _ = fresh(db, seed, "many")
    with domain(db) as ctx:
        row = calendars.require_collection(ctx.session, f"{account.login}/personal")
        for n in range(300):
            start = WEEK + dt.timedelta(hours=6 * n)
            calendars.put_item(ctx, row, f"n{n}.ics", personal_event(
                f"n{n}-{account.login}@example.test", f"n{n}", start, start + dt.timedelta(hours=1)))
    dav = as_user(client, account)
    listing = dav("PROPFIND", f"/dav/{account.login}/personal/", Depth="1")
    assert len(hrefs(listing)) == 301
    day = dav("REPORT", f"/dav/{account.login}/personal/",
              calendar_query(WEEK + 10 * DAY, WEEK + 11 * DAY), Depth="1", **XML)
    assert {h.rsplit("/", 1)[-1] for h in hrefs(day)} == {f"n{n}.ics" for n in range(40, 44)}


# --------------------------------------------------------------------------- exact bounds


def _event(*lines: str, zone: bool = False) -> str:
    timezone = (
        "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
        "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"
        "END:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nTZOFFSETFROM:+0100\r\n"
        "TZOFFSETTO:+0200\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n"
        "END:VTIMEZONE\r\n"
    ) if zone else ""
    body = "".join(f"{line}\r\n" for line in lines)
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n" + timezone +
            "BEGIN:VEVENT\r\nUID:b@example.test\r\nDTSTAMP:20310101T000000Z\r\n" + body +
            "END:VEVENT\r\nEND:VCALENDAR\r\n")


SIMPLE_EVENTS = [
    _event("DTSTART:20310301T090000Z", "DTEND:20310301T100000Z"),
    _event("DTSTART;TZID=Europe/Berlin:20310701T090000",
           "DTEND;TZID=Europe/Berlin:20310701T100000", zone=True),
    _event("DTSTART;TZID=America/New_York:20311105T013000",
           "DTEND;TZID=America/New_York:20311105T033000"),
    _event("DTSTART;VALUE=DATE-TIME:20310301T090000Z", "DTEND:20310301T093000Z",
           "BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT15M", "DESCRIPTION:x", "END:VALARM"),
]
OTHER_EVENTS = [
    _event("DTSTART:20310301T090000", "DTEND:20310301T100000"),  # floating
    _event("DTSTART;VALUE=DATE:20310301", "DTEND;VALUE=DATE:20310302"),
    _event("DTSTART:20310301T090000Z", "DTEND:20310301T100000Z", "RRULE:FREQ=DAILY;COUNT=3"),
    _event("DTSTART:20310301T090000Z", "DURATION:PT1H"),
    _event("DTSTART:20310301T090000Z"),
    _event("DTSTART;TZID=Custom Zone:20310301T090000", "DTEND;TZID=Custom Zone:20310301T100000"),
    _event("DTSTART;TZID=America/New_York:20311102T013000",  # happens twice that night
           "DTEND;TZID=America/New_York:20311102T033000"),
    _event("DTSTART;TZID=Europe/Berlin:20310330T023000",  # does not happen that night
           "DTEND;TZID=Europe/Berlin:20310330T033000"),
]


@pytest.mark.parametrize("text", SIMPLE_EVENTS)
def test_exact_bounds_agree_with_radicale(text: str) -> None:
    from radicale import item as radicale_item

    from plugins.radicale.bounds import exact_range

    parsed = radicale_item.Item(collection_path="a/b", text=text)
    assert exact_range(text) == parsed.time_range


@pytest.mark.parametrize("text", OTHER_EVENTS)
def test_exact_bounds_leave_the_rest_to_radicale(text: str) -> None:
    from plugins.radicale.bounds import exact_range

    assert exact_range(text) is None


def test_folded_lines_are_read() -> None:
    from plugins.radicale.bounds import exact_range

    folded = SIMPLE_EVENTS[0].replace("DTEND:20310301T100000Z", "DTEND:2031030\r\n 1T100000Z")
    assert exact_range(folded) == exact_range(SIMPLE_EVENTS[0])


# --------------------------------------------------------------------------- concurrency


def test_concurrent_if_match_puts_have_one_winner(app: Any, db: Database, seed: Seed) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    account, _ = fresh(db, seed, "race")
    path = f"/dav/{account.login}/personal/race.ics"
    uid = f"race-{account.login}@example.test"
    created = as_user(Client(app), account)("PUT", path,
                                            personal_event(uid, "v0", at(30, 9), at(30, 10)), **ICS)
    etag = created.headers["ETag"]
    writers = 8
    barrier = threading.Barrier(writers)

    def write(n: int) -> int:
        dav = as_user(Client(app), account)
        barrier.wait(timeout=30)
        return dav("PUT", path, personal_event(uid, f"v{n + 1}", at(30, 9), at(30, 10)),
                   If_Match=etag, **ICS).status_code

    with ThreadPoolExecutor(writers) as pool:
        statuses = sorted(pool.map(write, range(writers)))
    assert statuses == [204] + [412] * (writers - 1)
    text = items_of(db, f"{account.login}/personal")["race.ics"].text
    assert text.count("SUMMARY:v") == 1 and "SUMMARY:v0" not in text
