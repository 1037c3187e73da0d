"""The address book the CardDAV tests read: a technician with customers in and out of the
window, and requests as a phone sends them."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from cardkit import card_responses, card_sync
from davkit import XML, dav_request, sync_token_of
from live import LiveServer
from seeding import Account, add_account, book_job, domain
from sqlalchemy.orm import Session

from server import directory, scheduling
from server.db import Database
from server.models import Customer, Role
from server.vcards import href_of, uid_of

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
PROPFIND_BOOK = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav" '
    'xmlns:CS="http://calendarserver.org/ns/">'
    "<D:prop><D:resourcetype/><D:displayname/><D:sync-token/><CS:getctag/>"
    "<C:supported-address-data/><D:current-user-privilege-set/><D:supported-report-set/>"
    "</D:prop></D:propfind>"
)
PROPFIND_PRINCIPAL = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
    "<D:prop><C:addressbook-home-set/><D:current-user-principal/></D:prop></D:propfind>"
)


def contacts_uid(session: Session, customer_id: int) -> str:
    customer = session.get(Customer, customer_id)
    assert customer is not None
    return uid_of(customer.id, customer.created_at)


def nine(days: int) -> dt.datetime:
    """09:00 UTC, `days` from today."""
    today = dt.datetime.now(dt.UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    return today + days * DAY


@dataclass(frozen=True)
class Book:
    technician: Account
    other: Account
    near: int  # visit in 5 days; two sites, phone, email
    past: int  # visit 10 days ago
    tricky: int  # a name that needs escaping and folding; visit in 8 days
    far: int  # visit in 100 days: outside the window
    cancelled: int  # its only visit cancelled: outside
    others: int  # a visit of another technician only
    near_visit: int  # appointment ids
    past_visit: int

    @property
    def path(self) -> str:
        return f"/{self.technician.login}/customers/"

    def href(self, customer_id: int) -> str:
        return f"{self.path}{href_of(customer_id)}"


def make_book(db: Database) -> Book:
    """A technician of its own with customers in, at the edges of and outside the window."""
    tag = secrets.token_hex(3)
    with domain(db) as ctx:
        tech = add_account(ctx, f"cards-{tag}", Role.TECHNICIAN)
        other = add_account(ctx, f"cardo-{tag}", Role.TECHNICIAN)
        near = directory.add_customer(
            ctx, "Nordhafen Druckluft", email="werk@nordhafen.example.test",
            phone="+49 (40) 555-0101", timezone="Europe/Berlin",
            address="Kai 7, 20457 Hamburg", compressor_make="Kaeser",
            compressor_model="ASD 40", compressor_serial="K-77")
        directory.add_site(ctx, near, "Lagerweg 2, 21079 Hamburg", compressor_make="Boge",
                           compressor_model="S 31")
        past = directory.add_customer(ctx, "Old Mill Bakery", phone="0161 496 0000",
                                      address="3 Mill Lane, Leeds LS1 4AP")
        tricky = directory.add_customer(
            ctx, "Smith, Jones & Söhne; Kälte-Technik — Großkunden-Service Nord-Ost Abteilung",
            email="a@b.example.test", address="Straße 1; Hof 2\nTor 3, 10115 Berlin",
            compressor_make="Atlas Copco", compressor_model="GA 37 VSD+ FF",
            compressor_serial="AII-123,456")
        far = directory.add_customer(ctx, "Far Future Ltd", address="9 Far Rd, York YO1 7HH")
        gone = directory.add_customer(ctx, "Cancelled Co", address="1 Gone St, Hull HU1 1AA")
        others = directory.add_customer(ctx, "Someone Else's", address="2 Other St, Hull HU1 2BB")
        near_visit = book_job(ctx, tech.login, near.id, "Service", nine(5), nine(5) + HOUR)
        past_visit = book_job(ctx, tech.login, past.id, "Repair", nine(-10), nine(-10) + HOUR)
        book_job(ctx, tech.login, tricky.id, "Check", nine(8), nine(8) + HOUR)
        book_job(ctx, tech.login, far.id, "Later", nine(100), nine(100) + HOUR)
        cancelled = book_job(ctx, tech.login, gone.id, "Off", nine(3), nine(3) + HOUR)
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, cancelled.appointment_id))
        book_job(ctx, other.login, others.id, "Theirs", nine(4), nine(4) + HOUR)
    return Book(tech, other, near.id, past.id, tricky.id, far.id, gone.id, others.id,
                near_visit.appointment_id, past_visit.appointment_id)


def report(live: LiveServer, account: Account, path: str, body: str,
           depth: str = "1") -> dict[str, object]:
    response = dav_request(live, "REPORT", f"/dav{path}", account.auth, body=body,
                           headers={**XML, "Depth": depth})
    assert response.status_code == 207, (response.status_code, response.text)
    return dict(card_responses(response.content))


def get_card(live: LiveServer, account: Account, path: str, accept: str | None = None
             ) -> tuple[str, str]:
    headers = {"Accept": accept} if accept else {}
    response = dav_request(live, "GET", f"/dav{path}", account.auth, headers=headers)
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("text/vcard"), response.headers
    return response.content.decode("utf-8"), response.headers["ETag"]


def sync(live: LiveServer, book: Book, token: str = "") -> tuple[str, dict[str, object]]:
    response = dav_request(live, "REPORT", f"/dav{book.path}", book.technician.auth,
                           body=card_sync(token), headers=XML)
    assert response.status_code == 207, (response.status_code, response.text)
    return sync_token_of(response.content), dict(card_responses(response.content))

