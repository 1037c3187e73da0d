"""The customer address book is read-only: every write is refused 403 with a reason a person
can read, nothing changes in the database, and only its technician and dispatchers read it."""

from __future__ import annotations

import aiohttp
import pytest
from cardbook import PROPFIND_BOOK, Book, get_card, make_book
from cardkit import check_vcard, listing, run, storage
from davkit import XML, dav_request
from live import LiveServer
from seeding import Seed, items_of
from vdirsyncer.vobject import Item

from server.db import Database
from server.vcards import href_of


@pytest.fixture(scope="module")
def book(db: Database, seed: Seed, live: LiveServer) -> Book:
    made = make_book(db)
    assert len(listing(live, made.technician)) == 3  # the phone has listed it once
    return made


# --------------------------------------------------------------------------- read-only


@pytest.mark.parametrize(("method", "target", "body"), [
    ("PUT", "customer-new.vcf", "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:x\r\nFN:X\r\nN:X;;;;\r\n"
                                "END:VCARD\r\n"),
    ("PUT", "{near}", "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:x\r\nFN:X\r\nN:X;;;;\r\nEND:VCARD\r\n"),
    ("DELETE", "{near}", None),
    ("DELETE", "", None),
    ("PROPPATCH", "", '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
                      "<D:displayname>Mine</D:displayname></D:prop></D:set></D:propertyupdate>"),
    ("MKCOL", "", None),
    ("MKCALENDAR", "", None),
])
def test_writes_are_refused_with_a_reason(live: LiveServer, book: Book, db: Database,
                                          method: str, target: str, body: str | None) -> None:
    before = {h: i.etag for h, i in items_of(db, f"{book.technician.login}/customers").items()}
    path = f"/dav{book.path}{target.format(near=href_of(book.near))}"
    headers = {"Content-Type": "text/vcard"} if method == "PUT" else XML
    response = dav_request(live, method, path, book.technician.auth, body=body, headers=headers)
    assert response.status_code == 403, (response.status_code, response.text)
    assert "read-only" in response.text, response.text
    after = {h: i.etag for h, i in items_of(db, f"{book.technician.login}/customers").items()}
    assert after == before


def test_move_out_of_the_book_is_refused(live: LiveServer, book: Book) -> None:
    response = dav_request(live, "MOVE", f"/dav{book.href(book.near)}", book.technician.auth,
                           headers={"Destination": live.url(
                               f"/dav/{book.technician.login}/personal/x.vcf")})
    assert response.status_code == 403 and "read-only" in response.text, response.text


def test_others_cannot_read_the_book_but_dispatch_can(live: LiveServer, book: Book,
                                                      seed: Seed) -> None:
    response = dav_request(live, "PROPFIND", f"/dav{book.path}", book.other.auth,
                           body=PROPFIND_BOOK, headers={**XML, "Depth": "1"})
    assert response.status_code in (403, 404), response.status_code
    assert not listing(live, book.other).keys() & {book.href(book.near)}
    text, _ = get_card(live, seed.dispatcher, book.href(book.near))
    check_vcard(text, "4.0")
    refused = dav_request(live, "DELETE", f"/dav{book.href(book.near)}", seed.dispatcher.auth)
    assert refused.status_code == 403 and "read-only" in refused.text
    alias = dav_request(live, "PROPFIND", f"/dav/dispatch/{book.technician.login}~customers/",
                        seed.dispatcher.auth, body=PROPFIND_BOOK, headers={**XML, "Depth": "0"})
    assert alias.status_code in (403, 404), alias.status_code


def test_vdirsyncer_upload_is_refused(live: LiveServer, book: Book) -> None:
    async def go(connector: aiohttp.TCPConnector) -> None:
        await storage(live, book.technician, connector).upload(
            Item("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:mine\r\nFN:Mine\r\nN:Mine;;;;\r\nEND:VCARD\r\n"))

    with pytest.raises(aiohttp.ClientResponseError) as refused:
        run(go)
    assert refused.value.status == 403


def test_well_known_carddav_leads_to_the_dav_root(live: LiveServer, book: Book) -> None:
    response = dav_request(live, "PROPFIND", "/.well-known/carddav", book.technician.auth)
    assert response.status_code == 301
    assert response.headers["Location"].endswith("/dav/")
    assert "CardDAV" in response.text
