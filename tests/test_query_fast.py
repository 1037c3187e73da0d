"""The calendar-query fast path (plugins.radicale.query_fast) answers exactly as Radicale does.

A differential test: every calendar-query body of tests/data/report/ (what the
`caldav` library, DAVx5, Thunderbird, Evolution and iOS send, transcribed, and
bodies Radicale must answer itself: expand, partial retrieval, prop-filters,
unknown properties, lowercase names, a timezone, a bad time, no filter) is sent
to every kind of collection (jobs, personal, team and customer views, aliases
in a home, a home, the root, an item, a missing calendar) as the owner, the
dispatcher, a technician of the same team and one of another team, with the
fast path on and off (`query_fast.disabled()`). The calendars hold recurring
events (RRULE, RDATE, EXDATE, an override), all-day and floating times, zoned
times (one in a daylight-saving gap), an event longer than the queried week, a
zero-length one, one with DURATION, a to-do and text that needs escaping.
Status, headers and the parsed multistatus must be equal (whitespace aside),
and the fast path must have answered exactly the queries it is meant for.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # our own answers, parsed for comparison
from pathlib import Path
from typing import Any

import pytest
from davkit import BERLIN_VTIMEZONE as BERLIN
from davkit import CALENDAR_HEAD as HEAD
from seeding import Seed, domain, put_personal
from test_propfind_fast import answer, first_difference, paths
from test_radicale_plugin import Dav, load_wsgi, settings_for
from werkzeug.test import Client

from plugins.radicale import query_fast
from server.db import get_database

CORPUS = Path(__file__).parent / "data" / "report"
BODIES = {path.stem: path.read_bytes() for path in sorted(CORPUS.glob("*.xml"))}


def calendar(*components: str, timezone: str = "") -> str:
    return HEAD + timezone + "".join(components) + "END:VCALENDAR\r\n"


def vevent(uid: str, *lines: str) -> str:
    return "\r\n".join(["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20310101T000000Z", *lines,
                        "END:VEVENT", ""])


ITEMS = {
    "allday.ics": calendar(vevent("allday@t", "DTSTART;VALUE=DATE:20310307",
                                  "DTEND;VALUE=DATE:20310308", "SUMMARY:Inventory day")),
    "allday-before.ics": calendar(vevent("allday-before@t", "DTSTART;VALUE=DATE:20310302",
                                         "SUMMARY:Day before the week")),
    "floating.ics": calendar(vevent("floating@t", "DTSTART:20310306T100000",
                                    "DTEND:20310306T110000", "SUMMARY:Floating")),
    "floating-edge.ics": calendar(vevent("floating-edge@t", "DTSTART:20310309T233000",
                                         "DTEND:20310310T003000", "SUMMARY:Floating edge")),
    "zoned.ics": calendar(vevent("zoned@t", "DTSTART;TZID=Europe/Berlin:20310306T113000",
                                 "DTEND;TZID=Europe/Berlin:20310306T123000", "SUMMARY:Zoned"),
                          timezone=BERLIN),
    "gap.ics": calendar(vevent("gap@t", "DTSTART;TZID=America/New_York:20310309T023000",
                               "DTEND;TZID=America/New_York:20310309T033000", "SUMMARY:In the gap")),
    "long.ics": calendar(vevent("long@t", "DTSTART:20310201T000000Z", "DTEND:20310401T000000Z",
                                "SUMMARY:Longer than the week")),
    "zero.ics": calendar(vevent("zero@t", "DTSTART:20310303T000000Z", "DTEND:20310303T000000Z",
                                "SUMMARY:Zero length at the start")),
    "ends-at-start.ics": calendar(vevent("ends@t", "DTSTART:20310302T230000Z",
                                         "DTEND:20310303T000000Z", "SUMMARY:Ends as the week starts")),
    "duration.ics": calendar(vevent("duration@t", "DTSTART:20310304T060000Z", "DURATION:PT2H",
                                    "SUMMARY:With a duration")),
    "escaped.ics": calendar(vevent("escaped@t", "DTSTART:20310305T120000Z",
                                   "DTEND:20310305T130000Z", "SUMMARY:Tom & Jerry <b>lunch</b>",
                                   "DESCRIPTION:a > b & c < d ]]> \"quoted\" 'single'")),
    "rdate.ics": calendar(vevent("rdate@t", "DTSTART:20310201T090000Z", "DTEND:20310201T100000Z",
                                 "RDATE:20310305T090000Z", "SUMMARY:Extra date")),
    "exdate.ics": calendar(vevent("exdate@t", "DTSTART:20310210T090000Z",
                                  "DTEND:20310210T100000Z", "RRULE:FREQ=WEEKLY;COUNT=6",
                                  "EXDATE:20310303T090000Z", "SUMMARY:Week excluded")),
    "override-out.ics": calendar(
        vevent("override-out@t", "DTSTART:20310217T140000Z", "DTEND:20310217T150000Z",
               "RRULE:FREQ=WEEKLY;COUNT=3", "SUMMARY:Weekly"),
        vevent("override-out@t", "RECURRENCE-ID:20310303T140000Z", "DTSTART:20310312T140000Z",
               "DTEND:20310312T150000Z", "SUMMARY:Moved out of the week")),
    "override-in.ics": calendar(
        vevent("override-in@t", "DTSTART:20310310T140000Z", "DTEND:20310310T150000Z",
               "RRULE:FREQ=WEEKLY;COUNT=2", "SUMMARY:Weekly"),
        vevent("override-in@t", "RECURRENCE-ID:20310317T140000Z", "DTSTART:20310305T140000Z",
               "DTEND:20310305T150000Z", "SUMMARY:Moved into the week")),
    "zero-mid.ics": calendar(vevent("zero-mid@t", "DTSTART:20310305T100000Z",
                                    "DTEND:20310305T100000Z", "SUMMARY:Zero length inside")),
    "allday-weekly.ics": calendar(vevent("allday-weekly@t", "DTSTART;VALUE=DATE:20310105",
                                         "DTEND;VALUE=DATE:20310106", "RRULE:FREQ=WEEKLY",
                                         "SUMMARY:Every Wednesday")),
    "floating-daily.ics": calendar(vevent("floating-daily@t", "DTSTART:20310101T233000",
                                          "DTEND:20310102T000000", "RRULE:FREQ=DAILY;COUNT=70",
                                          "SUMMARY:Late check")),
    "zoned-weekly.ics": calendar(vevent(
        "zoned-weekly@t", "DTSTART;TZID=Europe/Berlin:20310106T080000",
        "DTEND;TZID=Europe/Berlin:20310106T090000", "RRULE:FREQ=WEEKLY;UNTIL=20311231T000000Z",
        "SUMMARY:Zoned weekly"), timezone=BERLIN),
    "todo.ics": calendar("\r\n".join([
        "BEGIN:VTODO", "UID:todo@t", "DTSTAMP:20310101T000000Z", "DUE:20310305T170000Z",
        "SUMMARY:Order filters", "END:VTODO", ""])),
    "todo-undated.ics": calendar("\r\n".join([
        "BEGIN:VTODO", "UID:todo-undated@t", "DTSTAMP:20310101T000000Z",
        "SUMMARY:Someday", "END:VTODO", ""])),
}
# Radicale's own answer only: bodies outside the plain shape.
RADICALE_ANSWERS = {name for name in BODIES if name.startswith("fallback-")}


@pytest.fixture(scope="module")
def app(seed: Seed, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = get_database(database_url)
    with domain(db) as ctx:
        for href, text in ITEMS.items():
            put_personal(ctx, "alice", href, text)
        put_personal(ctx, "carol", "floating.ics", ITEMS["floating.ics"])
    return load_wsgi().create_wsgi_app(settings_for(database_url, tmp_path_factory.mktemp("inst")))


@pytest.fixture(scope="module")
def client(app: Any) -> Client:
    return Client(app)


def both(dav: Dav, path: str, body: bytes, **headers: str) -> tuple[Any, Any, int]:
    """(fast path's answer, Radicale's answer, how many the fast path answered)."""
    before = query_fast.COUNTS.answered
    fast = answer(dav("REPORT", path, body, **headers))
    taken = query_fast.COUNTS.answered - before
    with query_fast.disabled():
        reference = answer(dav("REPORT", path, body, **headers))
    assert query_fast.COUNTS.answered - before == taken
    return fast, reference, taken


@pytest.mark.parametrize("login", ["alice", "dispatch", "bob", "carol"])
def test_every_client_query_on_every_collection_answers_as_radicale(
        client: Client, seed: Seed, login: str) -> None:
    account = seed.dispatcher if login == "dispatch" else seed.technicians[login]
    dav = Dav(client, account)
    differences: list[str] = []
    answered = 0
    for path, is_calendar in paths(seed).items():
        for name, body in BODIES.items():
            for round_ in ("cold", "warm"):  # the second answer comes from cached fragments
                fast, reference, taken = both(dav, path, body, Depth="1")
                if fast != reference:
                    differences.append(f"{name} on {path} ({round_}): "
                                       f"{first_difference(fast, reference)}")
                expected = is_calendar and name not in RADICALE_ANSWERS and reference[0] == 207
                if taken != int(expected):
                    differences.append(f"{name} on {path}: fast path answered {taken}, "
                                       f"expected {expected}")
                answered += taken
    assert not differences, "\n".join(differences[:5])
    assert answered > 0


def hrefs(dav: Dav, name: str) -> set[str]:
    response = dav("REPORT", "/dav/alice/personal/", BODIES[name], Depth="1")
    assert response.status_code == 207
    return {e.text or "" for e in ET.fromstring(response.data).iter("{DAV:}href")}


def test_the_week_holds_what_rfc_4791_says(client: Client, seed: Seed) -> None:
    """Independent of Radicale: which of the odd items the fast path finds in the week."""
    dav = Dav(client, seed.technicians["alice"])
    before = query_fast.COUNTS.answered
    found = {href.rsplit("/", 1)[1] for href in hrefs(dav, "evolution-week")}
    assert query_fast.COUNTS.answered == before + 1
    inside = {"allday.ics", "floating.ics", "zoned.ics", "gap.ics", "long.ics", "zero-mid.ics",
              "duration.ics", "escaped.ics", "rdate.ics", "override-in.ics", "allday-weekly.ics",
              "floating-daily.ics", "zoned-weekly.ics", "dentist.ics", "breakfast.ics"}
    outside = {"allday-before.ics", "ends-at-start.ics", "zero.ics", "exdate.ics",
               "override-out.ics", "todo.ics", "todo-undated.ics"}  # RFC 4791 §9.9: start < DTEND
    assert inside <= found
    assert not outside & found


def test_calendar_data_is_the_stored_text_escaped(client: Client, seed: Seed) -> None:
    dav = Dav(client, seed.technicians["alice"])
    response = dav("REPORT", "/dav/alice/personal/", BODIES["caldav-search-etag"], Depth="1")
    assert b"Tom &amp; Jerry &lt;b&gt;lunch&lt;/b&gt;" in response.data
    root = ET.fromstring(response.data)
    texts = {r.findtext("{DAV:}href"): r.findtext(".//{urn:ietf:params:xml:ns:caldav}calendar-data")
             for r in root.iter("{DAV:}response")}
    assert texts["/dav/alice/personal/escaped.ics"] == ITEMS["escaped.ics"].replace("\r\n", "\n")


def test_a_change_is_answered_at_once(client: Client, seed: Seed) -> None:
    """Fragments and filter outcomes are per item version: never answered stale."""
    dav = Dav(client, seed.technicians["carol"])
    path = "/dav/carol/personal/"
    moved = ITEMS["floating.ics"].replace("20310306T1", "20310316T1")
    assert "/dav/carol/personal/floating.ics" in {
        e.text for e in ET.fromstring(dav("REPORT", path, BODIES["evolution-week"]).data).iter(
            "{DAV:}href")}
    assert dav("PUT", f"{path}floating.ics", moved,
               Content_Type="text/calendar").status_code in (201, 204)
    after = dav("REPORT", path, BODIES["evolution-week"])
    with query_fast.disabled():
        assert answer(after) == answer(dav("REPORT", path, BODIES["evolution-week"]))
    assert b"floating.ics" not in after.data


def test_the_fast_path_can_be_switched_off() -> None:
    assert query_fast._enabled.get()
    with query_fast.disabled():
        assert not query_fast._enabled.get()
    assert query_fast._enabled.get()
