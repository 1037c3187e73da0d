"""Whole-calendar GET over CalDAV: gzip made once per version and only for clients that ask,
its own ETag, Vary, and 304 for a matching If-None-Match (against gunicorn, 2 workers)."""

from __future__ import annotations

import gzip

import icalendar
from davkit import ICS, raw_request
from live import LiveServer
from seeding import Seed, at, fresh_technician, personal_event

from server.db import Database


def _path(login: str) -> str:
    return f"/dav/{login}/personal/"


def _put(live: LiveServer, auth: tuple[str, str], login: str, uid: str, summary: str) -> None:
    body = personal_event(uid, summary, at(2, 9), at(2, 10)).encode()
    response = raw_request(live, "PUT", f"{_path(login)}{uid}.ics", auth=auth, body=body,
                           headers=ICS)
    assert response.status in (201, 204), (response.status, response.text)


def test_gzip_only_when_asked_same_bytes_and_own_etag(live: LiveServer, seed: Seed,
                                                       db: Database) -> None:
    tech = fresh_technician(db, seed, "gz", []).account
    for n in range(30):
        _put(live, tech.auth, tech.login, f"gz-{n}", f"Visit number {n} at the depot")
    path = _path(tech.login)
    plain = raw_request(live, "GET", path, auth=tech.auth)
    assert plain.status == 200 and "content-encoding" not in plain.headers
    assert "accept-encoding" in plain.headers["vary"].lower()
    calendar = icalendar.Calendar.from_ical(plain.body)
    assert len(calendar.walk("VEVENT")) == 30
    refused = raw_request(live, "GET", path, auth=tech.auth,
                          headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers and refused.body == plain.body
    for accept in ("gzip", "deflate, gzip;q=0.5", "br, *"):
        packed = raw_request(live, "GET", path, auth=tech.auth, headers={"Accept-Encoding": accept})
        assert packed.status == 200, accept
        assert packed.headers["content-encoding"] == "gzip", accept
        assert "accept-encoding" in packed.headers["vary"].lower()
        assert packed.headers["content-type"].startswith("text/calendar")
        assert int(packed.headers["content-length"]) == len(packed.body)
        assert gzip.decompress(packed.body) == plain.body, accept
        assert len(packed.body) < len(plain.body) / 3
        assert packed.headers["etag"] != plain.headers["etag"]
        assert packed.headers["etag"].endswith('-gzip"')


def test_if_none_match_gives_304_until_the_calendar_changes(live: LiveServer, seed: Seed,
                                                            db: Database) -> None:
    tech = fresh_technician(db, seed, "nm", []).account
    _put(live, tech.auth, tech.login, "nm-1", "First")
    path = _path(tech.login)
    plain = raw_request(live, "GET", path, auth=tech.auth)
    packed = raw_request(live, "GET", path, auth=tech.auth, headers={"Accept-Encoding": "gzip"})
    for etag, accept in ((plain.headers["etag"], "identity"), (packed.headers["etag"], "gzip"),
                         (plain.headers["etag"], "gzip")):
        again = raw_request(live, "GET", path, auth=tech.auth,
                            headers={"If-None-Match": etag, "Accept-Encoding": accept})
        assert again.status == 304, (etag, accept, again.status)
        assert again.body == b""
        assert "accept-encoding" in again.headers["vary"].lower()
    other = raw_request(live, "GET", path, auth=tech.auth, headers={"If-None-Match": '"other"'})
    assert other.status == 200 and other.body == plain.body
    _put(live, tech.auth, tech.login, "nm-2", "Second")
    changed = raw_request(live, "GET", path, auth=tech.auth,
                          headers={"If-None-Match": plain.headers["etag"],
                                   "Accept-Encoding": "gzip"})
    assert changed.status == 200 and changed.headers["etag"] != packed.headers["etag"]
    assert b"SUMMARY:Second" in gzip.decompress(changed.body)


def test_item_get_revalidates_with_its_own_etag(live: LiveServer, seed: Seed,
                                                db: Database) -> None:
    tech = fresh_technician(db, seed, "it", []).account
    _put(live, tech.auth, tech.login, "it-1", "Item")
    target = f"{_path(tech.login)}it-1.ics"
    first = raw_request(live, "GET", target, auth=tech.auth)
    assert first.status == 200 and "accept-encoding" in first.headers["vary"].lower()
    again = raw_request(live, "GET", target, auth=tech.auth,
                        headers={"If-None-Match": first.headers["etag"]})
    assert again.status == 304 and again.headers["etag"] == first.headers["etag"]
    head = raw_request(live, "HEAD", _path(tech.login), auth=tech.auth,
                       headers={"Accept-Encoding": "gzip"})
    assert head.status == 200 and head.body == b""
