"""What phones PUT is either refused with a reason or stored so that strict parsers read it
as the same one object: no lone CR or other control character gets in, and every stored
item round-trips through `ical` and `icalendar`; REPORT with expand never answers 500."""

from __future__ import annotations

import datetime as dt
import secrets

import icalendar
import pytest
from davkit import ICS, XML, calendar_query, dav_request, parse_multistatus
from ical.calendar_stream import IcsCalendarStream
from live import LiveServer
from seeding import Seed, fresh_technician, items_of

from server.db import Database

HEAD = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fieldcal tests//EN"]
TAIL = ["END:VCALENDAR", ""]
START = dt.datetime(2031, 3, 3, 9, tzinfo=dt.UTC)


def vevent(uid: str, *lines: str) -> list[str]:
    return ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20310101T000000Z",
            "DTSTART:20310303T090000Z", "DTEND:20310303T100000Z", *lines, "END:VEVENT"]


def calendar(*lines: str) -> str:
    return "\r\n".join([*HEAD, *lines, *TAIL])


HOSTILE = {
    "lone CR in a quoted parameter": calendar(*vevent(
        "cr-param",
        'X-FOO;P="a\rEND:VEVENT\rBEGIN:VEVENT\rUID:cr-param\rDTSTART:20310304T100000Z\r'
        'RECURRENCE-ID:20310304T100000Z\r":value')),
    "lone CR in a value": calendar(*vevent("cr-value", "SUMMARY:one\rEND:VEVENT")),
    "bell in a parameter": calendar(*vevent("bel", 'X-FOO;P="a\x07b":value')),
    "vertical tab in a summary": calendar(*vevent("vt", "SUMMARY:a\x0bb")),
    "escape in a description": calendar(*vevent("esc", "DESCRIPTION:\x1b[31mred")),
    "DEL in a location": calendar(*vevent("del", "LOCATION:a\x7fb")),
}

GOOD = {
    "quoted parameters": calendar(*vevent(
        "quoted", 'ATTENDEE;CN="Keller, Anna";ROLE=REQ-PARTICIPANT:mailto:anna@example.test',
        'X-FOO;P="a;b:c":value')),
    "folded unicode": calendar(*vevent(
        "folded", "SUMMARY:Kompressor-Wartung bei der Müller & Söhne GmbH — zweiter Besuch"
        " wegen Druckabfall unter Last", "DESCRIPTION:Zeile 1\\nZeile 2\\, mit Komma")),
    "zoned weekly with an override": calendar(
        "BEGIN:VTIMEZONE", "TZID:Europe/Berlin",
        "BEGIN:STANDARD", "DTSTART:19701025T030000", "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
        "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "END:STANDARD",
        "BEGIN:DAYLIGHT", "DTSTART:19700329T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
        "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "END:DAYLIGHT", "END:VTIMEZONE",
        "BEGIN:VEVENT", "UID:weekly", "DTSTAMP:20310101T000000Z",
        "DTSTART;TZID=Europe/Berlin:20200106T090000", "DTEND;TZID=Europe/Berlin:20200106T100000",
        "RRULE:FREQ=WEEKLY", "SUMMARY:Team call", "END:VEVENT",
        "BEGIN:VEVENT", "UID:weekly", "DTSTAMP:20310101T000000Z",
        "RECURRENCE-ID;TZID=Europe/Berlin:20310303T090000",
        "DTSTART;TZID=Europe/Berlin:20310303T110000", "DTEND;TZID=Europe/Berlin:20310303T120000",
        "SUMMARY:Team call (moved)", "END:VEVENT"),
    "all-day yearly": calendar(
        "BEGIN:VEVENT", "UID:birthday", "DTSTAMP:20310101T000000Z",
        "DTSTART;VALUE=DATE:19800304", "DTEND;VALUE=DATE:19800305", "RRULE:FREQ=YEARLY",
        "SUMMARY:Birthday", "TRANSP:TRANSPARENT", "END:VEVENT"),
    "tab in a value": calendar(*vevent("tab", "SUMMARY:a\tb")),
}


@pytest.fixture(scope="module")
def phone(db: Database, seed: Seed) -> tuple[str, tuple[str, str]]:
    account = fresh_technician(db, seed, "strict", []).account
    return account.login, account.auth


def put(live: LiveServer, phone: tuple[str, tuple[str, str]], text: str) -> tuple[int, str]:
    login, auth = phone
    response = dav_request(live, "PUT", f"/dav/{login}/personal/{secrets.token_hex(6)}.ics", auth,
                           body=text.encode("utf-8"), headers=ICS)
    return response.status_code, response.text


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_control_characters_are_refused_with_a_reason(
        live: LiveServer, phone: tuple[str, tuple[str, str]], db: Database, name: str) -> None:
    before = stored_etags(db, phone[0])
    status, body = put(live, phone, HOSTILE[name])
    assert status == 400, body
    assert "carriage return" in body or "control character" in body, body
    assert stored_etags(db, phone[0]) == before


def stored_etags(db: Database, login: str) -> dict[str, str]:
    return {href: item.etag for href, item in items_of(db, f"{login}/personal").items()}


def test_stored_items_round_trip_through_strict_parsers_and_expand(
        live: LiveServer, phone: tuple[str, tuple[str, str]], db: Database) -> None:
    for name, text in GOOD.items():
        status, body = put(live, phone, text)
        assert status == 201, (name, body)
    for text in HOSTILE.values():
        put(live, phone, text)
    stored = items_of(db, f"{phone[0]}/personal")
    assert len(stored) == len(GOOD)
    for item in stored.values():
        strict = IcsCalendarStream.calendar_from_ics(item.text)
        parsed = icalendar.Calendar.from_ical(item.text)
        uids = {str(c["UID"]) for c in parsed.walk() if c.name in ("VEVENT", "VTODO")}
        assert uids == {item.uid}
        assert len(strict.events) + len(strict.todos) == len(
            [c for c in parsed.walk() if c.name in ("VEVENT", "VTODO")])
    login, auth = phone
    for expanded in (False, True):
        response = dav_request(live, "REPORT", f"/dav/{login}/personal/", auth,
                               body=calendar_query(START - dt.timedelta(days=7),
                                                   START + dt.timedelta(days=7), expand=expanded),
                               headers={**XML, "Depth": "1"})
        assert response.status_code == 207, response.text[:300]
        hrefs = {r.href.rsplit("/", 1)[-1] for r in parse_multistatus(response.content)}
        assert len(hrefs) == len(GOOD), hrefs
