"""The `caldav` library as a technician's and a dispatcher's client, against gunicorn (2 workers).

Every scenario checks the outcome in the jobs database, not only what the client saw.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse

import caldav
import icalendar
import pytest
import requests
from caldav.lib import error as caldav_error
from live import (
    ICS,
    WEEK,
    XML,
    Account,
    Booked,
    LiveServer,
    Seed,
    appointment_row,
    at,
    basename,
    calendar_query,
    dav_client,
    dav_request,
    domain,
    fresh_technician,
    items_of,
    parse_multistatus,
    personal_event,
    row_counts,
    sync_collection,
    sync_token_of,
)
from sqlalchemy import select

from server import audit, calendars, changes, directory, scheduling
from server.db import Database
from server.models import (
    AppointmentStatus,
    AuditEntry,
    CalendarItem,
    Credential,
    JobStatus,
    PartStat,
)

DAY = dt.timedelta(days=1)


def jobs_url(live: LiveServer, login: str) -> str:
    return live.url(f"/dav/{login}/jobs/")


def personal_url(live: LiveServer, login: str) -> str:
    return live.url(f"/dav/{login}/personal/")


def open_calendar(live: LiveServer, account: Account, url: str) -> caldav.Calendar:
    return dav_client(live, account).calendar(url=url)


def load_event(calendar: caldav.Calendar, href: str) -> caldav.Event:
    event = calendar.event_by_url(urllib.parse.urljoin(str(calendar.url), urllib.parse.quote(href)))
    event.load()
    return event


def uids_of(objects: list[caldav.CalendarObjectResource]) -> set[str]:
    return {str(obj.icalendar_component["UID"]) for obj in objects}


def one_technician(db: Database, seed: Seed, prefix: str, day: int = 14) -> tuple[Account, Booked]:
    fresh = fresh_technician(db, seed, prefix, [(at(day, 9), at(day, 10))])
    return fresh.account, fresh.booked[0]


def get_item(live: LiveServer, account: Account, path: str) -> requests.Response:
    response = dav_request(live, "GET", path, account.auth)
    assert response.status_code == 200, (response.status_code, response.text)
    return response


def set_times(component: icalendar.cal.Component, start: dt.datetime, end: dt.datetime) -> None:
    for name, value in (("DTSTART", start), ("DTEND", end)):
        component.pop(name, None)
        component.add(name, value)


def moved(text: str, start: dt.datetime, end: dt.datetime) -> bytes:
    calendar = icalendar.Calendar.from_ical(text)
    set_times(next(iter(calendar.walk("VEVENT"))), start, end)
    return calendar.to_ical()


def vevent(text: str) -> icalendar.Event:
    calendar = icalendar.Calendar.from_ical(text)
    return next(c for c in calendar.walk("VEVENT"))


def caldav_audit(db: Database, entity: str, entity_id: object, action: str) -> list[AuditEntry]:
    with db.read() as session:
        return [e for e in audit.trail(session, entity, entity_id) if e.action == action]


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


def test_technician_sees_exactly_jobs_and_personal(live: LiveServer, seed: Seed) -> None:
    for login in ("alice", "carol"):
        principal = dav_client(live, seed.technicians[login]).principal()
        found = {basename(c.url): c.get_display_name() for c in principal.calendars()}
        assert found == {"jobs": "Jobs", "personal": "Personal"}, (login, found)


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
        seen = uids_of(view.events())
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
    assert uids_of(view.events()) == expected
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
    found = jobs.search(start=WEEK, end=WEEK + 7 * DAY, event=True, expand=False)
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
    found = personal.search(start=start, end=end, event=True, expand=True, server_expand=True)
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
    initial = jobs.get_objects_by_sync_token(disable_fallback=True)
    assert {basename(o.url) for o in initial} == {first.href, second.href, third.href}
    token = initial.sync_token

    with domain(db) as ctx:
        appointment = scheduling.get_appointment(ctx.session, second.appointment_id)
        scheduling.reschedule(ctx, appointment, at(15, 9), at(15, 10))
    delta = jobs.get_objects_by_sync_token(sync_token=token, disable_fallback=True)
    assert [basename(o.url) for o in delta] == [second.href]
    assert delta.sync_token != token
    again = jobs.get_objects_by_sync_token(sync_token=delta.sync_token, disable_fallback=True)
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
    assert hrefs == {"/dav/alice/", "/dav/alice/jobs/", "/dav/alice/personal/"}
    prefixed = dav_request(live, "PROPFIND", "/dav/alice/", alice.auth,
                           headers={**proxied, "X-Forwarded-Prefix": "/field"})
    assert prefixed.status_code == 207
    assert {r.href for r in parse_multistatus(prefixed.content)} == {
        f"/field{h}" for h in hrefs}


# --------------------------------------------------------------------------- a technician's answers


def set_partstat(event: caldav.Event, email: str, partstat: str) -> None:
    with event.edit_icalendar_component() as component:
        attendees = component["ATTENDEE"]
        for attendee in attendees if isinstance(attendees, list) else [attendees]:
            if str(attendee).lower() == f"mailto:{email}":
                attendee.params["PARTSTAT"] = partstat
                return
    raise AssertionError(f"no ATTENDEE mailto:{email} in the rendered job")


def test_accept_sets_partstat_with_a_caldav_audit_entry(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    account, booked = one_technician(db, seed, "accept")
    jobs = open_calendar(live, account, jobs_url(live, account.login))
    event = load_event(jobs, booked.href)
    set_partstat(event, account.email, "ACCEPTED")
    event.save()

    row = appointment_row(db, booked.appointment_id)
    assert row.partstat == PartStat.ACCEPTED
    entries = caldav_audit(db, "appointment", booked.appointment_id, "appointment.accept")
    assert len(entries) == 1
    assert (entries[0].channel, entries[0].actor) == ("caldav", account.login)
    assert entries[0].after["partstat"] == "ACCEPTED"
    refetched = vevent(get_item(live, account, f"/dav/{account.login}/jobs/{booked.href}").text)
    assert refetched["ATTENDEE"].params["PARTSTAT"] == "ACCEPTED"


def assert_back_to_unassigned(live: LiveServer, db: Database, account: Account,
                              booked: Booked) -> None:
    row = appointment_row(db, booked.appointment_id)
    assert row.technician_id is None
    assert row.status != AppointmentStatus.CANCELLED
    assert row.job.status not in (JobStatus.CANCELLED, JobStatus.COMPLETED)
    assert (row.starts_at, row.ends_at) == (booked.starts_at, booked.ends_at)
    assert booked.href not in items_of(db, f"{account.login}/jobs")
    gone = dav_request(live, "GET", f"/dav/{account.login}/jobs/{booked.href}", account.auth)
    assert gone.status_code == 404
    entries = caldav_audit(db, "appointment", booked.appointment_id, "appointment.decline")
    assert [(e.channel, e.actor) for e in entries] == [("caldav", account.login)]


def test_decline_unassigns_and_removes_from_the_jobs_calendar(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    account, booked = one_technician(db, seed, "decline")
    jobs = open_calendar(live, account, jobs_url(live, account.login))
    event = load_event(jobs, booked.href)
    set_partstat(event, account.email, "DECLINED")
    event.save()
    assert_back_to_unassigned(live, db, account, booked)
    assert booked.uid not in uids_of(jobs.events())


def test_delete_is_a_decline_and_the_job_is_kept(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    account, booked = one_technician(db, seed, "delete")
    jobs = open_calendar(live, account, jobs_url(live, account.login))
    load_event(jobs, booked.href).delete()
    assert_back_to_unassigned(live, db, account, booked)


def test_move_reschedules_and_bumps_sequence(live: LiveServer, seed: Seed, db: Database) -> None:
    account, booked = one_technician(db, seed, "move")
    before = appointment_row(db, booked.appointment_id)
    jobs = open_calendar(live, account, jobs_url(live, account.login))
    event = load_event(jobs, booked.href)
    new_start, new_end = at(14, 13), at(14, 14, 30)
    with event.edit_icalendar_component() as component:
        set_times(component, new_start, new_end)
    event.save()

    row = appointment_row(db, booked.appointment_id)
    assert (row.starts_at, row.ends_at) == (new_start, new_end)
    assert row.sequence == before.sequence + 1
    assert row.technician_id == before.technician_id
    stored = vevent(get_item(live, account, f"/dav/{account.login}/jobs/{booked.href}").text)
    assert stored["DTSTART"].dt == new_start
    assert int(stored["SEQUENCE"]) == before.sequence + 1
    entries = caldav_audit(db, "appointment", booked.appointment_id, "appointment.reschedule")
    assert [(e.channel, e.actor) for e in entries] == [("caldav", account.login)]


def test_move_onto_another_job_is_refused_and_nothing_changes(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    fresh = fresh_technician(db, seed, "clash", [(at(15, 9), at(15, 10)), (at(15, 11), at(15, 12))])
    account, (mover, other) = fresh.account, fresh.booked
    path = f"/dav/{account.login}/jobs/{mover.href}"
    original = get_item(live, account, path)
    before_rows = (appointment_row(db, mover.appointment_id), appointment_row(db, other.appointment_id))
    before_counts = row_counts(db)

    response = dav_request(live, "PUT", path, account.auth,
                           body=moved(original.text, at(15, 11, 30), at(15, 12, 30)),
                           headers={**ICS, "If-Match": original.headers["ETag"]})
    assert response.status_code in (403, 409), (response.status_code, response.text)
    message = response.text.lower()
    assert any(word in message for word in ("slot", "booked", "overlap")), response.text

    for booked, before in zip((mover, other), before_rows, strict=True):
        row = appointment_row(db, booked.appointment_id)
        assert (row.starts_at, row.ends_at, row.sequence) == (
            before.starts_at, before.ends_at, before.sequence)
    assert row_counts(db) == before_counts
    assert get_item(live, account, path).headers["ETag"] == original.headers["ETag"]


def test_job_status_from_the_phone(live: LiveServer, seed: Seed, db: Database) -> None:
    account, booked = one_technician(db, seed, "status")
    jobs = open_calendar(live, account, jobs_url(live, account.login))
    event = load_event(jobs, booked.href)
    with event.edit_icalendar_component() as component:
        component.pop("X-FIELDCAL-JOB-STATUS", None)
        component.add("X-FIELDCAL-JOB-STATUS", icalendar.vText("on_site"))
    event.save()
    assert appointment_row(db, booked.appointment_id).job.status == JobStatus.ON_SITE
    stored = vevent(get_item(live, account, f"/dav/{account.login}/jobs/{booked.href}").text)
    assert str(stored["X-FIELDCAL-JOB-STATUS"]) == "on_site"
    entries = caldav_audit(db, "appointment", booked.appointment_id, "appointment.status")
    assert [(e.channel, e.actor) for e in entries] == [("caldav", account.login)]


def test_edit_of_a_forbidden_field_is_not_applied(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    account, booked = one_technician(db, seed, "summary")
    path = f"/dav/{account.login}/jobs/{booked.href}"
    original = get_item(live, account, path)
    summary = str(vevent(original.text)["SUMMARY"])
    edited = original.text.replace(summary, "Free beer for the technician")
    assert edited != original.text
    response = dav_request(live, "PUT", path, account.auth, body=edited,
                           headers={**ICS, "If-Match": original.headers["ETag"]})
    assert response.status_code in (200, 201, 204), (response.status_code, response.text)

    refetched = get_item(live, account, path)
    assert str(vevent(refetched.text)["SUMMARY"]) == summary
    if "ETag" in response.headers:  # an ETag on PUT must be the stored version's
        assert response.headers["ETag"] == refetched.headers["ETag"]
    row = appointment_row(db, booked.appointment_id)
    assert row.job.title == "summary job 1"
    assert (row.starts_at, row.ends_at, row.technician_id is not None) == (
        booked.starts_at, booked.ends_at, True)


def test_dispatcher_moves_a_technicians_job_and_adds_a_personal_item(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    account, booked = one_technician(db, seed, "bydispatch")
    dispatcher = seed.dispatcher
    path = f"/dav/{account.login}/jobs/{booked.href}"
    current = get_item(live, dispatcher, path)
    response = dav_request(live, "PUT", path, dispatcher.auth,
                           body=moved(current.text, at(14, 15), at(14, 16)),
                           headers={**ICS, "If-Match": current.headers["ETag"]})
    assert response.status_code == 204, (response.status_code, response.text)
    row = appointment_row(db, booked.appointment_id)
    assert (row.starts_at, row.technician_id is not None) == (at(14, 15), True)
    entries = caldav_audit(db, "appointment", booked.appointment_id, "appointment.reschedule")
    assert [(e.channel, e.actor) for e in entries] == [("caldav", dispatcher.login)]

    created = dav_request(live, "PUT", f"/dav/{account.login}/personal/training.ics",
                          dispatcher.auth, headers=ICS,
                          body=personal_event("training@example.test", "Training", at(16, 8),
                                              at(16, 12)))
    assert created.status_code == 201
    assert "training.ics" in items_of(db, f"{account.login}/personal")


# --------------------------------------------------------------------------- personal events


def test_personal_event_create_edit_delete(live: LiveServer, seed: Seed, db: Database) -> None:
    account, _ = one_technician(db, seed, "personal")
    personal_path = f"{account.login}/personal"
    personal = open_calendar(live, account, personal_url(live, account.login))
    event = personal.save_event(dtstart=at(16, 12), dtend=at(16, 13), summary="Gym",
                                uid="gym-1@example.test")
    href = basename(event.url)
    item = items_of(db, personal_path)[href]
    assert item.uid == "gym-1@example.test"
    assert "SUMMARY:Gym" in item.text
    assert (item.dtstart is not None and item.dtstart <= at(16, 12))

    event.load()
    with event.edit_icalendar_component() as component:
        component["SUMMARY"] = icalendar.vText("Gym with Sam")
    event.save()
    assert "SUMMARY:Gym with Sam" in items_of(db, personal_path)[href].text
    assert [str(e.icalendar_component["SUMMARY"]) for e in personal.events()] == ["Gym with Sam"]

    event.delete()
    assert href not in items_of(db, personal_path)
    assert personal.events() == []
    with db.read() as session:
        collection = calendars.require_collection(session, personal_path)
        entries = audit.trail(session, "collection", collection.id)
    actions = [(e.action, e.channel, e.actor) for e in entries if e.action.startswith("item.")]
    assert actions == [("item.put", "caldav", account.login)] * 2 + [
        ("item.delete", "caldav", account.login)]


def test_uid_conflict_under_another_href_is_409(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    account, _ = one_technician(db, seed, "uid")
    base = f"/dav/{account.login}/personal/"
    first = dav_request(live, "PUT", base + "one.ics", account.auth, headers=ICS,
                        body=personal_event("same-uid@example.test", "One", at(2, 6), at(2, 7)))
    assert first.status_code == 201, first.text
    before = row_counts(db)
    second = dav_request(live, "PUT", base + "two.ics", account.auth, headers=ICS,
                         body=personal_event("same-uid@example.test", "Two", at(3, 6), at(3, 7)))
    assert second.status_code == 409, (second.status_code, second.text)
    assert set(items_of(db, f"{account.login}/personal")) == {"one.ics"}
    assert row_counts(db) == before


def test_stale_if_match_is_412(live: LiveServer, seed: Seed, db: Database) -> None:
    account, booked = one_technician(db, seed, "ifmatch")
    path = f"/dav/{account.login}/personal/note.ics"
    created = dav_request(live, "PUT", path, account.auth, headers=ICS,
                          body=personal_event("note@example.test", "v1", at(2, 6), at(2, 7)))
    assert created.status_code == 201
    etag_v1 = get_item(live, account, path).headers["ETag"]
    v2 = personal_event("note@example.test", "v2", at(2, 6), at(2, 7))
    updated = dav_request(live, "PUT", path, account.auth, body=v2,
                          headers={**ICS, "If-Match": etag_v1})
    assert updated.status_code in (200, 204), updated.status_code
    before = row_counts(db)
    stale = dav_request(live, "PUT", path, account.auth,
                        body=personal_event("note@example.test", "v3", at(2, 6), at(2, 7)),
                        headers={**ICS, "If-Match": etag_v1})
    assert stale.status_code == 412
    exists = dav_request(live, "PUT", path, account.auth,
                         body=personal_event("note@example.test", "v4", at(2, 6), at(2, 7)),
                         headers={**ICS, "If-None-Match": "*"})
    assert exists.status_code == 412
    stale_delete = dav_request(live, "DELETE", path, account.auth, headers={"If-Match": etag_v1})
    assert stale_delete.status_code == 412
    assert "SUMMARY:v2" in get_item(live, account, path).text
    assert row_counts(db) == before

    # the same on a job rendering: nothing is applied
    job_path = f"/dav/{account.login}/jobs/{booked.href}"
    job = get_item(live, account, job_path)
    refused = dav_request(live, "PUT", job_path, account.auth,
                          body=moved(job.text, at(20, 9), at(20, 10)),
                          headers={**ICS, "If-Match": '"0000000000stale"'})
    assert refused.status_code == 412
    assert appointment_row(db, booked.appointment_id).starts_at == booked.starts_at
    assert row_counts(db) == before


def test_unicode_href_round_trips(live: LiveServer, seed: Seed, db: Database) -> None:
    account, _ = one_technician(db, seed, "unicode")
    href = "événement-ü.ics"
    path = f"/dav/{account.login}/personal/{href}"
    text = personal_event("unicode@example.test", "Café", at(5, 8), at(5, 9))
    created = dav_request(live, "PUT", path, account.auth, body=text, headers=ICS)
    assert created.status_code == 201, (created.status_code, created.text)
    assert href in items_of(db, f"{account.login}/personal")

    fetched = get_item(live, account, path)
    assert str(vevent(fetched.text)["UID"]) == "unicode@example.test"
    listing = dav_request(live, "PROPFIND", f"/dav/{account.login}/personal/", account.auth,
                          headers={**XML, "Depth": "1"})
    assert listing.status_code == 207
    assert href in {basename(r.href) for r in parse_multistatus(listing.content)}
    personal = open_calendar(live, account, personal_url(live, account.login))
    assert {basename(e.url) for e in personal.events()} == {href}

    deleted = dav_request(live, "DELETE", path, account.auth)
    assert deleted.status_code in (200, 204)
    assert href not in items_of(db, f"{account.login}/personal")


def test_caldav_library_is_refused_someone_elses_calendar(live: LiveServer, seed: Seed) -> None:
    bob_jobs = open_calendar(live, seed.technicians["alice"], jobs_url(live, "bob"))
    with pytest.raises((caldav_error.AuthorizationError, caldav_error.NotFoundError)):
        bob_jobs.events()
