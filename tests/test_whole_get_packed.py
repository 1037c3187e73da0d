"""A whole calendar bigger than whole_get.PLAIN_LIMIT is made and kept as its gzip alone:
the same bytes as before for every client, the plain answer inflated chunk by chunk with
its Content-Length, and the cache holding the gzip only (in process, both databases)."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import pytest
from seeding import Seed, at, domain, fresh_technician, personal_event, put_personal
from test_radicale_plugin import Dav, load_wsgi, settings_for
from werkzeug.test import Client

from plugins.radicale import whole_get
from server import bodycache
from server.bodycache import Packed
from server.db import get_database

ZONE = (
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
    "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"
    "END:STANDARD\r\nEND:VTIMEZONE\r\n"
)
EVENTS = 300


def _zoned(n: int) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n" + ZONE
            + f"BEGIN:VEVENT\r\nUID:zoned-{n}@example.test\r\nDTSTAMP:20310101T000000Z\r\n"
            f"DTSTART;TZID=Europe/Berlin:20311110T09000{n}\r\n"
            f"DTEND;TZID=Europe/Berlin:20311110T10000{n}\r\nSUMMARY:Zoned {n}\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n")


@pytest.fixture(scope="module")
def calendar(seed: Seed, database_url: str, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Dav, str]:
    db = get_database(database_url)
    made = fresh_technician(db, seed, "packed", [])
    login = made.account.login
    with domain(db) as ctx:
        for n in range(EVENTS):  # one zoned event early, one late: past the limit
            text = (_zoned(n % 10) if n in (3, EVENTS - 2) else
                    personal_event(f"p-{n}@example.test", f"Visit {n} — Zürich", at(2, 9), at(2, 10)))
            put_personal(ctx, login, f"p-{n}.ics", text)
    app: Any = load_wsgi().create_wsgi_app(settings_for(database_url, tmp_path_factory.mktemp("i")))
    return Dav(Client(app), made.account), f"/dav/{login}/personal/"


def _get(dav: Dav, path: str, **headers: str) -> Any:
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    return dav.client.open(path, method="GET", headers={**dav_auth(dav), **sent},
                           buffered=False)


def dav_auth(dav: Dav) -> dict[str, str]:
    assert dav.account is not None
    token = f"{dav.account.login}:{dav.account.password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(token).decode()}


def test_big_calendar_is_kept_as_gzip_and_served_alike(calendar: tuple[Dav, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    dav, path = calendar
    whole_get.WHOLE_CALENDARS.clear()
    plain = dav("GET", path)
    packed = dav("GET", path, Accept_Encoding="gzip")
    assert plain.status_code == packed.status_code == 200
    body = plain.data
    assert body.count(b"BEGIN:VTIMEZONE") == 1 and body.index(b"BEGIN:VTIMEZONE") < body.index(
        b"BEGIN:VEVENT") and body.count(b"BEGIN:VEVENT") == EVENTS
    assert whole_get.WHOLE_CALENDARS.size > len(body)  # small: the plain body is kept
    whole_get.WHOLE_CALENDARS.clear()
    monkeypatch.setattr(whole_get, "PLAIN_LIMIT", len(body) // 5)
    monkeypatch.setattr(bodycache, "INFLATE_OUTPUT", 4096)
    for first in ("identity", "gzip"):  # a miss answered plain or gzipped, then hits
        whole_get.WHOLE_CALENDARS.clear()
        for accept in (first, "identity", "gzip"):
            answer = _get(dav, path, Accept_Encoding=accept)
            chunks = list(answer.response)
            answer.close()
            assert answer.status_code == 200
            assert answer.headers["ETag"] == (packed if accept == "gzip" else plain).headers["ETag"]
            assert answer.headers["Vary"] == plain.headers["Vary"]
            if accept == "gzip":
                assert answer.headers["Content-Encoding"] == "gzip"
                assert b"".join(chunks) == packed.data  # byte for byte the gzip of the body
            else:
                assert "Content-Encoding" not in answer.headers
                assert b"".join(chunks) == body
                assert len(chunks) > 1 and max(map(len, chunks)) <= 4096
            assert int(answer.headers["Content-Length"]) == len(b"".join(chunks))
        held = whole_get.WHOLE_CALENDARS.size
        assert 0 < held < len(body) / 3  # the gzip alone
    assert gzip.decompress(packed.data) == body
    head = dav.client.open(path, method="HEAD", headers=dav_auth(dav))
    assert head.status_code == 200 and head.data == b""
    assert int(head.headers["Content-Length"]) == len(body)


def test_packed_body_is_what_the_cache_holds(calendar: tuple[Dav, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    dav, path = calendar
    monkeypatch.setattr(whole_get, "PLAIN_LIMIT", 1000)
    whole_get.WHOLE_CALENDARS.clear()
    assert dav("GET", path).status_code == 200
    assert len(whole_get.WHOLE_CALENDARS) == 1
    (entry,) = whole_get.WHOLE_CALENDARS._entries.values()
    assert isinstance(entry.body, Packed) and entry.gzipped is None
    assert len(gzip.decompress(entry.body.gzipped)) == entry.body.length
