"""What a technician's phone may do to jobs and personal events, through the `caldav` library and
raw requests: accept, decline, move, delete, status, forbidden edits, 409/412, unicode hrefs.
Each outcome is checked in the jobs database and its audit trail."""

from __future__ import annotations

import icalendar
from caldav.calendarobjectresource import Event
from davkit import (
    ICS,
    XML,
    basename,
    dav_request,
    get_item,
    jobs_url,
    load_event,
    moved,
    open_calendar,
    parse_multistatus,
    personal_url,
    set_times,
    synchronous,
    uids_of,
    vevent,
)
from icalkit import prop_datetime, prop_int
from live import LiveServer
from seeding import (
    Account,
    Booked,
    Seed,
    appointment_row,
    at,
    audit_entries,
    fresh_technician,
    items_of,
    one_technician,
    personal_event,
    row_counts,
)

from server import audit, calendars
from server.db import Database
from server.models import (
    AppointmentStatus,
    JobStatus,
    PartStat,
)


def set_partstat(event: Event, email: str, partstat: str) -> None:
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
    entries = audit_entries(db, "appointment", booked.appointment_id, "appointment.accept")
    assert len(entries) == 1
    assert (entries[0].channel, entries[0].actor) == ("caldav", account.login)
    assert entries[0].after is not None
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
    entries = audit_entries(db, "appointment", booked.appointment_id, "appointment.decline")
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
    assert booked.uid not in uids_of(synchronous(jobs.events()))


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
    assert prop_datetime(stored, "DTSTART") == new_start
    assert prop_int(stored, "SEQUENCE") == before.sequence + 1
    entries = audit_entries(db, "appointment", booked.appointment_id, "appointment.reschedule")
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
    entries = audit_entries(db, "appointment", booked.appointment_id, "appointment.status")
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
    entries = audit_entries(db, "appointment", booked.appointment_id, "appointment.reschedule")
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
    event = synchronous(personal.save_event(dtstart=at(16, 12), dtend=at(16, 13), summary="Gym",
                                            uid="gym-1@example.test"))
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
    assert [str(e.icalendar_component["SUMMARY"]) for e in synchronous(personal.events())] == ["Gym with Sam"]

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
    assert {basename(e.url) for e in synchronous(personal.events())} == {href}

    deleted = dav_request(live, "DELETE", path, account.auth)
    assert deleted.status_code in (200, 204)
    assert href not in items_of(db, f"{account.login}/personal")
