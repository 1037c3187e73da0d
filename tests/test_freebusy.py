# ruff: noqa: F811  (the composed app's fixtures come from test_radicale_plugin)
"""free-busy-query REPORT answered from the database, checked against Radicale's own answer.

Radicale's answer comes from the same plugins with the fast path switched off
(`RadicaleOnly`): for plain items (no buffers, no time off) both must show the
same busy periods. Then what only the database knows: buffers and travel, time
off, holidays; TRANSP, a dense rule, bad requests, rights, the Content-Type.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from freebusykit import (
    CONTENT_TYPE,
    XML,
    Period,
    merged,
    periods,
    query,
    radicale_client,
    strict,
)
from seeding import Account, Seed, at, domain, fresh_technician, must_get, personal_event, put_personal
from test_radicale_plugin import app, as_user, client, settings_for  # noqa: F401  (fixtures used by name)
from werkzeug.test import Client

from server import calendars, directory, scheduling
from server.db import Database, get_database
from server.ical import etag_of
from server.models import Appointment, AppointmentStatus, CalendarItem, utcnow
from server.scheduling import appointments, capacity

UTC = dt.UTC
BUSY, TENTATIVE, UNAVAILABLE = "BUSY", "BUSY-TENTATIVE", "BUSY-UNAVAILABLE"
HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def db(database_url: str, seed: Seed) -> Iterator[Database]:
    yield get_database(database_url)


@pytest.fixture(scope="module")
def radicale(seed: Seed, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return radicale_client(settings_for(database_url, Path(tmp_path_factory.mktemp("rad"))))


def ask(client: Client, account: Account | None, path: str, body: str) -> Any:
    return as_user(client, account)("REPORT", path, body, **XML)


def answer(client: Client, account: Account, path: str, start: dt.datetime,
           end: dt.datetime) -> list[Period]:
    response = ask(client, account, path, query(start, end))
    assert response.status_code == 200, (response.status_code, response.data[:500])
    assert response.headers["Content-Type"] == CONTENT_TYPE
    strict(response.data)
    return periods(response.data)


def event(uid: str, start: str, end: str, *extra: str) -> str:
    return "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fieldcal tests//EN",
                        "BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20310101T000000Z",
                        f"DTSTART{start}", f"DTEND{end}", "SUMMARY:x", *extra,
                        "END:VEVENT", "END:VCALENDAR", ""])


BERLIN = ["BEGIN:VTIMEZONE", "TZID:Europe/Berlin",
          "BEGIN:DAYLIGHT", "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "TZNAME:CEST",
          "DTSTART:19700329T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", "END:DAYLIGHT",
          "BEGIN:STANDARD", "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "TZNAME:CET",
          "DTSTART:19701025T030000", "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU", "END:STANDARD",
          "END:VTIMEZONE"]


def stamp(moment: dt.datetime) -> str:
    return f":{moment:%Y%m%dT%H%M%SZ}"


# --------------------------------------------------------------------------- differential


@pytest.fixture(scope="module")
def plain(db: Database, seed: Seed) -> tuple[Account, dt.datetime]:
    """A technician with visits and personal items of every plain kind, in week 5."""
    base = at(28, 0)
    tech = fresh_technician(db, seed, "fbplain", [
        (base + dt.timedelta(days=1, hours=9), base + dt.timedelta(days=1, hours=11)),
        (base + dt.timedelta(days=2, hours=13), base + dt.timedelta(days=2, hours=14, minutes=30)),
        (base + dt.timedelta(days=3, hours=23), base + dt.timedelta(days=4, hours=1)),
        (base + dt.timedelta(days=6, hours=23), base + dt.timedelta(days=7, hours=1)),  # past the end
    ]).account
    login = tech.login
    b = base
    d = dt.timedelta(days=1)
    items = {
        "plain": event("p1", stamp(b + d + 12 * HOUR), stamp(b + d + 13 * HOUR)),
        "overlap": event("p2", stamp(b + d + 10.5 * HOUR), stamp(b + d + 11.5 * HOUR)),
        "daily": event("p3", stamp(b - 14 * d + 7 * HOUR), stamp(b - 14 * d + 7.5 * HOUR),
                       "RRULE:FREQ=DAILY;COUNT=20", f"EXDATE:{b + 2 * d + 7 * HOUR:%Y%m%dT%H%M%SZ}"),
        "allday": event("p4", f";VALUE=DATE:{b + 5 * d:%Y%m%d}", f";VALUE=DATE:{b + 6 * d:%Y%m%d}"),
        "transparent": event("p5", stamp(b + 2 * d + 9 * HOUR), stamp(b + 2 * d + 10 * HOUR),
                             "TRANSP:TRANSPARENT"),
        "cancelled": event("p6", stamp(b + 2 * d + 16 * HOUR), stamp(b + 2 * d + 17 * HOUR),
                           "STATUS:CANCELLED"),
        "tentative": event("p7", stamp(b + 3 * d + 9 * HOUR), stamp(b + 3 * d + 10 * HOUR),
                           "STATUS:TENTATIVE"),
        "edge": event("p8", stamp(b - 2 * HOUR), stamp(b + 2 * HOUR)),
        "floating": event("p9", f":{b + 4 * d + 15 * HOUR:%Y%m%dT%H%M%S}",
                          f":{b + 4 * d + 16 * HOUR:%Y%m%dT%H%M%S}"),
        "zoned": "\r\n".join([  # weekly at 10:00 Berlin from winter time into summer time
            "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//EN", *BERLIN, "BEGIN:VEVENT",
            "UID:p11", "DTSTAMP:20310101T000000Z", "DTSTART;TZID=Europe/Berlin:20310310T100000",
            "DTEND;TZID=Europe/Berlin:20310310T103000", "RRULE:FREQ=WEEKLY;BYDAY=MO,TH",
            "END:VEVENT", "END:VCALENDAR", ""]),
        "duration": "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//EN", "BEGIN:VEVENT",
                                 "UID:p10", "DTSTAMP:20310101T000000Z",
                                 f"DTSTART:{b + 5 * d + 20 * HOUR:%Y%m%dT%H%M%SZ}",
                                 "DURATION:PT45M", "END:VEVENT", "END:VCALENDAR", ""]),
    }
    with domain(db) as ctx:
        job = directory.add_job(ctx, directory.find_customer(ctx.session, seed.customer_ids[0]),
                                "Tentative visit", problem="maybe")
        scheduling.book(ctx, job, directory.find_user(ctx.session, login),
                        b + 5 * d + 9 * HOUR, b + 5 * d + 10 * HOUR, status=AppointmentStatus.TENTATIVE)
        for name, text in items.items():
            put_personal(ctx, login, f"{name}.ics", text)
    return tech, base


@pytest.mark.parametrize("calendar", ["jobs", "personal"])
def test_plain_items_match_radicales_answer(client: Client, radicale: Client,
                                            plain: tuple[Account, dt.datetime], calendar: str) -> None:
    tech, base = plain
    path = f"/dav/{tech.login}/{calendar}/"
    end = base + dt.timedelta(days=7)
    ours = answer(client, tech, path, base, end)
    theirs = answer(radicale, tech, path, base, end)
    assert ours == theirs
    assert len(ours) >= 4
    assert all(base <= s < e <= end for s, e, _ in ours), "cut to the window"


def test_plain_items_what_the_answer_holds(client: Client, plain: tuple[Account, dt.datetime]) -> None:
    tech, b = plain
    d = dt.timedelta(days=1)
    found = answer(client, tech, f"/dav/{tech.login}/personal/", b, b + 7 * d)
    assert (b, b + 2 * HOUR, BUSY) in found, "the event that began before the window, cut"
    assert (b + 3 * d + 9 * HOUR, b + 3 * d + 10 * HOUR, TENTATIVE) in found
    assert not [p for p in found if p[0] == b + 2 * d + 9 * HOUR], "TRANSPARENT is free"
    assert not [p for p in found if p[0] == b + 2 * d + 16 * HOUR], "CANCELLED is free"
    assert not [p for p in found if p[0] == b + 2 * d + 7 * HOUR], "EXDATE is free"
    assert (b + 5 * d, b + 6 * d, BUSY) in found, "all-day"
    assert (b + 8 * HOUR, b + 8.5 * HOUR, BUSY) in found, "10:00 Berlin in summer time"
    assert (b + 3 * d + 8 * HOUR, b + 3 * d + 8.5 * HOUR, BUSY) in found
    jobs = answer(client, tech, f"/dav/{tech.login}/jobs/", b, b + 7 * d)
    assert (b + 5 * d + 9 * HOUR, b + 5 * d + 10 * HOUR, TENTATIVE) in jobs, "a tentative visit"
    assert (b + 6 * d + 23 * HOUR, b + 7 * d, BUSY) in jobs, "cut at the end"


def test_home_is_jobs_and_personal_together(client: Client, radicale: Client,
                                            plain: tuple[Account, dt.datetime]) -> None:
    tech, base = plain
    end = base + dt.timedelta(days=7)
    home = answer(client, tech, f"/dav/{tech.login}/", base, end)
    jobs = answer(client, tech, f"/dav/{tech.login}/jobs/", base, end)
    personal = answer(client, tech, f"/dav/{tech.login}/personal/", base, end)
    assert home == merged(jobs, personal)
    d = dt.timedelta(days=1)
    assert (base + d + 9 * HOUR, base + d + 11.5 * HOUR, BUSY) in home, "visit and item joined"
    refused = ask(radicale, tech, f"/dav/{tech.login}/", query(base, end))
    assert refused.status_code == 403, "Radicale answers no free-busy-query on a home"


# --------------------------------------------------------------------------- what only we know


def test_visits_show_their_buffers_and_travel(client: Client, radicale: Client, db: Database,
                                              seed: Seed) -> None:
    start, end = at(35, 10), at(35, 12)
    tech = fresh_technician(db, seed, "fbbuf", []).account
    with domain(db) as ctx:
        service = capacity.add_service_type(ctx, "fb-buffered", "Buffered", duration_minutes=120,
                                            buffer_before_minutes=15, buffer_after_minutes=10,
                                            travel_minutes=20)
        job = directory.add_job(ctx, directory.find_customer(ctx.session, seed.customer_ids[0]),
                                "Buffered visit", problem="leak")
        scheduling.book(ctx, job, directory.find_user(ctx.session, tech.login), start, end,
                        service_type=service)
    path = f"/dav/{tech.login}/jobs/"
    window = (at(35, 0), at(36, 0))
    ours = answer(client, tech, path, *window)
    assert ours == [(start - dt.timedelta(minutes=15), end + dt.timedelta(minutes=30), BUSY)]
    assert answer(radicale, tech, path, *window) == [(start, end, BUSY)], "Radicale: the event only"
    assert answer(client, tech, f"/dav/{tech.login}/", *window) == ours


def test_cancelled_visits_and_lapsed_holds_are_free(client: Client, db: Database, seed: Seed) -> None:
    tech = fresh_technician(db, seed, "fbcancel", [(at(56, 9), at(56, 10)), (at(56, 11), at(56, 12))])
    with domain(db) as ctx:
        appointments.cancel(ctx, scheduling.get_appointment(ctx.session, tech.booked[0].appointment_id))
        job = directory.add_job(ctx, directory.find_customer(ctx.session, seed.customer_ids[0]),
                                "Held visit", problem="maybe")
        held = scheduling.book(ctx, job, directory.find_user(ctx.session, tech.account.login),
                               at(56, 14), at(56, 15), status=AppointmentStatus.TENTATIVE,
                               hold_until=utcnow() + dt.timedelta(minutes=10))
    path = f"/dav/{tech.account.login}/jobs/"
    assert answer(client, tech.account, path, at(56, 0), at(57, 0)) == [
        (at(56, 11), at(56, 12), BUSY), (at(56, 14), at(56, 15), TENTATIVE)]
    with db.write() as session:  # the hold lapses (the worker would release it later)
        must_get(session, Appointment, held.id).hold_expires_at = utcnow() - dt.timedelta(minutes=1)
    assert answer(client, tech.account, path, at(56, 0), at(57, 0)) == [(at(56, 11), at(56, 12), BUSY)]


def test_time_off_and_holidays_are_busy_unavailable(client: Client, db: Database, seed: Seed) -> None:
    tech = fresh_technician(db, seed, "fboff", [(at(42, 9), at(42, 10))]).account
    with domain(db) as ctx:
        user = directory.find_user(ctx.session, tech.login)
        capacity.add_time_off(ctx, user, at(43, 0), at(45, 0), "leave")
        capacity.add_holiday(ctx, at(46, 0), at(47, 0), "founders' day")
        put_personal(ctx, tech.login, "gym.ics", personal_event("gym", "Gym", at(44, 18), at(44, 19)))
    window = (at(42, 0), at(49, 0))
    expected_off = [(at(43, 0), at(45, 0), UNAVAILABLE), (at(46, 0), at(47, 0), UNAVAILABLE)]
    jobs = answer(client, tech, f"/dav/{tech.login}/jobs/", *window)
    assert jobs == sorted([(at(42, 9), at(42, 10), BUSY), *expected_off])
    home = answer(client, tech, f"/dav/{tech.login}/", *window)
    assert home == sorted([(at(42, 9), at(42, 10), BUSY), (at(44, 18), at(44, 19), BUSY),
                           *expected_off])
    personal = answer(client, tech, f"/dav/{tech.login}/personal/", *window)
    assert personal == [(at(44, 18), at(44, 19), BUSY)], "a calendar shows its own items only"
    other = fresh_technician(db, seed, "fboff2", []).account
    assert answer(client, other, f"/dav/{other.login}/", *window) == [expected_off[1]], \
        "a holiday is everyone's, time off only its technician's"


def test_transparent_items_are_free_opaque_ones_busy(client: Client, db: Database, seed: Seed) -> None:
    tech = fresh_technician(db, seed, "fbtransp", []).account
    with domain(db) as ctx:
        put_personal(ctx, tech.login, "t.ics", event("t1", stamp(at(50, 9)), stamp(at(50, 10)),
                                                     "TRANSP:TRANSPARENT"))
        put_personal(ctx, tech.login, "o.ics", event("o1", stamp(at(50, 11)), stamp(at(50, 12)),
                                                     "TRANSP:OPAQUE"))
        put_personal(ctx, tech.login, "r.ics", event("r1", stamp(at(43, 14)), stamp(at(43, 15)),
                                                     "RRULE:FREQ=WEEKLY", "TRANSP:TRANSPARENT"))
    found = answer(client, tech, f"/dav/{tech.login}/", at(49, 0), at(56, 0))
    assert found == [(at(50, 11), at(50, 12), BUSY)]


def test_a_dense_rule_stays_cheap(client: Client, db: Database, seed: Seed) -> None:
    """A FREQ=MINUTELY series stored before the recurrence policy (written to the table as it
    was), queried over a year: one busy period, answered fast."""
    tech = fresh_technician(db, seed, "fbdense", []).account
    text = event("dense", stamp(at(-400, 8)), stamp(at(-400, 8, 1)), "RRULE:FREQ=MINUTELY")
    with db.write() as session:
        collection = calendars.require_collection(session, calendars.personal_path(tech.login))
        session.add(CalendarItem(collection_id=collection.id, href="dense.ics", uid="dense",
                                 component="VEVENT", text=text, etag=etag_of(text),
                                 dtstart=at(-401, 0), dtend=None, transparent=False))
    start, end = at(60, 0), at(60, 0) + dt.timedelta(days=366)
    began = time.perf_counter()
    found = answer(client, tech, f"/dav/{tech.login}/personal/", start, end)
    elapsed = time.perf_counter() - began
    assert found == [(start, end, BUSY)]
    assert elapsed < 2.0, f"a year of a minutely rule took {elapsed:.2f} s"


def test_an_hourly_rule_past_the_expansion_cap_is_whole(client: Client, radicale: Client,
                                                       db: Database, seed: Seed) -> None:
    """1440 occurrences in the window (more than one expansion holds): all of them, as Radicale."""
    tech = fresh_technician(db, seed, "fbhourly", []).account
    with domain(db) as ctx:
        put_personal(ctx, tech.login, "h.ics", event(
            "hourly", stamp(at(-30, 0)), stamp(at(-30, 0, 30)), "RRULE:FREQ=HOURLY"))
    start, end = at(70, 0), at(130, 0)
    path = f"/dav/{tech.login}/personal/"
    ours = answer(client, tech, path, start, end)
    assert len(ours) == 60 * 24
    assert ours[0] == (start, start + HOUR / 2, BUSY) and ours[-1][0] == end - HOUR
    assert ours == answer(radicale, tech, path, start, end)


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize(("body", "reason"), [
    (query(None, None, time_range=False), "needs a CALDAV:time-range"),
    (query(at(0, 0), None), "needs a end"),
    (query(None, at(1, 0)), "needs a start"),
    (query(at(1, 0), at(0, 0)), "must end after it starts"),
    (query(at(0, 0), at(800, 0)), "at most 366 days"),
    (query(None, None, time_range=False).replace("<C:free-busy-query",
     '<C:free-busy-query').replace("</C:free", '<C:time-range start="2031-03-03" end="x"/></C:free'),
     "is not a UTC date-time"),
])
@pytest.mark.parametrize("path", ["/dav/alice/jobs/", "/dav/alice/", "/dav/team-north/schedule/"])
def test_bad_time_ranges_are_400_with_a_reason(client: Client, seed: Seed, body: str, reason: str,
                                               path: str) -> None:
    response = ask(client, seed.dispatcher, path, body)
    assert response.status_code == 400, (response.status_code, response.data)
    assert reason in response.data.decode()


def test_radicales_own_path_fails_on_a_missing_time_range(radicale: Client, seed: Seed) -> None:
    """Why the check is ours for every calendar: Radicale answers 500 (an assert)."""
    response = ask(radicale, seed.dispatcher, "/dav/alice/jobs/", query(None, None, time_range=False))
    assert response.status_code == 500


def test_rights_are_radicales_read_rights(client: Client, seed: Seed) -> None:
    body = query(at(0, 0), at(7, 0))
    alice, carol = seed.technicians["alice"], seed.technicians["carol"]
    assert ask(client, None, "/dav/alice/jobs/", body).status_code == 401
    for path in ("/dav/alice/jobs/", "/dav/alice/", "/dav/alice/personal/"):
        assert ask(client, carol, path, body).status_code == 403, path
        assert ask(client, alice, path, body).status_code == 200, path
        assert ask(client, seed.dispatcher, path, body).status_code == 200, path
    through_alias = answer(client, seed.dispatcher, "/dav/dispatch/alice~jobs/", at(0, 0), at(7, 0))
    assert through_alias == answer(client, alice, "/dav/alice/jobs/", at(0, 0), at(7, 0))
    assert (at(0, 9), at(0, 11), BUSY) in through_alias


def test_views_are_radicales_answer_with_one_charset(client: Client, radicale: Client,
                                                     seed: Seed) -> None:
    alice = seed.technicians["alice"]
    path = "/dav/team-north/schedule/"
    ours = ask(client, alice, path, query(at(0, 0), at(7, 0)))
    theirs = ask(radicale, alice, path, query(at(0, 0), at(7, 0)))
    assert ours.status_code == theirs.status_code == 200
    assert ours.headers["Content-Type"] == CONTENT_TYPE
    assert periods(ours.data) == periods(theirs.data)
    assert (at(0, 9), at(0, 11), BUSY) in periods(ours.data)
    assert ask(client, seed.technicians["carol"], path, query(at(0, 0), at(7, 0))).status_code == 403


# --------------------------------------------------------------------------- GET ?view=freebusy


def view(client: Client, account: Account, path: str, query_string: str = "") -> Any:
    token = base64.b64encode(f"{account.login}:{account.password}".encode()).decode()
    return client.get(path, query_string="view=freebusy" + (f"&{query_string}" if query_string else ""),
                      headers={"Authorization": f"Basic {token}"})


def test_get_freebusy_view_is_the_same_answer(client: Client, radicale: Client,
                                              plain: tuple[Account, dt.datetime]) -> None:
    """Radicale's `GET <calendar>?view=freebusy`: answered the same way, as a file."""
    tech, base = plain
    end = base + dt.timedelta(days=7)
    span = f"start={base:%Y%m%dT%H%M%SZ}&end={end:%Y%m%dT%H%M%SZ}"
    for calendar in ("jobs", "personal"):
        path = f"/dav/{tech.login}/{calendar}/"
        ours = view(client, tech, path, span)
        theirs = view(radicale, tech, path, span)
        assert ours.status_code == theirs.status_code == 200, (ours.data, theirs.data)
        assert ours.headers["Content-Type"] == CONTENT_TYPE
        assert ours.headers["Content-Disposition"].startswith("attachment")
        assert view(client, tech, path, span).headers["ETag"] == ours.headers["ETag"]
        strict(ours.data)
        assert periods(ours.data) == periods(theirs.data) == answer(client, tech, path, base, end)
    home = view(client, tech, f"/dav/{tech.login}/", span)
    assert home.status_code == 200 and periods(home.data) == answer(
        client, tech, f"/dav/{tech.login}/", base, end)


def test_get_freebusy_view_ranges(client: Client, seed: Seed) -> None:
    alice = seed.technicians["alice"]
    default = view(client, alice, "/dav/alice/jobs/")
    assert default.status_code == 200
    busy = next(iter(strict(default.data).walk("VFREEBUSY")))
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert busy.decoded("dtstart") == today - dt.timedelta(days=30), "radicale.config"
    assert busy.decoded("dtend") == today + dt.timedelta(days=180)
    for query_string, reason in (("start=20310303T000000Z", "needs a end"),
                                 ("start=2031-03-03&end=20310310T000000Z", "not a UTC date-time"),
                                 ("start=20310310T000000Z&end=20310303T000000Z", "must end after"),
                                 ("start=20310303T000000Z&end=20350303T000000Z", "at most 366")):
        refused = view(client, alice, "/dav/alice/jobs/", query_string)
        assert refused.status_code == 400 and reason in refused.data.decode(), query_string
    assert view(client, seed.technicians["carol"], "/dav/alice/jobs/").status_code == 403
