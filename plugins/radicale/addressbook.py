"""The technician's customers over CardDAV: `/<login>/customers/` (server.contacts).

The address book is a `Collection` row like a calendar, listed in the home with
resourcetype addressbook; Radicale advertises the home as `addressbook-home-set`
on the principal, so clients find it where they find the calendars. Its items are
the stored vCards: ETags, the collection ETag and sync-collection come from the
rows and the change log, as for calendars.

- Version: cards are stored as vCard 4.0. A request gets 3.0 when it asks: a GET
  whose Accept names `text/vcard; version=3.0` (and not 4.0 before it), or an
  addressbook-query/-multiget/sync-collection whose `address-data` says
  `version="3.0"` or says no version at all (RFC 6352 §10.4: the default of
  address-data is text/vcard 3.0). A card's ETag is the same in both versions: it
  names the customer's data, and clients compare the ETags of a PROPFIND (which
  has no version) with those of a multiget (which may ask for 3.0).
- Window: before a request for the book or its home, `keep_current` rolls the book
  to today's window in a short write transaction of its own when it was made for
  another day (once a day per book; otherwise one indexed read).
- Read-only: rights give "r"; writes are answered 403 with `refusal`'s reason.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET  # our own multistatus answer, parsed back
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, overload

from radicale import config as radicale_config
from radicale import item as radicale_item
from radicale.item import filter as radicale_filter

from plugins.radicale import state
from plugins.radicale.collection import DbCollection
from plugins.radicale.rights import calendar_rights
from plugins.radicale.stored_item import StoredItem
from server import contacts, directory
from server.config import Settings, load_settings
from server.context import Context
from server.errors import Forbidden
from server.models import Collection, CollectionKind
from server.vcards import DEFAULT_VERSION, VERSIONS, as_version

CARDDAV = "urn:ietf:params:xml:ns:carddav"
ADDRESS_DATA = re.compile(rb"<(?:[A-Za-z0-9_-]+:)?address-data(?=[\s/>])([^>]*)>")
VERSION_ATTRIBUTE = re.compile(rb"\bversion\s*=\s*[\"']([^\"']*)[\"']", re.IGNORECASE)
ACCEPT_VERSION = re.compile(r"\bversion\s*=\s*\"?([0-9.]+)\"?", re.IGNORECASE)
ACCEPT_Q = re.compile(r"\bq\s*=\s*([0-9.]+)", re.IGNORECASE)
ADDRESS_DATA_TYPE = f"{{{CARDDAV}}}address-data-type"
SUPPORTED_ADDRESS_DATA = f"{{{CARDDAV}}}supported-address-data"
HIDDEN_PROPS = frozenset({"tag", contacts.WINDOW_PROP})
READ_ONLY = ("is your customers' address book, kept by fieldcal from your visits; it is "
             "read-only. Customer details are changed by dispatch.")



def is_book(name: str) -> bool:
    return name == contacts.BOOK


# --------------------------------------------------------------------------- the request


def _accept_version(accept: str) -> str:
    """The vCard version a GET's Accept header prefers (4.0 unless it prefers 3.0)."""
    best, best_q = DEFAULT_VERSION, -1.0
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media not in ("text/vcard", "text/x-vcard", "text/directory"):
            continue
        found = ACCEPT_VERSION.search(part)
        version = found.group(1) if found else ("3.0" if media != "text/vcard" else DEFAULT_VERSION)
        q_found = ACCEPT_Q.search(part)
        try:
            q = float(q_found.group(1)) if q_found else 1.0
        except ValueError:
            q = 0.0
        if version in VERSIONS and q > best_q:
            best, best_q = version, q
    return best


def _report_version(body: bytes) -> str:
    """The vCard version an address-data element asks for (3.0 when it names none)."""
    element = ADDRESS_DATA.search(body)
    if element is None:
        return DEFAULT_VERSION
    found = VERSION_ATTRIBUTE.search(element.group(1))
    version = found.group(1).decode("ascii", "replace").strip() if found else "3.0"
    return version if version in VERSIONS else DEFAULT_VERSION


def requested_version(environ: Mapping[str, Any]) -> str:
    method = environ.get("REQUEST_METHOD")
    if method == "GET" or method == "HEAD":
        return _accept_version(str(environ.get("HTTP_ACCEPT") or ""))
    if method == "REPORT":
        body = environ.get("wsgi.input")
        getvalue = getattr(body, "getvalue", None)  # buffered by Application.do_REPORT
        if callable(getvalue):
            return _report_version(bytes(getvalue()))
    return DEFAULT_VERSION


def _book_owner(path: str) -> str | None:
    """The login whose book (or home) `path` is, if the request concerns a book."""
    segments = [s for s in path.strip("/").split("/") if s]
    if len(segments) == 1 or (len(segments) >= 2 and is_book(segments[1])):
        return segments[0]
    return None


@dataclass(frozen=True)
class WindowSpec:
    past_days: int
    future_days: int
    zone: str

    def today(self) -> contacts.Window:
        return contacts.Window.around(dt.datetime.now(dt.UTC), self.past_days, self.future_days,
                                      self.zone)


def window_spec(settings: Settings) -> str:
    """The window settings as Radicale's configuration carries them (wsgi.py)."""
    return f"{settings.contacts_past_days}/{settings.contacts_future_days}/{settings.timezone}"


def window_spec_of(configuration: radicale_config.Configuration) -> WindowSpec:
    try:
        text = str(configuration.get("storage", "contacts_window"))
    except KeyError:
        text = window_spec(load_settings())
    past, future, zone = text.split("/", 2)
    return WindowSpec(int(past), int(future), zone)


def keep_current(configuration: radicale_config.Configuration, path: str, user: str) -> None:
    """Roll the book at or under `path` to today's window, if it is stale (see module doc);
    for its owner or a dispatcher."""
    login = _book_owner(path)
    if not login or not user:
        return
    if login != user:
        who = state.remembered(user)
        if who is None or not who.is_dispatcher:
            return
    database = state.DatabaseHandle(configuration)()
    organizer = state.organizer_for(configuration)
    window = window_spec_of(configuration).today()
    with state.reading(database) as session:
        if not contacts.needs_roll(session, login, window):
            return
    with database.write() as session:
        database.lock_writes(session)
        technician = directory.find_user(session, login)
        contacts.keep_current(Context(session, state.actor(database, user), organizer),
                              technician, window)


# --------------------------------------------------------------------------- the collection


def refusal(who: state.Principal, path: str) -> str | None:
    """Why a write to `path` is refused, when it is (in) an address book `who` may read."""
    segments = [s for s in path.strip("/").split("/") if s]
    if len(segments) >= 2 and is_book(segments[1]) \
            and "r" in calendar_rights(who, segments[0], segments[1]):
        return f"/{segments[0]}/{segments[1]}/ {READ_ONLY}"
    return None


def with_vcard4(body: bytes) -> bytes:
    """A PROPFIND answer whose supported-address-data lists vCard 4.0 beside 3.0.

    Radicale names 4.0 only with a vobject that parses it; fieldcal writes the 4.0
    text itself."""
    root = ET.fromstring(body)
    changed = False
    for element in root.iter(SUPPORTED_ADDRESS_DATA):
        versions = {child.get("version") for child in element.iter(ADDRESS_DATA_TYPE)}
        for version in VERSIONS:
            if version not in versions:
                added = ET.Element(ADDRESS_DATA_TYPE, {"content-type": "text/vcard",
                                                       "version": version})
                element.insert(0 if version == "4.0" else len(element), added)
                changed = True
    if not changed:
        return body
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


class AddressBook(DbCollection):
    """A technician's customers: stored vCards, read-only, in the version asked for."""

    @overload
    def get_meta(self, key: None = None) -> Mapping[str, str]: ...

    @overload
    def get_meta(self, key: str) -> str | None: ...

    def get_meta(self, key: str | None = None) -> Mapping[str, str] | str | None:
        if key == "tag":
            return "VADDRESSBOOK"
        if key is not None:
            return None if key in HIDDEN_PROPS else super().get_meta(key)
        shown = {k: v for k, v in super().get_meta().items() if k not in HIDDEN_PROPS}
        return {"tag": "VADDRESSBOOK", **shown}

    def _item(self, row: Any, *, exact_text: bool = False) -> StoredItem:
        href, uid, _component, text, etag, updated_at, *_ = row
        version = state.notes().vcard_version or DEFAULT_VERSION
        item = StoredItem.build(self, href, as_version(text, version), etag, uid,
                                "VCARD", updated_at,
                                (radicale_filter.TIMESTAMP_MIN, radicale_filter.TIMESTAMP_MAX),
                                False)
        item._name = "VCARD"
        return item

    def get_filtered(self, filters: Iterable[ET.Element]
                     ) -> Iterator[tuple[radicale_item.Item, bool]]:
        for item in self.get_all():
            yield item, False  # Radicale applies the prop-filters to each card

    def serialize(self, vcf_to_ics: bool = False, ShareActions: dict | None = None) -> str:
        """The whole book (GET on the collection): the cards one after the other."""
        return "".join(item.serialize() for item in self.get_all())

    def _refused(self) -> Forbidden:
        return Forbidden(f"/{self.path}/ {READ_ONLY}")

    def set_meta(self, props: Mapping[str, str]) -> None:
        raise self._refused()

    def upload(self, href: str, item: radicale_item.Item
               ) -> tuple[radicale_item.Item, radicale_item.Item | None]:
        raise self._refused()

    def delete(self, href: str | None = None) -> None:
        raise self._refused()


def collection_for(storage: state.StorageAccess, row: Collection) -> DbCollection:
    """The Radicale collection of a row: an address book or a calendar."""
    if row.kind == CollectionKind.ADDRESSBOOK:
        return AddressBook(storage, row)
    return DbCollection(storage, row)
