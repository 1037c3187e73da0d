"""The PUT fast path (plugins.radicale.put_fast) answers and stores exactly as Radicale does.

A differential test: one sequence of PUTs (new events with and without
`If-None-Match: *`, the same href again, a UID in use at another href, a
to-do, recurring and zoned events, bodies Radicale rewrites or refuses, other
content types and charsets, preconditions, read-only views, an alias, another
user's calendar, a missing calendar) is sent with the fast path on for one fresh
technician and with it off (`put_fast.disabled()`) for another whose calendars
are the same. Every answer (status, Content-Type, ETag, body) must be equal, the
ETag must be the one GET and PROPFIND then report, and the stored items, the
change log and the audit trail of both calendars must be equal. The fast path
must have answered exactly the new objects (and the UID conflicts) it is meant for.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET  # our own answers, parsed for comparison
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import vobject
from davkit import BERLIN_VTIMEZONE as BERLIN
from davkit import CALENDAR_HEAD as HEAD
from davkit import calendar_query
from radicale import item as radicale_item
from seeding import Account, Seed, at, fresh_technician, items_of, personal_event
from sqlalchemy import select
from test_radicale_plugin import Dav, load_wsgi, settings_for
from werkzeug.test import Client

from plugins.radicale import put_fast
from server import calendars
from server.db import Database, get_database
from server.models import AuditEntry, Change

ICS = "text/calendar; charset=utf-8"


def calendar(*lines: str, head: str = HEAD) -> str:
    return head + "".join(f"{line}\r\n" for line in lines) + "END:VCALENDAR\r\n"


def event(uid: str, *lines: str) -> str:
    return calendar("BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20310101T000000Z", *lines,
                    "END:VEVENT")


def simple(uid: str, summary: str = "Event") -> str:
    return personal_event(uid, summary, at(20, 9), at(20, 10))


# Evolution writes an EXDATE as a DATE on a series of DATE-TIMEs. Radicale's writer turns
# it into a DATE-TIME like DTSTART; its reader (time ranges, expansion) needs that.
EVOLUTION_EXDATE = event(
    "evolution@t", "DTSTART:20310303T090000Z", "DTEND:20310303T100000Z",
    "RRULE:FREQ=DAILY;COUNT=5", "EXDATE;VALUE=DATE:20310304", "SUMMARY:Daily check")


@dataclass(frozen=True)
class Step:
    """One request: who sends it (None: the calendars' owner), where (`{login}` is the
    owner's login), what, and whether the fast path answers it."""

    name: str
    path: str
    body: str | bytes
    headers: dict[str, str]
    fast: bool
    sender: str | None = None


def put(name: str, path: str, body: str | bytes, fast: bool, sender: str | None = None,
        **headers: str) -> Step:
    return Step(name, path, body, {"Content-Type": ICS, **headers}, fast, sender)


STEPS = [
    put("new", "personal/new.ics", simple("new@t"), True),
    put("new if-none-match", "personal/inm.ics", simple("inm@t"), True, If_None_Match="*"),
    put("same href if-none-match", "personal/inm.ics", simple("inm@t", "Again"), False,
        If_None_Match="*"),
    put("same href replaced", "personal/inm.ics", simple("inm@t", "Replaced"), False),
    put("same href other uid", "personal/inm.ics", simple("other-uid@t"), False),
    put("uid at another href", "personal/dup.ics", simple("new@t", "Dup"), True),
    put("uid at another href if-none-match", "personal/dup2.ics", simple("new@t"), True,
        If_None_Match="*"),
    put("to-do", "personal/todo.ics", calendar(
        "BEGIN:VTODO", "UID:todo@t", "DTSTAMP:20310101T000000Z", "SUMMARY:Order filters",
        "DUE:20310310T170000Z", "END:VTODO"), True),
    put("recurring", "personal/weekly.ics", event(
        "weekly@t", "DTSTART:20310303T080000Z", "DTEND:20310303T083000Z",
        "RRULE:FREQ=WEEKLY;BYDAY=MO", "EXDATE:20310310T080000Z", "SUMMARY:Breakfast"), True),
    put("recurring with an override", "personal/override.ics", calendar(
        "BEGIN:VEVENT", "UID:override@t", "DTSTAMP:20310101T000000Z",
        "DTSTART:20310304T080000Z", "DTEND:20310304T090000Z", "RRULE:FREQ=DAILY;COUNT=5",
        "SUMMARY:Stand-up", "END:VEVENT", "BEGIN:VEVENT", "UID:override@t",
        "DTSTAMP:20310101T000000Z", "RECURRENCE-ID:20310305T080000Z",
        "DTSTART:20310305T100000Z", "DTEND:20310305T110000Z", "SUMMARY:Stand-up later",
        "END:VEVENT"), True),
    put("zoned", "personal/zoned.ics", event(
        "zoned@t", "DTSTART;TZID=Europe/Berlin:20310306T113000",
        "DTEND;TZID=Europe/Berlin:20310306T123000", "SUMMARY:Zoned").replace(
        HEAD, HEAD + BERLIN), True),
    put("zoned without its timezone", "personal/zoned-bare.ics", event(
        "zoned-bare@t", "DTSTART;TZID=Europe/Berlin:20310306T133000",
        "DTEND;TZID=Europe/Berlin:20310306T143000", "SUMMARY:Zoned bare"), True),
    put("all-day", "personal/allday.ics", event(
        "allday@t", "DTSTART;VALUE=DATE:20310307", "DTEND;VALUE=DATE:20310308",
        "SUMMARY:Inventory"), True),
    put("rewritten by Radicale", "personal/rewritten.ics",
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//x//EN\nBEGIN:VEVENT\nuid:rewritten@t\n"
        "dtstamp:20310101T000000Z\nDTSTART:20310308T080000Z\nDTEND:20310308T090000Z\n"
        "DURATION:PT0S\nSUMMARY:Ümlaut\\, comma\\; semicolon and a line long enough to be "
        "folded by the serialiser at seventy-five octets, twice over, really\n"
        "X-CUSTOM;X-PARAM=\"a:b\":value\nEND:VEVENT\nEND:VCALENDAR\n", True),
    put("Evolution's all-day EXDATE on a timed series", "personal/evolution.ics",
        EVOLUTION_EXDATE, True),
    put("odd href", "personal/a b+c&d.ics", simple("odd-href@t"), True),
    put("text/plain", "personal/plain.ics", simple("plain@t"), False,
        Content_Type="text/plain"),
    put("no charset", "personal/nocharset.ics", simple("nocharset@t"), True,
        Content_Type="text/calendar"),
    put("latin-1", "personal/latin.ics", simple("latin@t", "Grüße").encode("latin-1"),
        False, Content_Type="text/calendar; charset=iso-8859-1"),
    put("if-match on a new href", "personal/ifmatch.ics", simple("ifmatch@t"), False,
        If_Match='"nothing"'),
    put("if-none-match an etag", "personal/inm-etag.ics", simple("inm-etag@t"), False,
        If_None_Match='"nothing"'),
    put("not iCalendar", "personal/bad.ics", "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n",
        False),
    put("no UID", "personal/nouid.ics", calendar(
        "BEGIN:VEVENT", "DTSTAMP:20310101T000000Z", "DTSTART:20310309T080000Z",
        "END:VEVENT"), False),
    put("two UIDs", "personal/twouids.ics", calendar(
        "BEGIN:VEVENT", "UID:one@t", "DTSTAMP:20310101T000000Z", "DTSTART:20310309T080000Z",
        "END:VEVENT", "BEGIN:VEVENT", "UID:two@t", "DTSTAMP:20310101T000000Z",
        "DTSTART:20310309T090000Z", "END:VEVENT"), False),
    put("ends before it starts", "personal/backwards.ics", event(
        "backwards@t", "DTSTART:20310309T100000Z", "DTEND:20310309T090000Z",
        "SUMMARY:Ends before it starts"), True),
    put("refused by the domain", "personal/status.ics", event(
        "status@t", "DTSTART:20310309T100000Z", "STATUS:WRONG"), True),
    put("refused by the domain's reader", "personal/geo.ics", event(
        "geo@t", "DTSTART:20310309T100000Z", "GEO:abc"), True),
    put("refused by Radicale's writer", "personal/twice.ics", event(
        "twice@t", "DTSTART:20310309T100000Z", "SUMMARY:a", "SUMMARY:b"), False),
    put("a journal", "personal/journal.ics", calendar(
        "BEGIN:VJOURNAL", "UID:journal@t", "DTSTAMP:20310101T000000Z", "SUMMARY:Notes",
        "END:VJOURNAL"), True),
    put("too many occurrences", "personal/many.ics", event(
        "many@t", "DTSTART:20310303T080000Z", "RRULE:FREQ=SECONDLY;COUNT=9999999"), False),
    put("control characters", "personal/control.ics", simple("control@t", "a\x07b"), False),
    put("empty", "personal/empty.ics", "", False),
    put("jobs calendar", "jobs/new.ics", simple("jobs-new@t"), False),
    put("team view", "/team-north/schedule/new.ics", simple("team@t"), False),
    put("team view alias", "team-north~schedule/new.ics", simple("team-alias@t"), False),
    put("missing calendar", "nothing-here/new.ics", simple("missing@t"), False),
    put("too deep", "personal/a/b.ics", simple("deep@t"), False),
    put("the calendar itself", "personal/", simple("whole@t"), False),
    put("another user", "personal/bob.ics", simple("bob@t"), False, sender="bob"),
    put("the dispatcher through an alias", "/dispatch/{login}~personal/alias.ics",
        simple("alias@t"), False, sender="dispatch"),
    put("the dispatcher directly", "personal/dispatch.ics", simple("dispatch@t"), True,
        sender="dispatch"),
]


@pytest.fixture(scope="module")
def app(seed: Seed, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_wsgi().create_wsgi_app(settings_for(database_url, tmp_path_factory.mktemp("inst")))


def _url(step: Step, login: str) -> str:
    path = step.path.format(login=login)
    return f"/dav{path}" if path.startswith("/") else f"/dav/{login}/{path}"


def _sender(seed: Seed, owner: Account, step: Step) -> Account:
    if step.sender == "dispatch":
        return seed.dispatcher
    return seed.technicians[step.sender] if step.sender else owner


def _answer(response: Any, login: str) -> tuple[Any, ...]:
    body = response.data.replace(login.encode(), b"<login>")
    return (response.status_code, response.headers.get("Content-Type"),
            response.headers.get("ETag"), body)


def _stored(db: Database, login: str) -> dict[str, Any]:
    """The personal calendar's items, change log and audit trail; what the jobs calendar
    holds besides the booked visit (whose UID is random)."""
    out: dict[str, Any] = {}
    for name in (calendars.PERSONAL, calendars.JOBS):
        path = f"{login}/{name}"
        out[name] = {href: (i.uid, i.component, i.text, i.etag, i.dtstart, i.dtend, i.transparent)
                     for href, i in items_of(db, path).items() if i.appointment_id is None}
        with db.read() as session:
            collection = calendars.require_collection(session, path)
            changes = [(c.seq, c.href, c.op) for c in session.scalars(
                select(Change).where(Change.collection_id == collection.id).order_by(Change.id))]
            trail = [repr((e.action, e.actor, e.channel, e.before, e.after)).replace(login, "<login>")
                     for e in session.scalars(
                         select(AuditEntry).where(AuditEntry.entity == "collection",
                                                  AuditEntry.entity_id == str(collection.id))
                         .order_by(AuditEntry.id))]
        out[f"{name} changes"] = changes if name == calendars.PERSONAL else len(changes)
        out[f"{name} audit"] = trail if name == calendars.PERSONAL else len(trail)
    return out


def _etag_reported(dav: Dav, url: str) -> tuple[str | None, str | None]:
    got = dav("GET", url)
    listed = dav("PROPFIND", url, '<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>',
                 Depth="0", Content_Type="application/xml; charset=utf-8")
    found = ET.fromstring(listed.data).find(".//{DAV:}getetag") if listed.status_code == 207 else None
    return got.headers.get("ETag"), None if found is None else found.text


def _run(client: Client, seed: Seed, owner: Account, check: Callable[[Step, Any], None]
         ) -> list[tuple[Any, ...]]:
    answers = []
    for step in STEPS:
        dav = Dav(client, _sender(seed, owner, step))
        before = put_fast.COUNTS.answered
        response = dav("PUT", _url(step, owner.login), step.body, **step.headers)
        check(step, put_fast.COUNTS.answered - before)
        answers.append(_answer(response, owner.login))
        if response.status_code in (201, 204) and response.headers.get("ETag"):
            reported = _etag_reported(dav, _url(step, owner.login))
            assert reported == (response.headers["ETag"],) * 2, step.name
    return answers


def test_every_put_answers_and_stores_as_radicale(app: Any, seed: Seed, database_url: str) -> None:
    db = get_database(database_url)
    client = Client(app)
    slots = [(at(14, 9), at(14, 10))]
    fast_owner = fresh_technician(db, seed, "putfast", slots, team_slug="north").account
    slow_owner = fresh_technician(db, seed, "putslow", slots, team_slug="north").account
    missed: list[str] = []

    def expect_taken(step: Step, taken: int) -> None:
        if taken != int(step.fast):
            missed.append(f"{step.name}: fast path answered {taken}, expected {int(step.fast)}")

    fast = _run(client, seed, fast_owner, expect_taken)
    with put_fast.disabled():
        slow = _run(client, seed, slow_owner, lambda step, taken: None)
    assert not missed, "\n".join(missed)
    differences = [f"{step.name}: fast {mine!r} != Radicale {theirs!r}"
                   for step, mine, theirs in zip(STEPS, fast, slow, strict=True) if mine != theirs]
    assert not differences, "\n".join(differences)
    assert _stored(db, fast_owner.login) == _stored(db, slow_owner.login)
    statuses = {step.name: answer[0] for step, answer in zip(STEPS, fast, strict=True)}
    assert statuses["new"] == statuses["new if-none-match"] == statuses["to-do"] == 201
    assert statuses["uid at another href"] == 409 and statuses["same href if-none-match"] == 412
    assert statuses["refused by the domain"] == 400 and statuses["another user"] == 403


def test_the_fast_path_can_be_switched_off(app: Any, seed: Seed, database_url: str) -> None:
    db = get_database(database_url)
    owner = fresh_technician(db, seed, "putoff", [(at(14, 11), at(14, 12))]).account
    dav = Dav(Client(app), owner)
    before = put_fast.COUNTS.answered
    with put_fast.disabled():
        response = dav("PUT", f"/dav/{owner.login}/personal/off.ics", simple("off@t"),
                       Content_Type=ICS)
    assert response.status_code == 201 and put_fast.COUNTS.answered == before
    response = dav("PUT", f"/dav/{owner.login}/personal/on.ics", simple("on@t"),
                   Content_Type=ICS)
    assert response.status_code == 201 and put_fast.COUNTS.answered == before + 1


def test_client_quirks_are_cleaned_before_they_are_stored(app: Any, seed: Seed,
                                                          database_url: str) -> None:
    """The fast path keeps Radicale's clean-up of client quirks: the stored text is not the
    text as sent. Radicale's own reader fails on Evolution's body as sent, so storing it
    unchanged would break every query that meets it."""
    with pytest.raises(TypeError):
        radicale_item.find_time_range(vobject.readOne(EVOLUTION_EXDATE), "VEVENT")
    db = get_database(database_url)
    owner = fresh_technician(db, seed, "putquirk", [(at(14, 13), at(14, 14))]).account
    dav = Dav(Client(app), owner)
    before = put_fast.COUNTS.answered
    response = dav("PUT", f"/dav/{owner.login}/personal/evolution.ics", EVOLUTION_EXDATE,
                   Content_Type=ICS)
    assert response.status_code == 201 and put_fast.COUNTS.answered == before + 1
    stored = items_of(db, f"{owner.login}/personal")["evolution.ics"].text
    assert "EXDATE:20310304T090000Z" in stored and "VALUE=DATE" not in stored, stored
    start = dt.datetime(2031, 3, 3, tzinfo=dt.UTC)
    answer = dav("REPORT", f"/dav/{owner.login}/personal/",
                 calendar_query(start, start + dt.timedelta(days=7), expand=True),
                 Depth="1", Content_Type="application/xml; charset=utf-8")
    assert answer.status_code == 207, answer.data[:300]
    occurrences = [line for line in answer.data.decode().splitlines()
                   if line.startswith("RECURRENCE-ID")]
    assert sorted(occurrences) == [f"RECURRENCE-ID:203103{day:02d}T090000Z"
                                   for day in (3, 5, 6, 7)], answer.data[:600]
