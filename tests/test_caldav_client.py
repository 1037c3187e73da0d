"""The `caldav` library as a technician's and a dispatcher's client, against gunicorn (2 workers):
discovery, who sees which calendar, queries, sync. Outcomes are checked in the jobs database."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import icalendar
import pytest
import requests
from caldav.calendarobjectresource import CalendarObjectResource
from caldav.lib import error as caldav_error
from davkit import (
    ICS,
    XML,
    basename,
    calendar_query,
    dav_client,
    dav_request,
    get_item,
    jobs_url,
    open_calendar,
    parse_multistatus,
    personal_url,
    sync_collection,
    sync_token_of,
    synchronous,
    uids_of,
)
from live import LiveServer
from seeding import (
    WEEK,
    Account,
    Seed,
    at,
    domain,
    fresh_technician,
    items_of,
    one_technician,
    personal_event,
    row_counts,
)
from sqlalchemy import select

from server import calendars, changes, directory, scheduling
from server.db import Database
from server.models import (
    CalendarItem,
    Credential,
)

DAY = dt.timedelta(days=1)


# --------------------------------------------------------------------------- discovery


def test_well_known_redirects_to_dav(live: LiveServer, seed: Seed) -> None:
    alice = seed.technicians["alice"]
    for method in ("GET", "PROPFIND"):
        response = requests.request(method, live.url("/.well-known/caldav"), auth=alice.auth,
                                    headers={"Depth": "0"}, allow_redirects=False, timeout=10)
        assert response.status_code in (301, 302, 307, 308), (method, response.status_code)
        target = urllib.parse.urljoin(live.url("/.well-known/caldav"), response.headers["Location"])
        assert urllib.parse.urlsplit(target).path == "/dav/", target


def test_discovery_through_well_known_finds_the_principal(live: LiveServer, seed: Seed) -> None:
    alice = seed.technicians["alice"]
    client = dav_client(live, alice, url=live.url("/.well-known/caldav"))
    principal = client.principal()
    assert urllib.parse.urlsplit(str(principal.url)).path == "/dav/alice/"
    home = principal.calendar_home_set
    assert urllib.parse.urlsplit(str(home.url)).path == "/dav/alice/"


def test_wrong_password_is_refused(live: LiveServer, seed: Seed) -> None:
    response = dav_request(live, "PROPFIND", "/dav/alice/", ("alice", "not-the-password"),
                           headers={"Depth": "0"})
    assert response.status_code == 401


def test_revoked_app_password_stops_working(live: LiveServer, seed: Seed, db: Database) -> None:
    account, _ = one_technician(db, seed, "revoke")
    path = f"/dav/{account.login}/jobs/"
    assert dav_request(live, "PROPFIND", path, account.auth, headers={"Depth": "0"}).ok
    with domain(db) as ctx:
        user = directory.find_user(ctx.session, account.login)
        credential, second_password = directory.issue_password(ctx, user, "second phone")
        first = next(c for c in ctx.session.scalars(
            select(Credential).where(Credential.user_id == user.id, Credential.id != credential.id)))
        directory.revoke_password(ctx, first.id)
    refused = dav_request(live, "PROPFIND", path, account.auth, headers={"Depth": "0"})
    assert refused.status_code == 401
    other_device = dav_request(live, "PROPFIND", path, (account.login, second_password),
                               headers={"Depth": "0"})
    assert other_device.status_code == 207


def test_technician_sees_jobs_personal_and_team_views(live: LiveServer, seed: Seed) -> None:
    """Own calendars by name; a member's team schedule as a read-only view in the home."""
    for login, views in (("alice", {"team-north~schedule"}), ("carol", set())):
        principal = dav_client(live, seed.technicians[login]).principal()
        found = {basename(c.url): c.get_display_name() for c in principal.calendars()}
        assert {n: found[n] for n in ("jobs", "personal") if n in found} == {
            "jobs": "Jobs", "personal": "Personal"}, (login, found)
        assert set(found) - {"jobs", "personal"} == views, (login, found)
        for view in views:
            assert "North team" in (found[view] or ""), found


def test_dispatcher_opens_every_technicians_calendars(live: LiveServer, seed: Seed) -> None:
    client = dav_client(live, seed.dispatcher)
    for login, booked in seed.jobs.items():
        jobs = client.calendar(url=jobs_url(live, login))
        assert uids_of(jobs.events()) == {b.uid for b in booked}, login
        personal = client.calendar(url=personal_url(live, login))
        expected = {seed.recurring_uid, seed.dentist_uid} if login == "alice" else set()
        assert uids_of(personal.events()) == expected, login


def test_team_view_is_readable_by_members_and_dispatchers(live: LiveServer, seed: Seed) -> None:
    team_uids = {b.uid for login in ("alice", "bob") for b in seed.jobs[login]}
    path = f"/dav/team-{seed.team_slug}/schedule/"
    for account in (seed.technicians["alice"], seed.technicians["bob"], seed.dispatcher):
        view = open_calendar(live, account, live.url(path))
        seen = uids_of(synchronous(view.events()))
        assert team_uids <= seen, account.login
        assert not {b.uid for b in seed.jobs["carol"]} & seen
    outsider = dav_request(live, "PROPFIND", path, seed.technicians["carol"].auth,
                           headers={"Depth": "1"})
    assert outsider.status_code in (403, 404), outsider.status_code


def test_team_view_refuses_writes(live: LiveServer, seed: Seed, db: Database) -> None:
    path = f"/dav/team-{seed.team_slug}/schedule/"
    existing = seed.jobs["bob"][0]
    before_items = {h: i.etag for h, i in items_of(db, f"team-{seed.team_slug}/schedule").items()}
    before_counts = row_counts(db)
    alice = seed.technicians["alice"]
    original = get_item(live, alice, path + existing.href).text
    new = personal_event("team-write@example.test", "Sneaky", at(1, 6), at(1, 7))
    for account in (alice, seed.dispatcher):
        attempts = [
            dav_request(live, "PUT", path + "sneaky.ics", account.auth, body=new, headers=ICS),
            dav_request(live, "PUT", path + existing.href, account.auth,
                        body=original.replace("Pressure switch", "Renamed"), headers=ICS),
            dav_request(live, "DELETE", path + existing.href, account.auth),
        ]
        for response in attempts:
            assert response.status_code in (400, 403, 405, 409), (
                account.login, response.request.method, response.status_code, response.text)
    after_items = {h: i.etag for h, i in items_of(db, f"team-{seed.team_slug}/schedule").items()}
    assert after_items == before_items
    assert row_counts(db) == before_counts


def test_customer_view_is_read_only(live: LiveServer, seed: Seed, db: Database) -> None:
    customer_id = seed.customer_ids[0]
    path = f"/dav/customer-{customer_id}/appointments/"
    view = open_calendar(live, seed.dispatcher, live.url(path))
    with db.read() as session:
        collection = calendars.require_collection(session, f"customer-{customer_id}/appointments")
        expected = set(session.scalars(
            select(CalendarItem.uid).where(CalendarItem.collection_id == collection.id)))
    assert uids_of(synchronous(view.events())) == expected
    seeded = {b.uid for booked in seed.jobs.values() for b in booked}
    assert seeded & expected, "the seed books jobs for this customer"
    before = row_counts(db)
    response = dav_request(live, "PUT", path + "x.ics", seed.dispatcher.auth, headers=ICS,
                           body=personal_event("cust-write@example.test", "x", at(1, 6), at(1, 7)))
    assert response.status_code in (400, 403, 405, 409), response.status_code
    technician = dav_request(live, "PROPFIND", path, seed.technicians["carol"].auth,
                             headers={"Depth": "1"})
    assert technician.status_code in (403, 404)
    assert row_counts(db) == before


# --------------------------------------------------------------------------- queries


def test_time_range_search_returns_exactly_the_weeks_jobs(live: LiveServer, seed: Seed) -> None:
    alice = seed.technicians["alice"]
    jobs = open_calendar(live, alice, jobs_url(live, "alice"))
    found: list[CalendarObjectResource] = synchronous(
        jobs.search(start=WEEK, end=WEEK + 7 * DAY, event=True, expand=False))
    assert uids_of(found) == seed.week_uids("alice")
    # the server itself filters (the library also filters client-side)
    response = dav_request(live, "REPORT", "/dav/alice/jobs/", alice.auth,
                           body=calendar_query(WEEK, WEEK + 7 * DAY),
                           headers={**XML, "Depth": "1"})
    assert response.status_code == 207
    hrefs = {basename(r.href) for r in parse_multistatus(response.content)}
    assert hrefs == {f"{uid}.ics" for uid in seed.week_uids("alice")}


def test_recurring_personal_event_is_expanded_server_side(live: LiveServer, seed: Seed) -> None:
    alice = seed.technicians["alice"]
    start, end = WEEK, WEEK + 21 * DAY
    personal = open_calendar(live, alice, personal_url(live, "alice"))
    found: list[CalendarObjectResource] = synchronous(
        personal.search(start=start, end=end, event=True, expand=True, server_expand=True))
    breakfasts = [f.icalendar_component for f in found
                  if str(f.icalendar_component["UID"]) == seed.recurring_uid]
    starts = sorted(c["DTSTART"].dt for c in breakfasts)
    assert starts == [at(1, 7), at(8, 7), at(15, 7)]

    response = dav_request(live, "REPORT", "/dav/alice/personal/", alice.auth,
                           body=calendar_query(start, end, expand=True),
                           headers={**XML, "Depth": "1"})
    assert response.status_code == 207
    by_href = {basename(r.href): r for r in parse_multistatus(response.content)}
    assert set(by_href) == {seed.recurring_href, "dentist.ics"}
    expanded = icalendar.Calendar.from_ical(by_href[seed.recurring_href].calendar_data)
    events = list(expanded.walk("VEVENT"))
    assert len(events) == 3
    assert all("RRULE" not in e and "RECURRENCE-ID" in e for e in events)


# --------------------------------------------------------------------------- sync


def test_sync_token_delta_is_exactly_the_changed_href(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    fresh = fresh_technician(db, seed, "sync", [(at(14, 9), at(14, 10)), (at(14, 11), at(14, 12)),
                                                (at(14, 13), at(14, 14))])
    account, (first, second, third) = fresh.account, fresh.booked
    jobs = open_calendar(live, account, jobs_url(live, account.login))
    initial = synchronous(jobs.get_objects_by_sync_token(disable_fallback=True))
    assert {basename(o.url) for o in initial} == {first.href, second.href, third.href}
    token = initial.sync_token

    with domain(db) as ctx:
        appointment = scheduling.get_appointment(ctx.session, second.appointment_id)
        scheduling.reschedule(ctx, appointment, at(15, 9), at(15, 10))
    delta = synchronous(jobs.get_objects_by_sync_token(sync_token=token, disable_fallback=True))
    assert [basename(o.url) for o in delta] == [second.href]
    assert delta.sync_token != token
    again = synchronous(
        jobs.get_objects_by_sync_token(sync_token=delta.sync_token, disable_fallback=True))
    assert list(again) == []

    # a visit that leaves the calendar comes back as a tombstone (404 in the delta)
    with domain(db) as ctx:
        appointment = scheduling.get_appointment(ctx.session, third.appointment_id)
        scheduling.reassign(ctx, appointment, None)
    response = dav_request(live, "REPORT", f"/dav/{account.login}/jobs/", account.auth,
                           body=sync_collection(delta.sync_token), headers=XML)
    assert response.status_code == 207
    changed = {basename(r.href): r.status for r in parse_multistatus(response.content)}
    assert changed == {third.href: 404}
    assert sync_token_of(response.content) not in ("", delta.sync_token)


CTAG_PROPFIND = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<D:propfind xmlns:D="DAV:" xmlns:CS="http://calendarserver.org/ns/">'
    "<D:prop><D:getetag/><CS:getctag/><D:sync-token/></D:prop></D:propfind>"
)


def collection_tags(live: LiveServer, account: Account, path: str) -> tuple[str, str, str]:
    import xml.etree.ElementTree as ET

    response = dav_request(live, "PROPFIND", path, account.auth, body=CTAG_PROPFIND,
                           headers={**XML, "Depth": "0"})
    assert response.status_code == 207
    root = ET.fromstring(response.content)
    etag, ctag, token = (root.findtext(f".//{tag}") or "" for tag in (
        "{DAV:}getetag", "{http://calendarserver.org/ns/}getctag", "{DAV:}sync-token"))
    return etag, ctag, token


def test_collection_tags_change_exactly_when_the_contents_do(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    """Phones poll the CTag/ETag of the collection before they sync."""
    account, booked = one_technician(db, seed, "ctag")
    path = f"/dav/{account.login}/jobs/"
    before = collection_tags(live, account, path)
    assert all(before), before
    assert collection_tags(live, account, path) == before
    with domain(db) as ctx:
        appointment = scheduling.get_appointment(ctx.session, booked.appointment_id)
        scheduling.reschedule(ctx, appointment, at(14, 16), at(14, 17))
    after = collection_tags(live, account, path)
    assert all(a != b for a, b in zip(after, before, strict=True)), (before, after)
    assert collection_tags(live, account, path) == after


def test_a_view_in_a_home_has_its_targets_tags(live: LiveServer, seed: Seed) -> None:
    pairs = [(seed.technicians["alice"], "/dav/alice/team-north~schedule/",
              "/dav/team-north/schedule/"),
             (seed.dispatcher, "/dav/dispatch/bob~jobs/", "/dav/bob/jobs/")]
    for account, alias, target in pairs:
        assert collection_tags(live, account, alias) == collection_tags(live, account, target)


def test_unknown_sync_token_gives_the_valid_sync_token_error(live: LiveServer, seed: Seed) -> None:
    alice = seed.technicians["alice"]
    for token in ("http://radicale.org/ns/sync/unknown-token", "not-a-token"):
        response = dav_request(live, "REPORT", "/dav/alice/jobs/", alice.auth,
                               body=sync_collection(token), headers=XML)
        assert response.status_code == 403, (token, response.status_code)
        assert "valid-sync-token" in response.text


def test_pruned_change_log_gives_the_valid_sync_token_error(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    account, booked = one_technician(db, seed, "prune")
    path = f"/dav/{account.login}/jobs/"
    first = dav_request(live, "REPORT", path, account.auth, body=sync_collection(), headers=XML)
    assert first.status_code == 207
    old_token = sync_token_of(first.content)
    for hour in (11, 13):
        with domain(db) as ctx:
            appointment = scheduling.get_appointment(ctx.session, booked.appointment_id)
            scheduling.reschedule(ctx, appointment, at(14, hour), at(14, hour + 1))
    with domain(db) as ctx:
        collection = calendars.require_collection(ctx.session, f"{account.login}/jobs")
        assert changes.prune(ctx.session, collection, keep=0, older_than=dt.timedelta(0)) > 0
    expired = dav_request(live, "REPORT", path, account.auth, body=sync_collection(old_token),
                          headers=XML)
    assert expired.status_code == 403, expired.status_code
    assert "valid-sync-token" in expired.text
    fresh_start = dav_request(live, "REPORT", path, account.auth, body=sync_collection(),
                              headers=XML)
    assert {basename(r.href) for r in parse_multistatus(fresh_start.content)} == {booked.href}


# --------------------------------------------------------------------------- behind a proxy


def test_forwarded_headers_keep_the_dav_prefix_once(live: LiveServer, seed: Seed) -> None:
    alice = seed.technicians["alice"]
    proxied = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "cal.example.test", "Depth": "1"}
    response = dav_request(live, "PROPFIND", "/dav/alice/", alice.auth, headers=proxied)
    assert response.status_code == 207, response.status_code
    hrefs = {r.href for r in parse_multistatus(response.content)}
    assert hrefs == {"/dav/alice/", "/dav/alice/jobs/", "/dav/alice/personal/",
                     "/dav/alice/team-north~schedule/", "/dav/alice/customers/"}
    prefixed = dav_request(live, "PROPFIND", "/dav/alice/", alice.auth,
                           headers={**proxied, "X-Forwarded-Prefix": "/field"})
    assert prefixed.status_code == 207
    assert {r.href for r in parse_multistatus(prefixed.content)} == {
        f"/field{h}" for h in hrefs}


def test_caldav_library_is_refused_someone_elses_calendar(live: LiveServer, seed: Seed) -> None:
    bob_jobs = open_calendar(live, seed.technicians["alice"], jobs_url(live, "bob"))
    with pytest.raises((caldav_error.AuthorizationError, caldav_error.NotFoundError)):
        bob_jobs.events()
