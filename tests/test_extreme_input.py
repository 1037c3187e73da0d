"""Extreme and malformed dates, numbers and headers on every public route that reads one:
never a 500 (a live gunicorn, on SQLite and PostgreSQL). Values the server can read but
not work with (a week in year 9999, a slot in year 1) are a 400 that says the range."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import requests
from bookkit import confirmed_booking, free_starts, seed_booking
from davkit import ICS, raw_request
from live import LiveServer
from seeding import Seed, domain, personal_event

from server import directory, links
from server.models import utcnow
from share.forms import Details, FormSigner

KEYS = secrets.token_urlsafe(32)
DATES = ["9999-12-31", "0001-01-01", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00",
         "0001-01-01T00:30:00+14:00", "9999-12-31T23:30:00-14:00", "2031-02-30", "2031-03-03T10:00",
         "2031-03-03T25:00:00+00:00", "2031-03-03T10:00:00+99:00", "garbage", "", "1" * 5000,
         "-1", "99999999999999999999", "2031-03-03\x00", "２０３１-０３-０３", "0"]
NUMBERS = ["99999999999999999999", "2147483648", "9223372036854775808", "-1", "0", "1e9",
           "0x10", "1.5", "%00", "", "٣"]
HEADERS = {
    "Depth": ["infinity", "2", "-1", "99999999999999999999", "abc", "1, 1", "", "\t"],
    "If-Match": ["*", '"nope"', "W/\"x\"", "garbage", '"' + "a" * 5000 + '"', ",,,", '"', ""],
    "If-None-Match": ["*", '"nope"', "garbage", '"' + "a" * 5000 + '"', ""],
    "If-Modified-Since": ["Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT",
                          "garbage", "99999999999999999999", ""],
    "Content-Length": ["abc", "-1", "99999999999999999999", "1e3", " 5", "0x10"],
}
OUT_OF_RANGE = {  # readable, but outside the supported years
    "week": {"9999-12-31", "0001-01-01"},
    "slot": {"9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00", "0001-01-01T00:30:00+14:00",
             "9999-12-31T23:30:00-14:00"},
}


# Fields that are always read (others only on some paths: a customer page has no weeks).
READ_FIELDS = {("share team page", "week"), ("manage page", "week"), ("manage reschedule", "slot"),
               ("booking slots", "week"), ("booking hold", "slot")}


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"FIELDCAL_SECRET_KEYS": KEYS, "FIELDCAL_BOOKING_RATE": "1000000"}


@dataclass(frozen=True)
class Targets:
    slug: str
    share_team: str
    share_customer: str
    feed: str
    manage: str
    manage_csrf: str
    details: str
    login: str
    auth: tuple[str, str]


@pytest.fixture(scope="module")
def targets(live: LiveServer, seed: Seed, db: object) -> Targets:
    prefix = f"x{secrets.token_hex(2)}"
    booking = seed_booking(db, prefix)  # type: ignore[arg-type]
    signer = links.LinkSigner((KEYS,))
    forms = FormSigner((KEYS,))
    starts = free_starts(db, booking.repair, utcnow())  # type: ignore[arg-type]
    later = [s for s in starts if s > utcnow() + dt.timedelta(days=3)]
    _appointment, manage = confirmed_booking(db, signer, booking.repair, later[0],  # type: ignore[arg-type]
                                             f"{prefix}@example.test", secrets.token_urlsafe(18))
    with domain(db) as ctx:  # type: ignore[arg-type]
        team = directory.find_team(ctx.session, seed.team_slug)
        share_team = links.issue(ctx, links.Purpose.SHARE,
                                 links.Subject(links.SubjectKind.TEAM, team.id, team.slug))
        customer = seed.customer_ids[0]
        share_customer = links.issue(ctx, links.Purpose.SHARE,
                                     links.Subject(links.SubjectKind.CUSTOMER, customer, "c"))
        alice = directory.find_user(ctx.session, "alice")
        feed = links.issue(ctx, links.Purpose.FEED,
                           links.Subject(links.SubjectKind.TECHNICIAN, alice.id, alice.login))
        manage_link = links.resolve(ctx.session, signer, manage, links.Purpose.MANAGE)
        csrf = forms.csrf_token("manage", manage_link.id, manage_link.version)
        tokens = (signer.dumps(share_team), signer.dumps(share_customer), signer.dumps(feed))
    details = forms.details_token(Details(problem="Noise", address="Hauptstraße 1", name="Dana",
                                          email=f"{prefix}@example.test", timezone="Europe/Berlin"))
    return Targets(booking.repair, *tokens[:2], tokens[2], manage, csrf, details, "alice",
                   seed.technicians["alice"].auth)


def cases() -> list[tuple[str, str, str]]:
    """(route, field, value) for every public input that is a date, a number or a header."""
    found: list[tuple[str, str, str]] = []
    for value in DATES:
        found += [("share team page", "week", value), ("share customer page", "week", value),
                  ("manage page", "week", value), ("manage reschedule", "slot", value),
                  ("booking slots", "week", value), ("booking hold", "slot", value),
                  ("booking hold", "week", value), ("booking details", "timezone", value)]
    for value in NUMBERS:
        found += [("share visit ics", "appointment id", value)]
    for header, values in HEADERS.items():
        for value in values:
            if header in ("Depth",):
                found += [("caldav propfind", header, value), ("caldav report", header, value)]
            elif header == "If-Match":
                found += [("caldav put", header, value), ("caldav delete", header, value)]
            elif header == "Content-Length":
                found += [("caldav put", header, value), ("booking details", header, value)]
            else:
                found += [("feed", header, value), ("caldav get", header, value)]
    return found


def send(live: LiveServer, t: Targets, route: str, field: str, value: str) -> tuple[int, str]:
    def get(path: str, **params: str) -> requests.Response:
        return requests.get(live.url(path), params=params, timeout=60, allow_redirects=False)

    def post(path: str, data: dict[str, str]) -> requests.Response:
        return requests.post(live.url(path), data=data, timeout=60, allow_redirects=False)

    if route == "share team page":
        response = get(f"/s/{t.share_team}", week=value)
    elif route == "share customer page":
        response = get(f"/s/{t.share_customer}", week=value)
    elif route == "manage page":
        response = get(f"/m/{t.manage}", week=value)
    elif route == "manage reschedule":
        response = post(f"/m/{t.manage}/reschedule", {"csrf": t.manage_csrf, "slot": value})
    elif route == "booking slots":
        response = post(f"/book/{t.slug}/slots", {"details": t.details, "week": value})
    elif route == "booking hold":
        form = {"details": t.details, "key": secrets.token_urlsafe(18),
                "slot": "2031-03-03T10:00:00+00:00", "week": ""}
        form[field] = value
        response = post(f"/book/{t.slug}/hold", form)
    elif route == "booking details" and field == "timezone":
        response = post(f"/book/{t.slug}/details", {"problem": "x", "address": "y", "name": "z",
                                                    "email": "a@example.test", "timezone": value})
    elif route == "share visit ics":
        raw = raw_request(live, "GET", f"/s/{t.share_customer}/visits/{quote(value)}.ics", auth=None)
        return raw.status, raw.text
    else:
        return send_raw(live, t, route, field, value)
    return response.status_code, response.text


def send_raw(live: LiveServer, t: Targets, route: str, header: str, value: str) -> tuple[int, str]:
    """Header cases, sent byte for byte (requests would fix Content-Length)."""
    headers = {header: value}
    body: bytes | None = None
    path = f"/dav/{t.login}/personal/"
    auth: tuple[str, str] | None = t.auth
    if route == "caldav propfind":
        method = "PROPFIND"
    elif route == "caldav report":
        method = "REPORT"
        body = (b'<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" '
                b'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop>'
                b'<C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>')
        headers["Content-Type"] = "application/xml"
    elif route == "caldav put":
        method, path = "PUT", f"{path}extreme-{secrets.token_hex(3)}.ics"
        body = personal_event(secrets.token_hex(4), "x", dt.datetime(2031, 3, 3, 9, tzinfo=dt.UTC),
                              dt.datetime(2031, 3, 3, 10, tzinfo=dt.UTC)).encode()
        headers.update(ICS)
    elif route == "caldav delete":
        method, path = "DELETE", f"{path}missing-{secrets.token_hex(3)}.ics"
    elif route == "caldav get":
        method, path = "GET", f"{path}missing.ics"
    elif route == "feed":
        method, path, auth = "GET", f"/feeds/{t.feed}.ics", None
    else:  # booking details with a broken Content-Length
        method, path, auth = "POST", f"/book/{t.slug}/details", None
        body = b"problem=x&address=y&name=z&email=a%40example.test"
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if header == "Content-Length" and body is None:
        body = b""
    response = raw_request(live, method, path, auth=auth, body=body, headers=headers, timeout=60)
    return response.status, response.text


@pytest.mark.parametrize("route,field,value", cases(),
                         ids=lambda v: repr(v)[:40] if isinstance(v, str) else str(v))
def test_extreme_input_is_never_a_server_error(live: LiveServer, targets: Targets, route: str,
                                               field: str, value: str) -> None:
    status, text = send(live, targets, route, field, value)
    assert status < 500, (status, text[:500])
    if value in OUT_OF_RANGE.get(field, ()) and (route, field) in READ_FIELDS:
        assert status == 400, (status, text[:300])
        assert "supported years" in text
