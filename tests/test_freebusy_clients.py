# ruff: noqa: F811  (the composed app's fixtures come from test_radicale_plugin)
"""Free/busy as clients get it: the `caldav` library's free-busy REPORT against a live server,
and the free/busy variant (VFREEBUSY) of a technician's feed link."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from davkit import dav_client
from feedkit import strict_parse
from freebusykit import CONTENT_TYPE, periods, strict
from live import LiveServer
from seeding import Seed, at, domain, fresh_technician, personal_event, put_personal
from test_radicale_plugin import app, client  # noqa: F401  (fixtures used by name)
from werkzeug.test import Client

from server import directory, links, scheduling
from server.db import Database, get_database
from server.models import utcnow
from server.scheduling import capacity

BUSY, UNAVAILABLE = "BUSY", "BUSY-UNAVAILABLE"
SIGNER = links.LinkSigner(("test-key-for-the-plugin-tests",))  # the key of settings_for


@pytest.fixture(scope="module")
def db(database_url: str, seed: Seed) -> Iterator[Database]:
    yield get_database(database_url)


def midnight(offset: int) -> dt.datetime:
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=offset)


def test_caldav_library_freebusy_request(live: LiveServer, seed: Seed) -> None:
    """caldav's Calendar.freebusy_request (RFC 4791 free-busy-query) on the jobs calendar."""
    alice = seed.technicians["alice"]
    calendar = dav_client(live, alice).calendar(url=live.url("/dav/alice/jobs/"))
    found = calendar.freebusy_request(at(0, 0), at(7, 0))
    text = found.data if isinstance(found.data, str) else found.data.decode()
    strict(text.encode())
    got = periods(text.encode())
    assert got == sorted((b.starts_at, b.ends_at, BUSY) for b in seed.jobs["alice"]
                         if at(0, 0) <= b.starts_at < at(7, 0))
    raw = calendar.client.request(str(calendar.url), "REPORT",
                                  '<?xml version="1.0"?><C:free-busy-query xmlns:C="urn:ietf:'
                                  'params:xml:ns:caldav"><C:time-range start="20310303T000000Z" '
                                  'end="20310310T000000Z"/></C:free-busy-query>',
                                  {"Content-Type": "application/xml", "Depth": "1"})
    assert raw.headers["Content-Type"] == CONTENT_TYPE


@pytest.fixture(scope="module")
def technician(db: Database, seed: Seed) -> tuple[str, int, list[tuple[dt.datetime, dt.datetime, str]]]:
    """A technician with a buffered visit, leave and a personal event, around today."""
    start, end = midnight(3) + dt.timedelta(hours=10), midnight(3) + dt.timedelta(hours=12)
    tech = fresh_technician(db, seed, "fbfeed", []).account
    with domain(db) as ctx:
        user = directory.find_user(ctx.session, tech.login)
        service = capacity.add_service_type(ctx, "fb-feed", "Feed visit", duration_minutes=120,
                                            buffer_before_minutes=30, travel_minutes=15)
        job = directory.add_job(ctx, directory.find_customer(ctx.session, seed.customer_ids[0]),
                                "Feed visit", problem="noise")
        scheduling.book(ctx, job, user, start, end, service_type=service)
        capacity.add_time_off(ctx, user, midnight(10), midnight(12), "leave")
        put_personal(ctx, tech.login, "dentist.ics", personal_event(
            "fbfeed-dentist", "Dentist", midnight(5) + dt.timedelta(hours=16),
            midnight(5) + dt.timedelta(hours=17)))
        subject = links.parse_subject(ctx.session, f"technician:{tech.login}")
        link = links.issue(ctx, links.Purpose.FEED, subject)
        expected = [
            (start - dt.timedelta(minutes=30), end + dt.timedelta(minutes=15), BUSY),
            (midnight(5) + dt.timedelta(hours=16), midnight(5) + dt.timedelta(hours=17), BUSY),
            (midnight(10), midnight(12), UNAVAILABLE),
        ]
        return SIGNER.dumps(link), link.id, expected


def test_feed_link_has_a_freebusy_variant(client: Client, technician: tuple) -> None:
    token, _link_id, expected = technician
    response = client.get(f"/feeds/{token}.ifb")
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"] == CONTENT_TYPE
    strict_parse(response.data)
    calendar = strict(response.data)
    found = periods(response.data)
    assert found == expected
    busy = next(iter(calendar.walk("VFREEBUSY")))
    assert busy.decoded("dtstart") <= midnight(0) < midnight(12) <= busy.decoded("dtend")
    assert b"Dentist" not in response.data, "free/busy shows no titles"
    again = client.get(f"/feeds/{token}.ifb", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    assert client.head(f"/feeds/{token}.ifb").status_code == 200
    events = client.get(f"/feeds/{token}.ics")
    assert events.status_code == 200 and b"BEGIN:VEVENT" in events.data


def test_freebusy_variant_follows_the_link(client: Client, db: Database, seed: Seed,
                                           technician: tuple) -> None:
    token, link_id, _expected = technician
    with domain(db) as ctx:
        team = links.issue(ctx, links.Purpose.FEED, links.parse_subject(ctx.session, "team:north"))
        team_token = SIGNER.dumps(team)
    assert client.get(f"/feeds/{team_token}.ics").status_code == 200
    assert client.get(f"/feeds/{team_token}.ifb").status_code == 404, "a team has no free/busy"
    assert client.get("/feeds/not-a-token.ifb").status_code == 404
    with domain(db) as ctx:
        links.revoke(ctx, links.get_link(ctx.session, link_id))
    assert client.get(f"/feeds/{token}.ifb").status_code == 404
