"""Customers on the technician's phone: `/dav/<login>/customers/` over CardDAV, against gunicorn,
with vdirsyncer's CardDAV storage as the client and raw requests where a client would hide the
answer. Cards are checked strictly (RFC 6350 / 2426 / 6352 and vobject with validation), and
what the book holds is checked against the jobs database."""

from __future__ import annotations

import datetime as dt
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest
from cardbook import (
    HOUR,
    PROPFIND_BOOK,
    PROPFIND_PRINCIPAL,
    Book,
    get_card,
    make_book,
    nine,
    report,
    sync,
)
from cardkit import (
    card_sync,
    check_vcard,
    discovered,
    fetched,
    listing,
    multiget,
    query,
    run,
    storage,
    values,
)
from davkit import XML, dav_client, dav_request
from live import LiveServer
from seeding import Seed, book_job, domain, items_of
from sqlalchemy import select

from plugins.radicale.addressbook import requested_version
from server import contacts, directory, scheduling
from server.db import Database
from server.models import AuditEntry, Change, Collection
from server.vcards import href_of

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def book(db: Database, seed: Seed) -> Book:
    return make_book(db)


# --------------------------------------------------------------------------- discovery


def test_real_client_discovers_the_book_through_the_home(live: LiveServer, book: Book) -> None:
    principal = dav_request(live, "PROPFIND", f"/dav/{book.technician.login}/",
                            book.technician.auth, body=PROPFIND_PRINCIPAL,
                            headers={**XML, "Depth": "0"})
    assert principal.status_code == 207
    assert f"/dav/{book.technician.login}/</" in principal.text.split("addressbook-home-set")[1]
    found = discovered(live, book.technician)
    assert [c["collection"] for c in found] == ["customers"], found
    listed = dav_request(live, "PROPFIND", f"/dav{book.path}", book.technician.auth,
                         body=PROPFIND_BOOK, headers={**XML, "Depth": "0"})
    assert listed.status_code == 207
    text = listed.text
    assert "addressbook" in text.split("resourcetype")[1], text
    assert "<D:displayname>Customers</D:displayname>" in text or ">Customers<" in text
    assert 'version="4.0"' in text and 'version="3.0"' in text, text
    privileges = text.split("current-user-privilege-set")[1]
    assert "read" in privileges and "write" not in privileges, privileges
    assert "addressbook-multiget" in text and "sync-collection" in text
    assert "fieldcal:window" not in text


def test_the_calendar_clients_still_see_only_calendars(live: LiveServer, book: Book) -> None:
    names = {str(c.url).rstrip("/").rsplit("/", 1)[-1]
             for c in dav_client(live, book.technician).principal().calendars()}
    assert "customers" not in names and {"jobs", "personal"} <= names, names


# --------------------------------------------------------------------------- what it holds


def test_vdirsyncer_lists_the_customers_with_a_visit_in_the_window(
        live: LiveServer, book: Book, db: Database) -> None:
    listed = listing(live, book.technician)
    expected = {book.href(c) for c in (book.near, book.past, book.tricky)}
    assert {f"/{h.split('/dav/', 1)[1]}" for h in listed} == expected
    stored = items_of(db, f"{book.technician.login}/customers")
    assert {f"{book.path}{h}" for h in stored} == expected
    for href, etag in listed.items():
        assert etag == stored[href.rsplit("/", 1)[1]].etag
    cards = fetched(live, book.technician, list(listed))
    assert set(cards) == set(listed)
    for href, (text, etag) in cards.items():
        assert etag == listed[href]
        check_vcard(text.replace("\r\n", "\n").replace("\n", "\r\n"), "3.0")  # RFC 6352 default
    cards4 = fetched(live, book.technician, list(listed), vcard4=True)
    for href, (text, etag) in cards4.items():
        assert etag == listed[href], "one ETag for both versions of a card"
        check_vcard(text.replace("\r\n", "\n").replace("\n", "\r\n"), "4.0")


def test_a_card_carries_name_phone_email_sites_and_equipment(live: LiveServer, book: Book) -> None:
    text, etag = get_card(live, book.technician, book.href(book.near))
    card = check_vcard(text, "4.0")
    assert values(card, "fn") == ["Nordhafen Druckluft"]
    assert values(card, "org") == [["Nordhafen Druckluft"]]
    assert values(card, "tel") == ["tel:+49405550101"]
    assert values(card, "email") == ["werk@nordhafen.example.test"]
    streets = sorted(a.street for a in values(card, "adr"))
    assert streets == ["Kai 7, 20457 Hamburg", "Lagerweg 2, 21079 Hamburg"]
    assert {a.code for a in values(card, "adr")} == {"20457", "21079"}
    note = values(card, "note")[0]
    assert "Kai 7, 20457 Hamburg: Kaeser ASD 40 (serial K-77)" in note
    assert "Lagerweg 2, 21079 Hamburg: Boge S 31" in note
    uid = values(card, "uid")[0]
    assert uid.startswith("urn:uuid:")
    again, again_etag = get_card(live, book.technician, book.href(book.near))
    assert (again, again_etag) == (text, etag), "same rows, same bytes and ETag"
    old_style, old_etag = get_card(live, book.technician, book.href(book.near),
                                   "text/vcard; version=3.0")
    card3 = check_vcard(old_style, "3.0")
    assert values(card3, "tel") == ["+49405550101"]
    assert values(card3, "uid") == [uid] and old_etag == etag


def test_escaping_and_folding_survive_strict_parsers(live: LiveServer, book: Book) -> None:
    for accept, version in ((None, "4.0"), ("text/vcard;version=3.0", "3.0"),
                            ("text/vcard;version=3.0;q=0.5, text/vcard;version=4.0", "4.0")):
        text, _ = get_card(live, book.technician, book.href(book.tricky), accept)
        card = check_vcard(text, version)
        assert values(card, "fn") == [
            "Smith, Jones & Söhne; Kälte-Technik — Großkunden-Service Nord-Ost Abteilung"]
        assert values(card, "adr")[0].street == "Straße 1; Hof 2\nTor 3, 10115 Berlin"
        assert "Atlas Copco GA 37 VSD+ FF (serial AII-123,456)" in values(card, "note")[0]
        assert not values(card, "tel")


def test_reports_answer_in_the_version_asked_for(live: LiveServer, book: Book) -> None:
    hrefs = [book.href(book.near), book.href(book.past), f"{book.path}customer-999999.vcf"]
    for version, expected in ((None, "3.0"), ("3.0", "3.0"), ("4.0", "4.0")):
        found = report(live, book.technician, book.path, multiget(
            [f"/dav{h}" for h in hrefs], version))
        assert found[f"/dav{hrefs[2]}"].status == 404  # type: ignore[attr-defined]
        for href in hrefs[:2]:
            check_vcard(found[f"/dav{href}"].data, expected)  # type: ignore[attr-defined]
    matched = report(live, book.technician, book.path, query("mill", "4.0"))
    assert list(matched) == [f"/dav{book.href(book.past)}"]
    card = check_vcard(matched[f"/dav{book.href(book.past)}"].data, "4.0")  # type: ignore[attr-defined]
    assert values(card, "tel") == ["0161 496 0000"], "a number that is no global number stays text"
    assert report(live, book.technician, book.path, query("Hamburg", None, prop="ADR")) \
        .keys() == {f"/dav{book.href(book.near)}"}


def test_whole_book_get_is_every_card(live: LiveServer, book: Book) -> None:
    response = dav_request(live, "GET", f"/dav{book.path}", book.technician.auth)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/vcard")
    body = response.content.decode("utf-8")
    cards = [c + "END:VCARD\r\n" for c in body.split("END:VCARD\r\n")[:-1]]
    assert len(cards) == 3
    for card in cards:
        check_vcard(card, "4.0")


# --------------------------------------------------------------------------- changes and sync


def test_sync_collection_follows_visits_and_sites(live: LiveServer, book: Book, db: Database
                                                  ) -> None:
    token, first = sync(live, book)
    assert set(first) == {f"/dav{book.href(c)}" for c in (book.near, book.past, book.tricky)}
    assert sync(live, book, token) == (token, {})

    with domain(db) as ctx:  # the far customer's visit moves into the window
        far = book_job(ctx, book.technician.login, book.far, "Sooner", nine(20), nine(20) + HOUR)
    token2, delta = sync(live, book, token)
    assert token2 != token
    assert list(delta) == [f"/dav{book.href(book.far)}"]
    assert delta[f"/dav{book.href(book.far)}"].status == 200  # type: ignore[attr-defined]

    with domain(db) as ctx:  # the past visit is cancelled: the bakery leaves
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, book.past_visit))
    token3, delta = sync(live, book, token2)
    assert list(delta) == [f"/dav{book.href(book.past)}"]
    assert delta[f"/dav{book.href(book.past)}"].status == 404  # type: ignore[attr-defined]

    before = get_card(live, book.technician, book.href(book.near))[1]
    with domain(db) as ctx:  # equipment changes at a site: the card changes
        customer = directory.find_customer(ctx.session, book.near)
        directory.update_site(ctx, customer.sites[0], compressor_serial="K-78")
    token4, delta = sync(live, book, token3)
    assert list(delta) == [f"/dav{book.href(book.near)}"]
    text, etag = get_card(live, book.technician, book.href(book.near))
    assert etag != before and "(serial K-78)" in text
    assert delta[f"/dav{book.href(book.near)}"].etag == etag  # type: ignore[attr-defined]

    with domain(db) as ctx:  # reassigned to the other technician: it leaves this book
        other = directory.find_user(ctx.session, book.other.login)
        scheduling.reassign(ctx, scheduling.get_appointment(ctx.session, far.appointment_id),
                            other)
    _, delta = sync(live, book, token4)
    assert list(delta) == [f"/dav{book.href(book.far)}"]
    assert delta[f"/dav{book.href(book.far)}"].status == 404  # type: ignore[attr-defined]
    theirs = listing(live, book.other)
    assert {h.rsplit("/", 1)[1] for h in theirs} == {href_of(book.far), href_of(book.others)}


def test_a_stale_or_foreign_token_is_refused(live: LiveServer, book: Book) -> None:
    for token in ("http://fieldcal.invalid/ns/sync/999999-1", "nonsense"):
        response = dav_request(live, "REPORT", f"/dav{book.path}", book.technician.auth,
                               body=card_sync(token), headers=XML)
        assert response.status_code == 403 and "valid-sync-token" in response.text


def test_the_window_rolls_with_the_date(db: Database, book: Book) -> None:
    """Time passing moves customers in and out: `keep_current` for another day records them in
    the change log, so a token from the day before gets them as changes."""
    login = book.technician.login
    with domain(db) as ctx:
        technician = directory.find_user(ctx.session, login)
        today = contacts.Window.around(dt.datetime.now(dt.UTC), 30, 60, "UTC")
        contacts.keep_current(ctx, technician, today)
    with db.read() as session:
        row = session.scalars(select(Collection).where(
            Collection.path == contacts.book_path(login))).one()
        seq = row.sync_seq
    later = contacts.Window(today.day + 12 * DAY, 30, 60, "UTC")  # the near visit is 17 days old
    with domain(db) as ctx:
        contacts.keep_current(ctx, directory.find_user(ctx.session, login), later)
    with db.read() as session:
        row = session.scalars(select(Collection).where(
            Collection.path == contacts.book_path(login))).one()
        changed = dict(session.execute(select(Change.href, Change.op).where(
            Change.collection_id == row.id, Change.seq > seq)).all())
        assert contacts.window_of(row) == later
    assert changed == {}, "twelve days later the same customers are in the window"
    much_later = contacts.Window(today.day + 40 * DAY, 30, 60, "UTC")
    with domain(db) as ctx:
        contacts.keep_current(ctx, directory.find_user(ctx.session, login), much_later)
    with db.read() as session:
        changed = dict(session.execute(select(Change.href, Change.op).where(
            Change.collection_id == row.id, Change.seq > seq)).all())
    assert changed.get(href_of(book.near)) == changed.get(href_of(book.tricky)) == "delete"
    assert set(changed.values()) == {"delete"}, changed
    with domain(db) as ctx:  # back to today, for the other tests
        contacts.keep_current(ctx, directory.find_user(ctx.session, login), today)
    assert set(items_of(db, f"{login}/customers")) >= {href_of(book.near), href_of(book.tricky)}


def test_vdirsyncer_storage_contract_for_a_read_only_book(live: LiveServer, book: Book) -> None:
    """The read parts of vdirsyncer's storage tests: has, get of a missing item, metadata,
    and an item's ETag from get() equal to the listing's."""
    from vdirsyncer.exceptions import NotFoundError

    listed = listing(live, book.technician)
    some = next(iter(listed))
    missing = some.rsplit("/", 1)[0] + "/customer-999999.vcf"

    async def go(connector: aiohttp.TCPConnector) -> dict[str, object]:
        store = storage(live, book.technician, connector)
        item, etag = await store.get(some)
        try:
            await store.get(missing)
            missing_found = True
        except NotFoundError:
            missing_found = False
        return {"has": await store.has(some), "has_missing": await store.has(missing),
                "etag": etag, "uid": item.uid, "missing_found": missing_found,
                "name": await store.get_meta("displayname"),
                "description": await store.get_meta("description")}

    found = run(go)
    assert found["has"] is True and found["has_missing"] is False
    assert found["missing_found"] is False
    assert found["etag"] == listed[some]
    assert str(found["uid"]).startswith("urn:uuid:")
    assert found["name"] == "Customers"
    assert "read-only" in str(found["description"])


@pytest.mark.parametrize(("environ", "version"), [
    ({"REQUEST_METHOD": "GET"}, "4.0"),
    ({"REQUEST_METHOD": "GET", "HTTP_ACCEPT": "*/*"}, "4.0"),
    ({"REQUEST_METHOD": "GET", "HTTP_ACCEPT": "text/vcard; version=3.0"}, "3.0"),
    ({"REQUEST_METHOD": "HEAD", "HTTP_ACCEPT": 'text/vcard;version="3.0"'}, "3.0"),
    ({"REQUEST_METHOD": "GET",
      "HTTP_ACCEPT": "text/vcard;version=3.0;q=0.4, text/vcard;version=4.0;q=0.9"}, "4.0"),
    ({"REQUEST_METHOD": "GET", "HTTP_ACCEPT": "text/x-vcard"}, "3.0"),
    ({"REQUEST_METHOD": "GET", "HTTP_ACCEPT": "text/vcard;version=2.1"}, "4.0"),
    ({"REQUEST_METHOD": "REPORT", "wsgi.input": io.BytesIO(b"<C:address-data/>")}, "3.0"),
    ({"REQUEST_METHOD": "REPORT",
      "wsgi.input": io.BytesIO(b'<C:address-data Content-Type="text/vcard" version="4.0"/>')},
     "4.0"),
    ({"REQUEST_METHOD": "REPORT",
      "wsgi.input": io.BytesIO(b"<x:address-data\n version='3.0'></x:address-data>")}, "3.0"),
    ({"REQUEST_METHOD": "REPORT",
      "wsgi.input": io.BytesIO(b'<C:address-data-type version="3.0"/><D:getetag/>')}, "4.0"),
    ({"REQUEST_METHOD": "PROPFIND", "HTTP_ACCEPT": "text/vcard;version=3.0"}, "4.0"),
])
def test_the_version_asked_for(environ: dict[str, object], version: str) -> None:
    assert requested_version(environ) == version


def test_first_requests_at_once_make_one_book(live: LiveServer, db: Database, seed: Seed) -> None:
    """Phones ask in parallel; the first requests of a day meet in `keep_current` on both
    gunicorn workers: every answer is whole, and the book is made once."""
    fresh = make_book(db)
    barrier = threading.Barrier(6)

    def ask(_: int) -> int:
        barrier.wait(timeout=30)
        response = dav_request(live, "PROPFIND", f"/dav{fresh.path}", fresh.technician.auth,
                               body=PROPFIND_BOOK, headers={**XML, "Depth": "1"})
        return response.status_code if response.text.count("customer-") >= 3 else -1

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(ask, range(6))) == [207] * 6
    with db.read() as session:
        book_row = session.scalars(select(Collection).where(
            Collection.path == contacts.book_path(fresh.technician.login))).one()
        audit_rows = session.scalars(select(AuditEntry.id).where(
            AuditEntry.entity == "collection", AuditEntry.entity_id == str(book_row.id))).all()
    assert len(audit_rows) == 1
    assert set(items_of(db, contacts.book_path(fresh.technician.login))) == {
        href_of(fresh.near), href_of(fresh.past), href_of(fresh.tricky)}
