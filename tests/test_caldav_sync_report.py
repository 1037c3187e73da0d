"""sync-collection from the index (plugins.radicale.sync_report): the same bytes Radicale
writes, for first syncs and deltas (puts and deletes), its rights, and Radicale's own answer
for every request the fast path does not take."""

from __future__ import annotations

from typing import Any

import pytest
from davkit import parse_multistatus, sync_collection, sync_token_of
from seeding import Seed, at, fresh_technician, personal_event
from test_radicale_plugin import Dav, load_wsgi, settings_for
from werkzeug.test import Client, TestResponse

from plugins.radicale import sync_report
from server.db import Database, get_database

XML = {"Content_Type": "application/xml; charset=utf-8"}


@pytest.fixture(scope="module")
def client(seed: Seed, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Client:
    settings = settings_for(database_url, tmp_path_factory.mktemp("inst"))
    return Client(load_wsgi().create_wsgi_app(settings))


@pytest.fixture(scope="module")
def db(database_url: str, seed: Seed) -> Database:
    return get_database(database_url)


def _both(dav: Dav, path: str, body: str, monkeypatch: pytest.MonkeyPatch
          ) -> tuple[TestResponse, TestResponse, int]:
    """The answer with the fast path, Radicale's own, and how often the fast path answered."""
    answered = 0
    original = sync_report.answer

    def counting(*args: Any) -> Any:
        nonlocal answered
        found = original(*args)
        answered += found is not None
        return found

    monkeypatch.setattr(sync_report, "answer", counting)
    fast = dav("REPORT", path, body, **XML)
    monkeypatch.setattr(sync_report, "answer", lambda *args: None)
    reference = dav("REPORT", path, body, **XML)
    monkeypatch.setattr(sync_report, "answer", original)
    return fast, reference, answered


def _put(dav: Dav, path: str, uid: str) -> None:
    body = personal_event(uid, f"Event {uid}", at(3, 9), at(3, 10))
    assert dav("PUT", f"{path}{uid}.ics", body, Content_Type="text/calendar").status_code in (201, 204)


def test_first_sync_and_deltas_are_radicales_bytes(client: Client, seed: Seed, db: Database,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tech = fresh_technician(db, seed, "sy", []).account
    dav = Dav(client, tech)
    path = f"/dav/{tech.login}/personal/"
    for n in range(12):
        _put(dav, path, f"sy-{n}")
    fast, reference, answered = _both(dav, path, sync_collection(""), monkeypatch)
    assert answered == 1 and fast.status_code == reference.status_code == 207
    assert fast.data == reference.data
    responses = parse_multistatus(fast.data)
    assert len(responses) == 12 and all(r.status == 200 for r in responses)
    etags = {r.href: r.etag for r in responses}
    got = dav("GET", f"{path}sy-3.ics")
    assert etags[f"{path}sy-3.ics"] == got.headers["ETag"]
    token = sync_token_of(fast.data)
    _put(dav, path, "sy-new & odd")
    assert dav("DELETE", f"{path}sy-0.ics").status_code in (200, 204)
    _put(dav, path, "sy-5")
    fast, reference, answered = _both(dav, path, sync_collection(token), monkeypatch)
    assert answered == 1 and fast.data == reference.data
    statuses = {r.href: r.status for r in parse_multistatus(fast.data)}
    assert statuses == {f"{path}sy-new & odd.ics": 200, f"{path}sy-0.ics": 404,
                        f"{path}sy-5.ics": 200}
    with_type = sync_collection(token).replace("<D:getetag/>", "<D:getetag/><D:getcontenttype/>")
    fast, reference, answered = _both(dav, path, with_type, monkeypatch)
    assert answered == 1 and fast.data == reference.data
    assert b"component=VEVENT" in fast.data
    now = sync_token_of(fast.data)
    fast, reference, answered = _both(dav, path, sync_collection(now), monkeypatch)
    assert answered == 1 and fast.data == reference.data and parse_multistatus(fast.data) == []


@pytest.mark.parametrize("body", [
    sync_collection("").replace("<D:getetag/>", "<D:displayname/>"),
    sync_collection("").replace("</D:sync-collection>", "<D:limit><D:nresults>2</D:nresults>"
                                "</D:limit></D:sync-collection>"),
    sync_collection("http://fieldcal.invalid/ns/sync/1-999999"),
    sync_collection("").replace("<D:sync-level>1</D:sync-level>",
                                "<D:sync-level>infinite</D:sync-level>"),
])
def test_other_requests_get_radicales_answer(client: Client, seed: Seed, db: Database,
                                             monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    tech = fresh_technician(db, seed, "sf", []).account
    dav = Dav(client, tech)
    path = f"/dav/{tech.login}/personal/"
    _put(dav, path, "sf-1")
    fast, reference, answered = _both(dav, path, body, monkeypatch)
    assert answered == 0
    assert fast.status_code == reference.status_code and fast.data == reference.data


def test_rights_hold(client: Client, seed: Seed, db: Database,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    owner = fresh_technician(db, seed, "so", []).account
    other = fresh_technician(db, seed, "sx", []).account
    path = f"/dav/{owner.login}/personal/"
    _put(Dav(client, owner), path, "so-1")
    refused = Dav(client, other)("REPORT", path, sync_collection(""), **XML)
    assert refused.status_code == 403 and b"so-1" not in refused.data
    fast, reference, answered = _both(Dav(client, seed.dispatcher), path, sync_collection(""),
                                      monkeypatch)
    assert answered == 1 and fast.data == reference.data and b"so-1.ics" in fast.data
    anonymous = Dav(client, None)("REPORT", path, sync_collection(""), **XML)
    assert anonymous.status_code == 401
