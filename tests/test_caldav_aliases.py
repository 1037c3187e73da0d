"""What a phone lists after adding the account, through the `caldav` library against gunicorn
(2 workers): a technician's home shows the team schedule, a dispatcher's every technician's
calendars and the team schedules, as aliases that behave like their targets (queries, sync,
writes by the dispatcher, read-only views, rights). Outcomes are checked in the jobs database."""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.parse
from collections.abc import Iterable
from typing import Any

import pytest
from caldav.calendarobjectresource import CalendarObjectResource
from caldav.collection import Calendar
from caldav.lib import error as caldav_error
from davkit import (
    ICS,
    XML,
    basename,
    dav_client,
    dav_request,
    get_item,
    load_event,
    moved,
    open_calendar,
    parse_multistatus,
    set_times,
    sync_collection,
    sync_token_of,
    synchronous,
    uids_of,
    vevent,
)
from icalkit import prop_datetime
from live import LiveServer
from seeding import (
    WEEK,
    Account,
    Seed,
    appointment_row,
    at,
    audit_entries,
    domain,
    fresh_technician,
    items_of,
    personal_event,
    row_counts,
)
from sqlalchemy import select

from server import directory, scheduling
from server.db import Database
from server.models import Role, Team, User

DAY = dt.timedelta(days=1)


def listed(account: Account, live: LiveServer) -> dict[str, str]:
    """name -> displayname of what `principal().calendars()` shows, as a phone lists it."""
    principal = dav_client(live, account).principal()
    return {basename(c.url): c.get_display_name() for c in principal.calendars()}


def alias(live: LiveServer, account: Account, name: str) -> Calendar:
    return open_calendar(live, account, live.url(f"/dav/{account.login}/{name}/"))


def path_of(obj: CalendarObjectResource) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(str(obj.url)).path)


def hrefs_of(objects: Iterable[CalendarObjectResource]) -> set[str]:
    return {path_of(o) for o in objects}


def test_dispatcher_lists_every_technicians_calendars_and_the_team_schedules(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    found = listed(seed.dispatcher, live)
    with db.read() as session:
        technicians = dict(session.execute(select(User.login, User.name).where(
            User.role == Role.TECHNICIAN, User.active.is_(True))).all())
        teams = dict(session.execute(select(Team.slug, Team.name)).all())
    expected = {f"team-{slug}~schedule": f"{name} schedule" for slug, name in teams.items()}
    for login, name in technicians.items():
        expected[f"{login}~jobs"] = f"{name}: Jobs"
        expected[f"{login}~personal"] = f"{name}: Personal"
    assert found == expected
    assert {"alice~jobs", "alice~personal", "bob~jobs", "bob~personal", "carol~jobs",
            "carol~personal", "team-north~schedule"} <= set(found)


def test_technician_lists_jobs_personal_and_the_team_view(live: LiveServer, seed: Seed) -> None:
    assert listed(seed.technicians["alice"], live) == {
        "jobs": "Jobs", "personal": "Personal", "team-north~schedule": "North team schedule"}
    assert listed(seed.technicians["carol"], live) == {"jobs": "Jobs", "personal": "Personal"}


def test_search_through_an_alias_returns_the_targets_events(live: LiveServer, seed: Seed) -> None:
    dispatcher = seed.dispatcher
    window: dict[str, Any] = {"start": WEEK, "end": WEEK + 7 * DAY, "event": True, "expand": False}
    through: list[CalendarObjectResource] = synchronous(
        alias(live, dispatcher, "alice~jobs").search(**window))
    direct: list[CalendarObjectResource] = synchronous(
        open_calendar(live, dispatcher, live.url("/dav/alice/jobs/")).search(**window))
    assert uids_of(through) == uids_of(direct) == seed.week_uids("alice")
    assert all(path_of(o).startswith("/dav/dispatch/alice~jobs/") for o in through)

    alice = seed.technicians["alice"]
    team: list[CalendarObjectResource] = synchronous(alias(live, alice, "team-north~schedule").search(
        start=WEEK - 7 * DAY, end=WEEK + 14 * DAY, event=True, expand=False))
    view: list[CalendarObjectResource] = synchronous(
        open_calendar(live, alice, live.url("/dav/team-north/schedule/")).search(
            start=WEEK - 7 * DAY, end=WEEK + 14 * DAY, event=True, expand=False))
    assert uids_of(team) == uids_of(view)
    assert {b.uid for b in seed.jobs["alice"] + seed.jobs["bob"]} == uids_of(team)
    breakfasts: list[CalendarObjectResource] = synchronous(alias(live, dispatcher, "alice~personal").search(
        start=WEEK, end=WEEK + 21 * DAY, event=True, expand=True, server_expand=True))
    starts = sorted(o.icalendar_component["DTSTART"].dt for o in breakfasts
                    if str(o.icalendar_component["UID"]) == seed.recurring_uid)
    assert starts == [at(1, 7), at(8, 7), at(15, 7)]


def test_sync_token_delta_through_an_alias_is_exactly_the_changed_href(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    fresh = fresh_technician(db, seed, "aliassync", [(at(50, 9), at(50, 10)), (at(50, 11), at(50, 12))])
    first, second = fresh.booked
    calendar = alias(live, seed.dispatcher, f"{fresh.account.login}~jobs")
    prefix = f"/dav/dispatch/{fresh.account.login}~jobs/"
    initial = synchronous(calendar.get_objects_by_sync_token(disable_fallback=True))
    assert hrefs_of(initial) == {prefix + first.href, prefix + second.href}
    token = initial.sync_token

    with domain(db) as ctx:
        scheduling.reschedule(ctx, scheduling.get_appointment(ctx.session, second.appointment_id),
                              at(51, 9), at(51, 10))
    delta = synchronous(calendar.get_objects_by_sync_token(sync_token=token, disable_fallback=True))
    assert [path_of(o) for o in delta] == [prefix + second.href]
    assert delta.sync_token != token
    own = dav_request(live, "REPORT", f"/dav/{fresh.account.login}/jobs/", fresh.account.auth,
                      body=sync_collection(token), headers=XML)
    assert sync_token_of(own.content) == delta.sync_token  # one change log, one token
    assert {basename(r.href) for r in parse_multistatus(own.content)} == {second.href}


def test_dispatcher_reschedules_a_job_through_the_alias(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    fresh = fresh_technician(db, seed, "aliasmove", [(at(52, 9), at(52, 10)), (at(52, 11), at(52, 12))])
    login, (mover, other) = fresh.account.login, fresh.booked
    calendar = alias(live, seed.dispatcher, f"{login}~jobs")
    event = load_event(calendar, mover.href)
    with event.edit_icalendar_component() as component:
        set_times(component, at(52, 14), at(52, 15, 30))
    event.save()

    row = appointment_row(db, mover.appointment_id)
    assert row.technician is not None
    assert (row.starts_at, row.ends_at, row.technician.login) == (at(52, 14), at(52, 15, 30), login)
    entries = audit_entries(db, "appointment", mover.appointment_id, "appointment.reschedule")
    assert [(e.channel, e.actor) for e in entries] == [("caldav", seed.dispatcher.login)]
    own = vevent(get_item(live, fresh.account, f"/dav/{login}/jobs/{mover.href}").text)
    assert prop_datetime(own, "DTSTART") == at(52, 14)

    # onto the other visit: refused with the reason, nothing changes
    path = f"/dav/dispatch/{login}~jobs/{other.href}"
    current = get_item(live, seed.dispatcher, path)
    before = row_counts(db)
    refused = dav_request(live, "PUT", path, seed.dispatcher.auth,
                          body=moved(current.text, at(52, 14, 30), at(52, 15, 30)),
                          headers={**ICS, "If-Match": current.headers["ETag"]})
    assert refused.status_code == 409, (refused.status_code, refused.text)
    assert any(word in refused.text.lower() for word in ("slot", "booked", "overlap")), refused.text
    assert row_counts(db) == before
    assert (appointment_row(db, other.appointment_id).starts_at,
            appointment_row(db, mover.appointment_id).starts_at) == (at(52, 11), at(52, 14))


def test_technician_cannot_write_into_the_team_alias(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    alice = seed.technicians["alice"]
    path = "/dav/alice/team-north~schedule/"
    existing = seed.jobs["bob"][0]
    original = get_item(live, alice, path + existing.href).text
    before_items = {h: i.etag for h, i in items_of(db, "team-north/schedule").items()}
    before = row_counts(db)
    attempts = [
        dav_request(live, "PUT", path + "mine.ics", alice.auth, headers=ICS,
                    body=personal_event("alias-team@example.test", "Mine", at(1, 6), at(1, 7))),
        dav_request(live, "PUT", path + existing.href, alice.auth, headers=ICS,
                    body=moved(original, at(1, 14), at(1, 16))),
        dav_request(live, "DELETE", path + existing.href, alice.auth),
        dav_request(live, "DELETE", path, alice.auth),
    ]
    for response in attempts:
        assert response.status_code == 403, (response.request.method, response.status_code)
        assert "read-only view" in response.text, response.text
    with pytest.raises(caldav_error.DAVError):
        alias(live, alice, "team-north~schedule").save_event(
            dtstart=at(2, 6), dtend=at(2, 7), summary="Sneaky", uid="alias-team-2@example.test")
    assert {h: i.etag for h, i in items_of(db, "team-north/schedule").items()} == before_items
    assert row_counts(db) == before
    assert appointment_row(db, existing.appointment_id).starts_at == existing.starts_at


def test_technician_cannot_read_another_teams_or_technicians_calendars(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    slug = f"south-{secrets.token_hex(3)}"
    with domain(db) as ctx:
        directory.add_team(ctx, slug, "South team")
    southerner = fresh_technician(db, seed, "south", [(at(53, 9), at(53, 10))], team_slug=slug)
    assert listed(southerner.account, live) == {
        "jobs": "Jobs", "personal": "Personal", f"team-{slug}~schedule": "South team schedule"}
    assert uids_of(synchronous(alias(live, southerner.account, f"team-{slug}~schedule").events())) == {
        southerner.booked[0].uid}

    alice, login = seed.technicians["alice"], southerner.account.login
    secrets_of_others = {b.uid for b in seed.jobs["bob"] + southerner.booked}
    for account, path in ((alice, f"/dav/alice/team-{slug}~schedule/"),
                          (alice, f"/dav/alice/{login}~jobs/"),
                          (alice, "/dav/alice/bob~personal/"),
                          (southerner.account, f"/dav/{login}/team-north~schedule/"),
                          (southerner.account, "/dav/alice/team-north~schedule/"),
                          (southerner.account, "/dav/dispatch/bob~jobs/")):
        for method in ("GET", "PROPFIND"):
            response = dav_request(live, method, path, account.auth, headers={"Depth": "1"})
            assert response.status_code in (403, 404), (path, method, response.status_code)
            assert not any(uid in response.text for uid in secrets_of_others
                           if uid not in {b.uid for b in seed.jobs.get(account.login, [])})
        with pytest.raises((caldav_error.AuthorizationError, caldav_error.NotFoundError)):
            open_calendar(live, account, live.url(path)).events()
