"""Recurrences cannot stall the server: what is refused on the way in, and what an expansion
costs (bounded by the queried window, never by when a series began).

Time limits here are generous safety bounds on a shared, loaded machine, not benchmarks:
before the window-bounded expansion the same requests ran for minutes.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time

import icalendar
import pytest
import recurring_ical_events
import requests
from bookkit import details, seed_booking
from davkit import ICS, XML, calendar_query, dav_request, parse_multistatus
from live import LiveServer
from seeding import Seed, domain

from server import directory, links, recurrence
from server.busy import MAX_OCCURRENCES, expand
from server.db import Database
from server.errors import InvalidInput
from server.ical import parse_object

KEYS = secrets.token_urlsafe(32)
NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
DAY = dt.timedelta(days=1)
YEAR = dt.timedelta(days=365)


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"FIELDCAL_SECRET_KEYS": KEYS, "FIELDCAL_BOOKING_RATE": "100000"}


def event(rule: str | None, start: str = ":20000101T000000Z", end: str = ":20000101T003000Z",
          uid: str | None = None, extra: str = "") -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fieldcal tests//EN", "BEGIN:VEVENT",
             f"UID:{uid or secrets.token_hex(6)}", "DTSTAMP:20200101T000000Z",
             f"DTSTART{start}", f"DTEND{end}", "SUMMARY:Recurring"]
    if rule:
        lines.append(f"RRULE:{rule}")
    if extra:
        lines.append(extra)
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def timed(action: object) -> tuple[object, float]:
    started = time.monotonic()
    result = action()  # type: ignore[operator]
    return result, time.monotonic() - started


# --------------------------------------------------------------------------- the policy

REFUSED = {
    "secondly": (event("FREQ=SECONDLY"), "more often than once an hour"),
    "minutely": (event("FREQ=MINUTELY;INTERVAL=5"), "more often than once an hour"),
    "two minutes an hour": (event("FREQ=HOURLY;BYMINUTE=0,30"), "more often than once an hour"),
    "until 9999": (event("FREQ=DAILY;UNTIL=99991231T235959Z"), "supported years"),
    "start in 9999": (event(None, ":99991231T100000Z", ":99991231T110000Z"), "supported years"),
    "start in 0001": (event(None, ":00010101T100000Z", ":00010101T110000Z"), "supported years"),
    "exdate in 0001": (event("FREQ=DAILY", extra="EXDATE:00010101T000000Z"), "supported years"),
    "huge count": (event("FREQ=HOURLY;COUNT=999999999"), "at most 10000"),
    "no freq": (event("INTERVAL=2"), "FREQ"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_absurd_rules_are_refused_with_a_reason(name: str) -> None:
    text, reason = REFUSED[name]
    with pytest.raises(InvalidInput) as refused:
        parse_object(text)
    assert reason in refused.value.message


def test_hourly_rule_without_end_is_accepted() -> None:
    assert parse_object(event("FREQ=HOURLY")).dtend is None


# --------------------------------------------------------------------------- expansion


@pytest.mark.parametrize("rule,start,end", [
    ("FREQ=HOURLY", ":20000101T000000Z", ":20000101T003000Z"),
    ("FREQ=HOURLY;INTERVAL=7", ";TZID=Europe/Berlin:20000101T000000",
     ";TZID=Europe/Berlin:20000101T003000"),
    ("FREQ=DAILY;BYHOUR=8,20", ":19990101T080000Z", ":19990101T090000Z"),
    ("FREQ=WEEKLY;INTERVAL=2", ";TZID=Europe/Berlin:20000103T090000",
     ";TZID=Europe/Berlin:20000103T100000"),
    ("FREQ=WEEKLY;BYDAY=MO,TH;WKST=SU;INTERVAL=3", ";TZID=America/New_York:19980104T230000",
     ";TZID=America/New_York:19980105T010000"),
    ("FREQ=MONTHLY", ":20000131T090000Z", ":20000131T100000Z"),
    ("FREQ=MONTHLY;INTERVAL=5;BYDAY=-1FR", ";TZID=America/New_York:19990101T090000",
     ";TZID=America/New_York:19990101T100000"),
    ("FREQ=YEARLY", ";VALUE=DATE:19520229", ";VALUE=DATE:19520301"),
    ("FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", ":15000326T010000Z", ":15000326T020000Z"),
    ("FREQ=DAILY;UNTIL=20270101T000000Z", ":20010101T120000Z", ":20010101T130000Z"),
])
def test_window_bounded_expansion_finds_the_same_occurrences(rule: str, start: str, end: str) -> None:
    text = event(rule, start, end)
    days = 1500 if "YEARLY" in rule else 120
    window = (NOW, NOW + dt.timedelta(days=days))
    reference = recurring_ical_events.of(icalendar.Calendar.from_ical(text)).between(*window)
    expected = sorted(_utc(e.get("dtstart").dt) for e in reference)
    assert expected, "the window holds occurrences"
    found = [o.starts_at for o in expand(text, *window).occurrences]
    assert found == expected[:MAX_OCCURRENCES]


def _utc(value: dt.date | dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def test_expansion_cost_depends_on_the_window_not_on_the_start() -> None:
    old = event("FREQ=HOURLY", ":19000101T000000Z", ":19000101T003000Z")
    day, day_s = timed(lambda: expand(old, NOW, NOW + DAY))
    assert len(day.occurrences) == 24  # type: ignore[attr-defined]
    assert day_s < 0.5, f"1 day of an hourly rule from 1900: {day_s:.2f} s"
    year, year_s = timed(lambda: expand(old, NOW, NOW + YEAR))
    assert len(year.occurrences) == MAX_OCCURRENCES  # type: ignore[attr-defined]
    assert year_s < 3.0, f"1 year of an hourly rule from 1900: {year_s:.2f} s"


def test_a_dense_rule_stored_before_the_policy_is_busy_without_walking_it() -> None:
    dense = event("FREQ=SECONDLY", ":20000101T000000Z", ":20000101T000001Z")
    found, seconds = timed(lambda: expand(dense, NOW, NOW + YEAR))
    occurrences = found.occurrences  # type: ignore[attr-defined]
    assert [(o.starts_at, o.ends_at) for o in occurrences] == [(NOW, NOW + YEAR)]
    assert seconds < 0.5


def test_shift_keeps_rules_with_count_as_they_are() -> None:
    component = icalendar.Calendar.from_ical(event("FREQ=HOURLY;COUNT=5")).walk("VEVENT")[0]
    recurrence.shift_to(component, NOW)
    assert component.get("dtstart").dt.year == 2000


# --------------------------------------------------------------------------- a live server


def put(live: LiveServer, account: tuple[str, str], login: str, text: str) -> tuple[int, str]:
    href = f"{secrets.token_hex(6)}.ics"
    response = dav_request(live, "PUT", f"/dav/{login}/personal/{href}", account, body=text,
                           headers=ICS)
    return response.status_code, response.text


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_caldav_put_of_an_absurd_rule_is_400_with_its_reason(live: LiveServer, seed: Seed,
                                                               name: str) -> None:
    text, reason = REFUSED[name]
    status, body = put(live, seed.technicians["alice"].auth, "alice", text)
    assert status == 400, body
    assert reason in body


def test_old_hourly_series_keeps_every_face_fast(live: LiveServer, seed: Seed, db: Database) -> None:
    prefix = f"r{secrets.token_hex(2)}"
    booking = seed_booking(db, prefix)
    with domain(db) as ctx:
        user = directory.find_user(ctx.session, booking.technician)
        _credential, password = directory.issue_password(ctx, user, "tests")
        subject = links.Subject(links.SubjectKind.TECHNICIAN, user.id, user.login)
        feed = links.issue(ctx, links.Purpose.FEED, subject)
        feed_token = links.LinkSigner((KEYS,)).dumps(feed)
    login = booking.technician
    auth = (login, password)
    # An hourly call from 2001 on, for ever, and a weekly one from 1990.
    assert put(live, auth, login, event("FREQ=HOURLY", ":20010101T000000Z",
                                        ":20010101T001500Z"))[0] == 201
    assert put(live, auth, login, event("FREQ=WEEKLY", ":19900101T090000Z",
                                        ":19900101T100000Z"))[0] == 201
    path = f"/dav/{login}/personal/"
    for span, expanded, limit, items in ((DAY, False, 2.0, 1), (DAY, True, 2.0, 1),
                                         (YEAR, False, 5.0, 2), (YEAR, True, 5.0, 0)):
        query = calendar_query(NOW, NOW + span, expand=expanded)
        response, seconds = timed(lambda q=query: dav_request(
            live, "REPORT", path, auth, body=q, headers={**XML, "Depth": "1"}))
        assert seconds < limit, f"REPORT over {span}, expand={expanded}: {seconds:.2f} s"
        status, text = response.status_code, response.text  # type: ignore[attr-defined]
        if items:
            assert status == 207, text[:300]
            assert len(parse_multistatus(response.content)) == items  # type: ignore[attr-defined]
        else:  # 8,760 hourly occurrences asked for: refused with the reason (max-instances)
            assert status == 403, text[:300]
            assert "repeats more than 500 times" in text and "shorter time range" in text
    feed_response, seconds = timed(lambda: dav_request(live, "GET", f"/feeds/{feed_token}.ics", None))
    assert feed_response.status_code == 200  # type: ignore[attr-defined]
    assert seconds < 5.0, f"feed: {seconds:.2f} s"
    page, seconds = timed(lambda: requests.post(live.url(f"/book/{booking.repair}/details"),
                                                data=details("old@example.test"), timeout=60))
    assert page.status_code == 200, page.text[:300]  # type: ignore[attr-defined]
    assert seconds < 5.0, f"booking details: {seconds:.2f} s"


def test_recurring_item_without_start_is_400(live: LiveServer, seed: Seed) -> None:
    for component in ("VEVENT", "VTODO"):
        text = "\r\n".join([
            "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fieldcal tests//EN",
            f"BEGIN:{component}", f"UID:{secrets.token_hex(6)}", "DTSTAMP:20200101T000000Z",
            "SUMMARY:No start", "RRULE:FREQ=WEEKLY;COUNT=3", f"END:{component}",
            "END:VCALENDAR", ""])
        status, body = put(live, seed.technicians["alice"].auth, "alice", text)
        assert status == 400, (component, status, body)
        assert "needs a DTSTART" in body
